// Prompting on the stage: objects with their colours, clicks, boxes, undo and clear, and the
// markers drawn over the frame. Every change goes to the server in order, one at a time.

import { gql } from "./api.js";
import { isSessionGone } from "./errors.js";
import { drawFrameMarkers } from "./markers.js";
import { requestFor } from "./prompts.js";

const COLOURS = ["#ff4d4d", "#4da3ff", "#ffd24d", "#5ee07a", "#c77dff", "#ff9f43", "#2ee6d6", "#ff6bd6"];
const MASKS = "frameIndex rleMaskList { objectId alpha { format size counts } }";
const DOCS = {
  addPoints: `mutation AddPoints($input: AddPointsInput!) { addPoints(input: $input) { ${MASKS} } }`,
  addBox: `mutation AddBox($input: AddBoxInput!) { addBox(input: $input) { ${MASKS} } }`,
  clearPointsInFrame: `mutation ClearPointsInFrame($input: ClearPointsInFrameInput!) {
    clearPointsInFrame(input: $input) { ${MASKS} } }`,
  removeObject: `mutation RemoveObject($input: RemoveObjectInput!) { removeObject(input: $input) { ${MASKS} } }`,
  clearPointsInVideo: `mutation ClearPointsInVideo($input: ClearPointsInVideoInput!) {
    clearPointsInVideo(input: $input) { success } }`,
};
const DRAG_PX = 6; // a press that moves further than this is a box, not a click

