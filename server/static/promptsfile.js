// Prompts files on the page (docs/prompts-file.md): "Download prompts" saves the session's
// file, named after the video; "Open prompts" starts a session from one and shows its prompts
// and mattes; "Download this video" saves the exact video the file refers to (for an upload, the
// service's H.264 copy: the one `sam2-matting matte --prompts` must be given). The latest file
// of the open session is kept (changed() after each change): a lost session is rebuilt from it.

import { gql, mediaUrl } from "./api.js";
import { ApiError } from "./errors.js";

const PROMPTS = `query SessionPrompts($id: String!) { sessionPrompts(sessionId: $id) }`;
const MATTES = `query Mattes($id: String!, $frames: [Int!]!) { mattes(sessionId: $id, frameIndices: $frames) {
  frameIndex rleMaskList { objectId alpha { format size counts } } } }`;
const MATTES_PER_QUERY = 1000;

/** The video's name without its extension, safe as a file name. */
function baseName(video) {
  const name = video.uploadName ?? video.path.split("/").pop() ?? "video";
  const base = name.replace(/\.[^.]*$/, "").replace(/[^\w.-]+/g, "_").replace(/^[._]+/, "");
  return base || "video";
}

/** "clip.prompts.json" for gallery/clip.mp4 or an upload named clip.mov. */
export function promptsFileName(video) {
  return `${baseName(video)}.prompts.json`;
}

/** The name "Download this video" saves under: an upload's copy says it is the service's. */
export function videoFileName(video) {
  const name = video.path.split("/").pop();
  return video.path.startsWith("uploads/") ? `${baseName(video)}.sam2-matting.mp4` : name;
}

/**
 * The page's prompts ({frame, objectId, points: [[x, y, label]], box}) after a file's events,
 * in order, as the session applied them. Mask prompts replace the frame's points and boxes; the
 * page marks them (masksFromEvents) but does not draw them (it has no mask tool).
 */
export function statesFromEvents(events) {
  const states = new Map();
  const key = (f, o) => `${f}:${o}`;
  for (const e of events) {
    const k = key(e.frame, e.object);
    if (e.op === "add_points") {
      const old = (!e.clear_old_points && states.get(k)) || { points: [], box: null };
      const points = e.points.map(([x, y], i) => [x, y, e.labels[i]]);
      states.set(k, { frame: e.frame, objectId: e.object, points: [...old.points, ...points], box: old.box });
    } else if (e.op === "add_box") {
      const points = (e.points ?? []).map(([x, y], i) => [x, y, e.labels[i]]);
      states.set(k, { frame: e.frame, objectId: e.object, points, box: [...e.box] });
    } else if (e.op === "add_mask" || e.op === "clear_frame") {
      states.delete(k);
    } else if (e.op === "remove_object") {
      for (const [sk, s] of states) if (s.objectId === e.object) states.delete(sk);
    } else if (e.op === "clear_video") {
      states.clear();
    }
  }
  return [...states.values()];
}

/** The [{frame, objectId}] of the mask prompts a file's events leave (see statesFromEvents). */
export function masksFromEvents(events) {
  const masks = new Map();
  for (const e of events) {
    const k = `${e.frame}:${e.object}`;
    if (e.op === "add_mask") masks.set(k, { frame: e.frame, objectId: e.object });
    else if (e.op === "add_points" || e.op === "add_box" || e.op === "clear_frame") masks.delete(k);
    else if (e.op === "remove_object") {
      for (const [mk, m] of masks) if (m.objectId === e.object) masks.delete(mk);
    } else if (e.op === "clear_video") masks.clear();
  }
  return [...masks.values()];
}

/** Parse a prompts file enough to know its video; the service checks the rest. */
export function readPromptsFile(name, text) {
  let doc;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new ApiError("BAD_USER_INPUT", `The file ${name} is not a prompts file (not JSON).`);
  }
  if (doc?.format !== "sam2-matting-prompts" || !Array.isArray(doc.events)) {
    throw new ApiError("BAD_USER_INPUT", `The file ${name} is not a sam2-matting prompts file.`);
  }
  return doc;
}

function save(href, name) {
  const a = document.createElement("a");
  a.href = href;
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
}

