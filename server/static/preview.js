// The still preview: while a frame is shown still in the composite view, the service's
// composite of that frame (GET /sessions/<id>/composite/<frame>, the exports' own pixels with
// the estimated foreground colour) replaces the browser's, which uses the source pixel as the
// colour of soft edges. While playing, the browser composite stays (it is instant).
//
//   app.still = initStillPreview(app);   // the page: wires the toggle, draws after render()
//   app.still.draw(frame);               // after the browser composite of `frame` is drawn
//
//   const still = new StillPreview({ load: (url, signal) => getImage(url, { signal }).then(createImageBitmap),
//                                    onReady: () => scheduleRender() });
//   const want = previewRequest({ sessionId, frame, objectIds, versions, background, mode });
//   const image = still.show(want);     // the answer for `want` if it is here, else null
//
// One request at a time: a newer wish waits for the one in flight and replaces any older
// waiting one (fast stepping asks for the frame it lands on, not every frame on the way); an
// answer for a frame no longer shown is kept in a small cache but not drawn.

import { getImage } from "./api.js";
import { isSessionGone } from "./errors.js";

export const PREVIEW_MODES = ["estimate", "source"];
const KEEP = 12; // decoded answers kept (about 3.7 MB each at 720p)

/** "#00ff00" -> "00ff00"; null for anything else. */
export function hexOf(colour) {
  const m = /^#?([0-9a-f]{6})$/i.exec(String(colour ?? "").trim());
  return m ? m[1].toLowerCase() : null;
}

/**
 * What to ask the service for on this frame, or null when the browser composite is the
 * answer: the source colour chosen, no session or no mattes. `versions` are the matte
 * versions of `objectIds` on the frame (a new matte, a new request). A colour background is
 * composited by the service (`bg=RRGGBB`); over a checkerboard or an image the service sends
 * the coloured cut-out (`bg=none`) and the page draws it over its background (`over: true`).
 */
export function previewRequest({ sessionId, frame, objectIds, versions = [], background, mode = "estimate" }) {
  if (mode !== "estimate" || !sessionId || !objectIds?.length) return null;
  const colour = background?.kind === "colour" ? hexOf(background.colour) : null;
  const bg = colour ?? "none";
  const ids = [...objectIds].sort((a, b) => a - b);
  const path = `/sessions/${encodeURIComponent(sessionId)}/composite/${frame}`;
  const query = new URLSearchParams({ bg, objects: ids.join(","), foreground: "estimate" });
  return {
    key: `${sessionId}|${frame}|${ids.join(",")}|${versions.join(",")}|${bg}`,
    url: `${path}?${query}`,
    frame,
    over: colour === null,
  };
}

/** Serial numbers for objects (encoded mattes): the same object, the same number. */
export class Versions {
  #ids = new WeakMap();
  #next = 1;

  of(value) {
    if (value === null || typeof value !== "object") return 0;
    let v = this.#ids.get(value);
    if (!v) {
      v = this.#next++;
      this.#ids.set(value, v);
    }
    return v;
  }
}

export class StillPreview {
  /** load(url, signal) -> Promise of an image; onReady() after an answer arrives; onError(err). */
  constructor({ load, onReady = () => {}, onError = () => {} }) {
    this.load = load;
    this.onReady = onReady;
    this.onError = onError;
    this.images = new Map(); // key -> image, least recent first
    this.wanted = null; // the request for what is on screen now
    this.inFlight = null; // { request, controller }
    this.waiting = null; // the next request to send
    this.failed = new Set(); // keys refused: not asked again (a new matte is a new key)
  }

  /** Declare what is on screen (a request, or null); returns its image if it is here. */
  show(request) {
    this.wanted = request;
    if (!request) {
      this.waiting = null;
      return null;
    }
    const image = this.images.get(request.key);
    if (image) {
      this.images.delete(request.key);
      this.images.set(request.key, image);
      return image;
    }
    if (this.failed.has(request.key)) return null;
    if (this.inFlight?.request.key === request.key) return null;
    this.waiting = request;
    this.#pump();
    return null;
  }

  /** Forget everything (another video, a new session). */
  reset() {
    this.inFlight?.controller.abort();
    this.inFlight = null;
    this.waiting = null;
    this.wanted = null;
    this.images.clear();
    this.failed.clear();
  }

  get pending() {
    return Boolean(this.inFlight || this.waiting);
  }

  #pump() {
    if (this.inFlight || !this.waiting) return;
    const request = this.waiting;
    this.waiting = null;
    const controller = new AbortController();
    this.inFlight = { request, controller };
    Promise.resolve()
      .then(() => this.load(request.url, controller.signal))
      .then(
        (image) => {
          if (this.inFlight?.request !== request) return; // reset meanwhile
          this.images.set(request.key, image);
          while (this.images.size > KEEP) this.images.delete(this.images.keys().next().value);
        },
        (err) => {
          if (this.inFlight?.request !== request || err?.name === "AbortError") return;
          if (err?.code === "BUSY") return; // the service is busy: asked again on the next draw
          this.failed.add(request.key);
          if (this.wanted?.key === request.key) this.onError(err);
        },
      )
      .finally(() => {
        if (this.inFlight?.request === request) this.inFlight = null;
        if (this.wanted?.key === request.key) this.onReady(request);
        this.#pump();
      });
  }
}

/** The page's still preview: the "Preview colour" toggle and the drawing after render(). */
export function initStillPreview(app) {
  const { els } = app;
  const versions = new Versions();
  let mode = "estimate";
  const still = new StillPreview({
    load: async (url, signal) => createImageBitmap(await getImage(url, { signal })),
    onReady: () => app.scheduleRender(),
    // a matte the service no longer has (a click dropped it): the browser composite stays
    onError: (err) => {
      if (err?.code !== "NOT_FOUND" || isSessionGone(err)) app.fail(err, { key: "preview" });
    },
  });
  for (const m of PREVIEW_MODES) {
    document.getElementById(`preview-colour-${m}`)?.addEventListener("change", () => {
      mode = m;
      app.scheduleRender();
    });
  }

  function paint(canvas, image, over) {
    if (over) app.renderer.drawComposite(canvas, null, [], canvas.width, canvas.height, app.state.background);
    canvas.getContext("2d").drawImage(image, 0, 0, canvas.width, canvas.height);
  }

  return {
    still,
    get mode() {
      return mode;
    },
    reset: () => still.reset(),
    /** After the browser composite of `frame`: the service's in its place, once it is here. */
    draw(frame) {
      const s = app.state.session;
      const row = app.mattes.frames.get(frame);
      // mattes a later click made the service drop (stale on the page) stay the browser's
      const held = app.mattes.fresh?.has(frame) ?? true;
      const ids = held ? app.editor.objects.map((o) => o.id).filter((id) => row?.has(id)) : [];
      const shownStill = !app.player.playing && !app.player.busy;
      const request =
        shownStill && app.state.view === "composite" && s && !s.lost
          ? previewRequest({
              sessionId: s.id,
              frame,
              objectIds: ids,
              versions: ids.map((id) => versions.of(row.get(id))),
              background: app.state.background,
              mode,
            })
          : null;
      const image = still.show(request);
      const canvas = els["view-canvas"];
      canvas.dataset.preview = image ? "estimated" : request && still.pending ? "pending" : "browser";
      canvas.dataset.previewFrame = image ? String(frame) : "";
      if (!image) return;
      paint(canvas, image, request.over);
      paint(els.preview, image, request.over);
    },
  };
}