export function initEditor(app) {
  const { els, prompts, mattes } = app;
  const objects = []; // [{ id, colour }]
  let active = null;
  let nextId = 0;
  const serverObjects = new Set(); // objects the server's session knows
  let queue = Promise.resolve();
  let unsent = []; // changes a lost session did not take, due once it is rebuilt
  let pending = 0;
  let drag = null;

  function colourOf(id) {
    return objects.find((o) => o.id === id)?.colour ?? "#ffffff";
  }

  function canPrompt() {
    const s = app.state.session;
    return Boolean(s && !s.lost && !app.propagation.running);
  }

  // -- sending ------------------------------------------------------------------------------

  function applyResult(op, data) {
    const result = data[op];
    const frames = Array.isArray(result) ? result : [result];
    mattes.markFresh([]); // the service dropped its other mattes (server/session_entry.py)
    for (const r of frames) mattes.setFrame(r.frameIndex, r.rleMaskList);
    if (mattes.frameIndices.length > 1) mattes.stale = true;
  }

  async function send(change) {
    const s = app.state.session;
    const { op, input } = requestFor(change, prompts, s.id);
    if ((op === "removeObject" || op === "clearPointsInFrame") && !serverObjects.has(change.objectId)) {
      mattes.deleteObject(change.objectId);
      return;
    }
    const data = await gql(DOCS[op], { input });
    if (op === "removeObject") {
      serverObjects.delete(change.objectId);
      mattes.deleteObject(change.objectId);
    } else if (op !== "clearPointsInFrame") {
      serverObjects.add(change.objectId);
    }
    applyResult(op, data);
    app.promptsFile?.changed();
  }

  /** Run task after the requests already queued; marks the stage busy meanwhile. */
  function enqueue(task, onError) {
    pending += 1;
    els.stage.dataset.busy = "true";
    app.updateControls();
    queue = queue
      .then(task)
      .catch(onError)
      .finally(() => {
        pending -= 1;
        if (!pending) els.stage.dataset.busy = "false";
        app.updateControls();
        app.scheduleRender();
      });
    app.scheduleRender();
    return queue;
  }

  /** Send changes in order; redraw when the answers arrive. */
  function submit(changes, { revertOnError = true } = {}) {
    if (!changes.length) return queue;
    return enqueue(
      async () => {
        for (const [i, change] of changes.entries()) {
          if (!app.state.session) return;
          if (app.state.session.lost) {
            unsent.push(...changes.slice(i));
            return;
          }
          try {
            await send(change);
          } catch (err) {
            if (isSessionGone(err)) unsent.push(...changes.slice(i));
            throw err;
          }
        }
      },
      (err) => {
        // The server did not take it: forget it here too (a lost session keeps it for replay).
        if (revertOnError && !isSessionGone(err)) prompts.undo();
        app.fail(err);
      },
    );
  }

  // -- objects ------------------------------------------------------------------------------

  function addObject() {
    if (!canPrompt()) return;
    const max = app.state.limits?.max_objects ?? 8;
    if (objects.length >= max) {
      app.messages.error({ code: "LIMIT_EXCEEDED", message: `This server allows ${max} objects per session.` });
      return;
    }
    const id = nextId++;
    objects.push({ id, colour: COLOURS[id % COLOURS.length] });
    active = id;
    app.exporter?.refreshObjects();
    app.updateControls();
  }

  function selectIndex(i) {
    if (objects[i]) {
      active = objects[i].id;
      app.updateControls();
      app.scheduleRender();
    }
  }

  function removeObject(id) {
    if (!canPrompt()) return;
    const changes = prompts.removeObject(id);
    const index = objects.findIndex((o) => o.id === id);
    objects.splice(index, 1);
    if (active === id) active = objects[Math.max(0, index - 1)]?.id ?? null;
    if (!objects.length) addObject();
    mattes.deleteObject(id);
    app.exporter?.refreshObjects();
    if (changes.length) submit([changes[changes.length - 1]]);
    app.updateControls();
    app.scheduleRender();
  }

  let shownObjects = "";
  function renderObjects() {
    const list = els.objects;
    const editable = canPrompt();
    // Rebuilt only when something shown changed (this runs on every frame of playback).
    const signature = JSON.stringify([objects, active, editable, objects.map((o) => prompts.framesOf(o.id).length)]);
    if (signature === shownObjects) return;
    shownObjects = signature;
    const focused = list.contains(document.activeElement) ? document.activeElement : null;
    list.replaceChildren();
    objects.forEach((obj, i) => {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.className = "select";
      b.dataset.objectId = String(obj.id);
      b.setAttribute("aria-pressed", String(obj.id === active));
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = obj.colour;
      const frames = prompts.framesOf(obj.id);
      const masks = frames.filter((f) => prompts.hasMask(f, obj.id)).length;
      const count = document.createElement("span");
      count.className = "count";
      count.textContent = frames.length ? `${frames.length} frame${frames.length > 1 ? "s" : ""}` : "no clicks";
      if (masks) count.textContent += ` (${masks} mask)`;
      b.append(swatch, `Object ${obj.id + 1}`, count);
      b.title = i < 9 ? `Select (key ${i + 1})` : "Select";
      b.addEventListener("click", () => selectIndex(i));
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "✕";
      remove.setAttribute("aria-label", `Remove object ${obj.id + 1}`);
      remove.className = "remove";
      remove.dataset.objectId = String(obj.id);
      remove.disabled = !editable;
      remove.addEventListener("click", () => removeObject(obj.id));
      li.append(b, remove);
      list.append(li);
    });
    if (focused) {
      // Keep keyboard focus on the same control across the rebuild.
      list.querySelector(`.${focused.className}[data-object-id="${focused.dataset.objectId}"]`)?.focus();
    }
  }

  // -- prompts ------------------------------------------------------------------------------

  function point(x, y, label) {
    if (!canPrompt() || active === null) return;
    submit([prompts.addPoint(app.player.frame, active, x, y, label)]);
  }

  function box(b) {
    if (!canPrompt() || active === null) return;
    submit([prompts.setBox(app.player.frame, active, b)]);
  }

  function undo() {
    if (!canPrompt() || !prompts.canUndo) return;
    const changes = prompts.undo();
    for (const { objectId } of changes) {
      if (!objects.some((o) => o.id === objectId)) {
        // Undoing a removal brings the object back, with its colour.
        objects.push({ id: objectId, colour: COLOURS[objectId % COLOURS.length] });
        objects.sort((a, b) => a.id - b.id);
        app.exporter?.refreshObjects();
      }
    }
    submit(changes, { revertOnError: false });
  }

  function clearFrame() {
    if (!canPrompt() || active === null) return;
    const change = prompts.clearFrame(app.player.frame, active);
    if (change) submit([change]);
  }

  function clearAll() {
    if (!canPrompt() || prompts.isEmpty) return;
    prompts.clearAll(); // one undo step that restores every prompt
    const sessionId = app.state.session.id;
    enqueue(
      async () => {
        try {
          await gql(DOCS.clearPointsInVideo, { input: { sessionId } });
        } catch (err) {
          if (isSessionGone(err)) unsent.push({ clearAll: true });
          throw err;
        }
        serverObjects.clear();
        mattes.clear();
        app.promptsFile?.changed();
      },
      (err) => app.fail(err),
    );
  }

  /** Send every prompt again (a new session after an expiry, when its file is not known). */
  function replay() {
    serverObjects.clear();
    unsent = [];
    const changes = prompts.entries().map((s) => ({ ...s }));
    return submit(changes, { revertOnError: false });
  }

  /** A lost session rebuilt from its prompts file (objects: the new session's): send what the
   * lost one did not take, in order. */
  function resend(objectIds) {
    serverObjects.clear();
    for (const id of objectIds) serverObjects.add(id);
    const due = unsent;
    unsent = [];
    const changes = [];
    for (const c of [...due, null]) {
      if (c && !c.clearAll) {
        changes.push(c);
        continue;
      }
      if (changes.length) submit(changes.splice(0), { revertOnError: false });
      if (c) enqueue(async () => {
        await gql(DOCS.clearPointsInVideo, { input: { sessionId: app.state.session.id } });
        serverObjects.clear();
        app.promptsFile?.changed();
      }, (err) => app.fail(err));
    }
    return queue;
  }

  function reset() {
    unsent = [];
    objects.length = 0;
    serverObjects.clear();
    nextId = 0;
    active = null;
    addObject();
  }

  /** Take over a session opened from a prompts file: its objects (the server's) and prompts. */
  function load(states, objectIds, masks = []) {
    unsent = [];
    objects.length = 0;
    serverObjects.clear();
    for (const id of objectIds) {
      objects.push({ id, colour: COLOURS[id % COLOURS.length] });
      serverObjects.add(id);
    }
    nextId = objectIds.length ? Math.max(...objectIds) + 1 : 0;
    active = objects[0]?.id ?? null;
    prompts.load(states, masks);
    if (!objects.length) addObject();
    app.exporter?.refreshObjects();
  }

  // -- the stage ----------------------------------------------------------------------------

  function normalised(e) {
    const r = els.stage.getBoundingClientRect();
    return [(e.clientX - r.left) / r.width, (e.clientY - r.top) / r.height].map((v) => Math.min(1, Math.max(0, v)));
  }

  els.stage.addEventListener("contextmenu", (e) => e.preventDefault());
  els.stage.addEventListener("pointerdown", (e) => {
    if (e.button !== 0 && e.button !== 2) return;
    if (app.player?.playing) {
      app.player.pause();
      return;
    }
    if (app.propagation.running) {
      app.messages.info("Propagating: wait for it to finish, or cancel it (Esc), to click again.", { key: "busy-click" });
      return;
    }
    if (!canPrompt()) return;
    els.stage.setPointerCapture(e.pointerId);
    drag = { start: normalised(e), x: e.clientX, y: e.clientY, button: e.button, moved: false };
  });
  els.stage.addEventListener("pointermove", (e) => {
    if (!drag) return;
    if (Math.hypot(e.clientX - drag.x, e.clientY - drag.y) > DRAG_PX) drag.moved = drag.button === 0;
    if (drag.moved) drawMarkers(app.player.frame, [...drag.start, ...normalised(e)]);
  });
  els.stage.addEventListener("pointerup", (e) => {
    if (!drag) return;
    const d = drag;
    drag = null;
    if (d.moved) box([...d.start, ...normalised(e)]);
    else point(...d.start, d.button === 2 || e.shiftKey ? 0 : 1);
  });
  els.stage.addEventListener("pointercancel", () => {
    drag = null;
    app.scheduleRender();
  });
  els["add-object"].addEventListener("click", addObject);
  els.undo.addEventListener("click", undo);
  els["clear-frame"].addEventListener("click", clearFrame);
  els["clear-all"].addEventListener("click", clearAll);

  /** Points and boxes of this frame as SVG (markers.js); rubber is a box being dragged. */
  function drawMarkers(frame, rubber = null) {
    drawFrameMarkers(els.markers, app.state.session, { frame, objects, active, prompts, rubber: rubber && { box: rubber, colour: colourOf(active) } });
  }

  return {
    objects,
    get active() {
      return active;
    },
    get pending() {
      return pending;
    },
    get serverObjectIds() {
      return [...serverObjects];
    },
    addObject,
    selectIndex,
    removeObject,
    undo,
    clearFrame,
    clearAll,
    replay,
    resend,
    reset,
    load,
    renderObjects,
    drawMarkers,
  };
}