export function initPromptsFile(app, openVideo) {
  const { els } = app;
  // The latest file the service gave for the open session, refreshed after each change it
  // took: a lost session is rebuilt from it (its mask prompts and the order of its events).
  let latest = null; // { sessionId, text, covers }
  let track = { sessionId: null, changes: 0, fetching: null };

  /** A change the open session took (a prompt, a propagation): fetch its file again. */
  function changed() {
    const s = app.state.session;
    if (!s || s.lost) return;
    if (track.sessionId !== s.id) track = { sessionId: s.id, changes: 0, fetching: null };
    track.changes += 1;
    const t = track;
    t.fetching ??= (async () => {
      while (track === t && !(latest?.sessionId === t.sessionId && latest.covers >= t.changes)) {
        const covers = t.changes; // changes already answered: the file holds them
        try {
          const { sessionPrompts } = await gql(PROMPTS, { id: t.sessionId });
          latest = { sessionId: t.sessionId, text: sessionPrompts, covers };
        } catch {
          return; // gone or unreachable: the page's next call says so
        }
      }
    })().finally(() => {
      t.fetching = null;
    });
  }

  /** The file of lost session `id` if it holds every change the session took, else null. */
  function fileOf(id) {
    const current = latest?.sessionId === id && track.sessionId === id && latest.covers === track.changes;
    return current ? latest.text : null;
  }

  async function download() {
    const s = app.state.session;
    const video = app.state.video;
    if (!s || s.lost || !video) return;
    app.setRetry(download);
    try {
      const { sessionPrompts } = await gql(PROMPTS, { id: s.id });
      const url = URL.createObjectURL(new Blob([sessionPrompts], { type: "application/json" }));
      save(url, promptsFileName(video));
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (err) {
      app.fail(err);
    }
  }

  async function open(file) {
    try {
      const text = await file.text();
      const doc = readPromptsFile(file.name, text);
      // The file names its video (a file written by `matte` does not: the open one is used).
      const path = typeof doc.video?.path === "string" ? doc.video.path : app.state.video?.path;
      if (!path) throw new ApiError("BAD_USER_INPUT", `The file ${file.name} does not name its video: open the video first.`);
      const known = app.state.videos.find((v) => v.path === path);
      await openVideo(known ?? { path }, { prompts: text, events: doc.events, fileName: file.name });
    } catch (err) {
      app.fail(err);
    } finally {
      els["prompts-input"].value = ""; // the same file again fires "change" again
    }
  }

  /** After a session was opened from a file: its prompts on the stage, its mattes fetched. */
  async function show(session, events, objectIds, frames) {
    app.editor.load(statesFromEvents(events), objectIds, masksFromEvents(events));
    for (let i = 0; i < frames.length; i += MATTES_PER_QUERY) {
      const data = await gql(MATTES, { id: session.id, frames: frames.slice(i, i + MATTES_PER_QUERY) });
      for (const f of data.mattes) app.mattes.setFrame(f.frameIndex, f.rleMaskList);
    }
  }

  /**
   * A new session on the open video after an expiry: rebuilt from the lost one's file (every
   * event in order, so the same mattes), then the prompts it did not take are sent; without a
   * current file, every prompt on the page is sent again (mask prompts and order are lost).
   */
  async function restart(startSession, onSession) {
    const video = app.state.video;
    if (!video) return;
    try {
      let file = app.state.session ? fileOf(app.state.session.id) : null;
      let session;
      try {
        session = await startSession(video, file);
      } catch (err) {
        if (!file || err?.code !== "BAD_USER_INPUT") throw err;
        file = null; // the service refused the file (a new model, say): send the page's prompts
        session = await startSession(video);
      }
      app.state.session = session;
      onSession();
      changed();
      if (file) {
        await app.editor.resend(app.state.session.opened.objectIds);
      } else {
        app.mattes.clear();
        await app.editor.replay();
      }
      const how = file ? "rebuilt from its prompts file" : "restarted; your clicks were sent again";
      app.messages.info(`Session ${how}.`, { key: "restart" });
    } catch (err) {
      app.fail(err);
    }
  }

  /** The open video's controls: its prompts and its file can be downloaded. */
  function refresh() {
    const s = app.state.session;
    const video = app.state.video;
    els["prompts-download"].disabled = !s || s.lost || !video;
    const link = els["video-download"];
    link.hidden = !video?.url;
    if (video?.url) {
      link.href = mediaUrl(video.url);
      link.download = videoFileName(video);
    }
  }

  els["prompts-download"].addEventListener("click", download);
  els["prompts-input"].addEventListener("change", () => {
    const file = els["prompts-input"].files?.[0];
    if (file) open(file);
  });
  return { download, show, refresh, changed, fileOf, restart };
}
