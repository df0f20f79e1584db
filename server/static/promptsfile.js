// Prompts files on the page (docs/prompts-file.md): "Download prompts" saves the session's
// file, named after the video; "Open prompts" starts a session from one and shows its prompts
// and mattes; "Download this video" saves the exact video the file refers to (for an upload, the
// service's H.264 copy: the one `sam2-matting matte --prompts` must be given).

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
 * in order, as the session applied them. Mask prompts replace the frame's points and boxes and
 * are not drawn (the page has no mask tool).
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
    app.editor.load(statesFromEvents(events), objectIds);
    for (let i = 0; i < frames.length; i += MATTES_PER_QUERY) {
      const data = await gql(MATTES, { id: session.id, frames: frames.slice(i, i + MATTES_PER_QUERY) });
      for (const f of data.mattes) app.mattes.setFrame(f.frameIndex, f.rleMaskList);
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
  return { download, show, refresh };
}
