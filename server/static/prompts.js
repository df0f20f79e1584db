// The prompts of a session, kept in the page: per frame and object, the clicked points and an
// optional box, with an undo history. Pure: no DOM, no network.
//
//   const prompts = new PromptModel();
//   const change = prompts.addPoint(frame, objectId, 0.4, 0.6, 1);  // 1 positive, 0 negative
//   requestFor(change, prompts)   // the mutation that makes the server's prompts equal ours
//   prompts.undo()                // [change, ...] to send again
//
// Every change replaces the whole prompt of one (frame, object) on the server (addPoints with
// clearOldPoints, addBox, clearPointsInFrame or removeObject), so undoing is sending an older
// state again, and a lost session is rebuilt by replaying entries().
//
// Mask prompts (from a prompts file: the page has no mask tool) are only known by frame and
// object (hasMask): they count as that object's prompts, so clearing its last point or box
// does not remove it. As in SAM 2, a point or box on that frame replaces the mask, and clearing
// the frame clears it; neither comes back with undo (open the file again for that).

const EMPTY = Object.freeze({ points: Object.freeze([]), box: null });

function key(frame, objectId) {
  return `${frame}:${objectId}`;
}

function isEmpty(state) {
  return state.points.length === 0 && state.box === null;
}

export class PromptModel {
  constructor() {
    this.states = new Map(); // "frame:object" -> { frame, objectId, points: [[x, y, label]], box }
    this.history = []; // [{ label, items: [{ frame, objectId, before }] }]
    this.masks = new Set(); // "frame:object" of mask prompts
  }

  /** Whether objectId has a mask prompt on frame. */
  hasMask(frame, objectId) {
    return this.masks.has(key(frame, objectId));
  }

  /** The prompt of (frame, objectId): { points: [[x, y, label], ...], box: [x0, y0, x1, y1] | null }. */
  get(frame, objectId) {
    const s = this.states.get(key(frame, objectId));
    return s ? { points: s.points, box: s.box } : EMPTY;
  }

  /** Every non-empty prompt: [{ frame, objectId, points, box }], by frame then object. */
  entries() {
    return [...this.states.values()].sort((a, b) => a.frame - b.frame || a.objectId - b.objectId);
  }

  /** Frames on which objectId has a prompt (all objects when objectId is undefined). */
  framesOf(objectId) {
    const frames = new Set();
    for (const s of [...this.states.values(), ...this.#maskEntries()]) {
      if (objectId === undefined || s.objectId === objectId) frames.add(s.frame);
    }
    return [...frames].sort((a, b) => a - b);
  }

  /** Whether any object has a prompt anywhere. */
  get isEmpty() {
    return this.states.size === 0 && this.masks.size === 0;
  }

  get canUndo() {
    return this.history.length > 0;
  }

  addPoint(frame, objectId, x, y, label) {
    const old = this.get(frame, objectId);
    const point = [clamp01(x), clamp01(y), label ? 1 : 0];
    return this.#apply("point", [[frame, objectId, { points: [...old.points, point], box: old.box }]])[0];
  }

  /** Set the box of (frame, objectId); its points stay. box is [x0, y0, x1, y1], normalised. */
  setBox(frame, objectId, box) {
    const [x0, y0, x1, y1] = box.map(clamp01);
    const norm = [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)];
    const old = this.get(frame, objectId);
    return this.#apply("box", [[frame, objectId, { points: old.points, box: norm }]])[0];
  }

  /** Remove objectId's prompt on one frame; null when there was none. */
  clearFrame(frame, objectId) {
    if (this.masks.delete(key(frame, objectId)) && isEmpty(this.get(frame, objectId))) {
      return { frame, objectId, points: EMPTY.points, box: null }; // not undoable: see above
    }
    if (isEmpty(this.get(frame, objectId))) return null;
    return this.#apply("clear", [[frame, objectId, EMPTY]])[0];
  }

  /** Remove every prompt of objectId; returns the changes (empty when it had none). */
  removeObject(objectId) {
    const masks = this.#maskEntries().filter((m) => m.objectId === objectId);
    for (const m of masks) this.masks.delete(key(m.frame, m.objectId));
    if (masks.length && !this.framesOf(objectId).length) {
      return [{ frame: masks[0].frame, objectId, points: EMPTY.points, box: null }];
    }
    const items = this.entries()
      .filter((s) => s.objectId === objectId)
      .map((s) => [s.frame, s.objectId, EMPTY]);
    return items.length ? this.#apply("remove", items) : [];
  }

  /** Remove every prompt; returns the changes. */
  clearAll() {
    this.masks.clear();
    const items = this.entries().map((s) => [s.frame, s.objectId, EMPTY]);
    return items.length ? this.#apply("clear all", items) : [];
  }

  /** Undo the last step; returns its changes (the restored states), or [] when none is left. */
  undo() {
    const step = this.history.pop();
    if (!step) return [];
    return step.items.map(({ frame, objectId, before }) => this.#set(frame, objectId, before));
  }

  /** Take over prompts made elsewhere (a prompts file): [{frame, objectId, points, box}] and
   * the [{frame, objectId}] of its mask prompts. */
  load(states, masks = []) {
    this.reset();
    for (const s of states) this.#set(s.frame, s.objectId, { points: s.points, box: s.box });
    for (const m of masks) this.masks.add(key(m.frame, m.objectId));
  }

  /** Forget everything (a new video). */
  reset() {
    this.masks.clear();
    this.states.clear();
    this.history.length = 0;
  }

  #maskEntries() {
    return [...this.masks].map((k) => {
      const [frame, objectId] = k.split(":").map(Number);
      return { frame, objectId };
    });
  }

  #apply(label, items) {
    const step = { label, items: [] };
    const changes = items.map(([frame, objectId, state]) => {
      step.items.push({ frame, objectId, before: this.get(frame, objectId) });
      return this.#set(frame, objectId, state);
    });
    this.history.push(step);
    return changes;
  }

  #set(frame, objectId, state) {
    const k = key(frame, objectId);
    if (!isEmpty(state)) this.masks.delete(k); // a point or box replaces a mask prompt
    if (isEmpty(state)) this.states.delete(k);
    else this.states.set(k, { frame, objectId, points: state.points, box: state.box });
    return { frame, objectId, points: state.points, box: state.box };
  }
}

function clamp01(v) {
  return Math.min(1, Math.max(0, Number(v)));
}

/**
 * The request that makes the server's prompt of change.frame / change.objectId equal ours:
 * { op: "addPoints" | "addBox" | "clearPointsInFrame" | "removeObject", input }.
 * An object left with no prompt anywhere is removed: SAM 2 refuses to propagate an object
 * that has no input.
 */
export function requestFor(change, prompts, sessionId) {
  const { frame, objectId, points, box } = change;
  const base = { sessionId, frameIndex: frame, objectId };
  const xy = points.map(([x, y]) => [x, y]);
  const labels = points.map((p) => p[2]);
  if (box) return { op: "addBox", input: { ...base, box, points: xy, labels } };
  if (points.length) return { op: "addPoints", input: { ...base, clearOldPoints: true, points: xy, labels } };
  if (prompts.framesOf(objectId).length === 0) {
    return { op: "removeObject", input: { sessionId, objectId } };
  }
  return { op: "clearPointsInFrame", input: base };
}
