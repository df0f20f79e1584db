// The matting page: choose or upload a video, click objects, propagate, preview, export.
// This module owns the page's state and the session; editor.js, propagate.js, exporter.js and
// upload.js add their parts to the `app` object built here.

import { closeSession, getLimits, gql, mediaUrl, setToken } from "./api.js";
import { isSessionGone } from "./errors.js";
import { initBackground } from "./background.js";
import { initEditor } from "./editor.js";
import { initExport } from "./exporter.js";
import { FramePlayer } from "./player.js";
import { initPropagation } from "./propagate.js";
import { MatteCache, MatteRenderer } from "./render.js";
import { PromptModel } from "./prompts.js";
import { initPromptsFile } from "./promptsfile.js";
import { initStillPreview } from "./preview.js";
import { Messages, askToken, installShortcuts, toggleHelp } from "./ui.js";
import { initUpload } from "./upload.js";
import { describeLimits, formatSeconds } from "./util.js";

const $ = (id) => document.getElementById(id);
const VIDEO_FIELDS = "id path url posterUrl width height frameCount fps duration";
const VIDEOS = `query Videos { defaultVideo { path } videos { edges { node { ${VIDEO_FIELDS} } } } }`;
const START = `mutation StartSession($input: StartSessionInput!) { startSession(input: $input) { sessionId } }`;
const SESSION = `query Session($id: String!) { session(sessionId: $id) {
  sessionId frameCount fps width height expiresInSeconds propagatedFrames
  objects { objectId } video { ${VIDEO_FIELDS} } } }`;
const VIEWS = ["overlay", "composite", "matte"];

const els = new Proxy({}, { get: (cache, id) => (cache[id] ??= $(id)) });

const app = {
  els,
  state: {
    limits: null,
    videos: [], // gallery videos, then this page's uploads
    video: null, // the open video
    session: null, // { id, fps, frameCount, width, height }
    opening: false,
    view: "overlay",
    background: { kind: "checker", colour: "#00ff00", image: null },
  },
  prompts: new PromptModel(),
  mattes: new MatteCache(),
  renderer: new MatteRenderer(),
  messages: new Messages($("messages")),
  player: null,
  /** Show an error the service (or the browser) raised; offers the fitting action. */
  fail(err, { key = null } = {}) {
    if (err?.name === "AbortError") return;
    console.warn("sam2-matting:", err?.code ?? "", err?.message ?? err);
    if (isSessionGone(err) && app.state.session) {
      app.state.session = { ...app.state.session, lost: true };
      updateSessionStatus();
    }
    app.messages.error(err, {
      key,
      ttlSec: app.state.limits?.session_ttl_sec ?? null,
      handlers: { restart: restartSession, retry: () => retryLast(), token: () => boot(true) },
    });
  },
  scheduleRender,
  render,
  updateControls,
};
window.matting = app; // for debugging from the console

let retryLast = () => boot();
app.setRetry = (fn) => {
  retryLast = fn;
};

// -- rendering ----------------------------------------------------------------------------

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    render();
  });
}

function visibleMattes(frame) {
  const out = [];
  for (const obj of app.editor.objects) {
    let matte = null;
    try {
      matte = app.mattes.matte(frame, obj.id);
    } catch (err) {
      app.fail(err, { key: "matte" });
    }
    if (matte) out.push({ matte, colour: obj.colour });
  }
  return out;
}

function render() {
  const s = app.state.session;
  const player = app.player;
  if (!s || !player) return;
  const frame = player.frame;
  const layers = visibleMattes(frame);
  const mattes = layers.map((l) => l.matte);
  const [w, h] = mattes.length ? [mattes[0].width, mattes[0].height] : [s.width, s.height];
  app.renderer.drawOverlay(els.overlay, layers, w, h);
  els.overlay.dataset.frame = String(frame);
  els.overlay.dataset.objects = String(layers.length);
  const bg = app.state.background;
  if (app.state.view === "composite") app.renderer.drawComposite(els["view-canvas"], els.video, mattes, w, h, bg);
  else if (app.state.view === "matte") app.renderer.drawMatte(els["view-canvas"], mattes, w, h);
  const preview = els.preview;
  app.renderer.drawComposite(preview, els.video, mattes, preview.width, preview.height, bg);
  app.still?.draw(frame); // the service's composite (estimated colour) of a still frame
  els.stage.dataset.frame = String(frame);
  els.scrubber.value = String(frame);
  els["frame-label"].value = `${frame + 1} / ${s.frameCount}`;
  app.editor.drawMarkers(frame);
  drawCoverage();
}

function drawCoverage() {
  const canvas = els.coverage;
  const s = app.state.session;
  const width = Math.max(1, Math.round(canvas.clientWidth || 600));
  if (canvas.width !== width) canvas.width = width;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!s) return;
  const x = (f) => (f / Math.max(1, s.frameCount)) * canvas.width;
  const step = Math.max(1, canvas.width / s.frameCount);
  ctx.fillStyle = app.mattes.stale ? "#8a7a3a" : "#2d74c4";
  for (const f of app.mattes.frameIndices) ctx.fillRect(x(f), 0, step, canvas.height);
  ctx.fillStyle = "#ffffff";
  for (const f of app.prompts.framesOf()) ctx.fillRect(x(f), 0, Math.max(2, step), canvas.height);
}

function fitStage() {
  const s = app.state.session;
  const [w, h] = s ? [s.width, s.height] : [16, 9];
  const box = els["stage-wrap"].getBoundingClientRect();
  const scale = Math.min(box.width / w, box.height / h);
  els.stage.style.width = `${Math.floor(w * scale)}px`;
  els.stage.style.height = `${Math.floor(h * scale)}px`;
  drawCoverage();
}

// -- controls -----------------------------------------------------------------------------

function updateControls() {
  const s = app.state.session;
  const live = Boolean(s && !s.lost);
  const propagating = app.propagation?.running ?? false;
  const hasPrompts = !app.prompts.isEmpty;
  for (const id of ["prev-frame", "next-frame", "play", "scrubber"]) els[id].disabled = !s;
  els["add-object"].disabled = !live || propagating;
  els.undo.disabled = !live || propagating || !app.prompts.canUndo;
  els["clear-frame"].disabled = !live || propagating || !hasPrompts;
  els["clear-all"].disabled = !live || propagating || !hasPrompts;
  els.propagate.disabled = !live || propagating || !hasPrompts;
  els.cancel.disabled = !propagating;
  els.export.disabled = !live || propagating || !app.exporter?.available || app.exporter?.running;
  els.play.textContent = app.player?.playing ? "Pause" : "Play";
  els["stale-note"].hidden = !(app.mattes.stale && app.mattes.frameIndices.length > 1);
  document.body.dataset.state = !s ? "idle" : s.lost ? "lost" : propagating ? "propagating" : "ready";
  document.body.dataset.session = live ? s.id : "";
  app.editor?.renderObjects();
  app.promptsFile?.refresh();
}

function updateSessionStatus() {
  const s = app.state.session;
  const ttl = app.state.limits?.session_ttl_sec;
  els["session-status"].textContent = !s
    ? ""
    : s.lost
      ? "Session expired"
      : `Session open${ttl ? ` · closes after ${formatSeconds(ttl)} idle` : ""}`;
  updateControls();
}

function setView(view) {
  app.state.view = view;
  els.stage.dataset.view = view;
  els["view-canvas"].hidden = view === "overlay";
  $(`view-${view}`).checked = true;
  scheduleRender();
}

function seek(frame) {
  if (!app.state.session) return;
  app.player.seek(frame);
}

// -- videos and sessions --------------------------------------------------------------------

function renderGallery() {
  const list = els.gallery;
  list.replaceChildren();
  for (const video of app.state.videos) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.path = video.path;
    b.setAttribute("aria-pressed", String(app.state.video?.path === video.path));
    const name = video.uploadName ?? video.path.replace(/^gallery\//, "");
    b.title = `${name} · ${video.width}×${video.height} · ${formatSeconds(video.duration)}`;
    b.setAttribute("aria-label", `Open ${name}, ${video.width} by ${video.height}, ${formatSeconds(video.duration)}`);
    const img = document.createElement("img");
    img.src = mediaUrl(video.posterUrl);
    img.alt = "";
    img.loading = "lazy";
    const span = document.createElement("span");
    span.textContent = name;
    b.append(img, span);
    b.addEventListener("click", () => openVideo(video));
    li.append(b);
    list.append(li);
  }
}

async function closeCurrent() {
  const s = app.state.session;
  app.state.session = null;
  if (s && !s.lost) {
    try {
      await closeSession(s.id);
    } catch {
      // Already gone: nothing to close.
    }
  }
}

/** A new session on video (replaying the prompts file text `prompts` when given). */
async function startSession(video, prompts = null) {
  const input = prompts === null ? { path: video.path } : { path: video.path, prompts };
  const { startSession: started } = await gql(START, { input });
  const { session } = await gql(SESSION, { id: started.sessionId });
  return {
    id: session.sessionId,
    fps: session.fps,
    frameCount: session.frameCount,
    width: session.width,
    height: session.height,
    opened: { video: session.video, objectIds: session.objects.map((o) => o.objectId), frames: session.propagatedFrames },
  };
}

/** Open video in a new session; `file` ({prompts, events}): from a prompts file. */
async function openVideo(video, file = null) {
  if (app.state.opening) return;
  app.propagation?.abort();
  app.player.pause();
  app.state.opening = true;
  retryLast = () => openVideo(video, file);
  const title = els["video-title"].textContent;
  els["video-title"].textContent = `Opening ${video.uploadName ?? video.path}…`;
  try {
    let session;
    if (file) {
      session = await startSession(video, file.prompts); // a refused file keeps the open session
      await closeCurrent();
    } else {
      await closeCurrent();
      session = await startSession(video);
    }
    if (!video.url) video = { ...session.opened.video, uploadName: file?.fileName.replace(/\.prompts\.json$|\.json$/, "") };
    app.state.video = video;
    app.state.session = session;
    renderGallery();
    app.prompts.reset();
    app.mattes.clear();
    app.editor.reset();
    app.still.reset();
    if (file) await app.promptsFile.show(session, file.events, session.opened.objectIds, session.opened.frames);
    app.promptsFile.changed();
    els.scrubber.max = String(session.frameCount - 1);
    els["preview"].height = Math.round((els.preview.width * session.height) / session.width);
    els["stage-empty"].hidden = true;
    fitStage();
    await app.player.load(mediaUrl(video.url), session.fps, session.frameCount);
    els["video-title"].textContent =
      `${video.uploadName ?? video.path} · ${session.width}×${session.height} · ` +
      `${session.frameCount} frames at ${Math.round(session.fps * 100) / 100} fps`;
    updateSessionStatus();
    app.exporter.refreshObjects();
    scheduleRender();
    els.stage.focus();
  } catch (err) {
    if (!app.state.session) {
      els["video-title"].textContent = "No video open";
      els["stage-empty"].hidden = false;
      app.state.video = null;
      renderGallery();
    } else els["video-title"].textContent = title;
    app.fail(err);
  } finally {
    app.state.opening = false;
    updateControls();
  }
}

/** A new session on the same video after an expiry (promptsfile.js: how it is rebuilt). */
async function restartSession() {
  retryLast = restartSession;
  await app.promptsFile.restart(startSession, updateSessionStatus);
  updateControls();
  scheduleRender();
}

// -- start-up -----------------------------------------------------------------------------

async function boot(askForToken = false) {
  retryLast = () => boot();
  try {
    if (askForToken) setToken(await askToken());
    app.state.limits = await getLimits();
    els["upload-limits"].textContent = describeLimits(app.state.limits);
    const data = await gql(VIDEOS);
    const videos = data.videos.edges.map((e) => e.node);
    const first = videos.findIndex((v) => v.path === data.defaultVideo?.path);
    if (first > 0) videos.unshift(...videos.splice(first, 1));
    app.state.videos = [...videos, ...app.state.videos.filter((v) => v.uploadName)];
    renderGallery();
    app.exporter.setFormats(app.state.limits);
    document.body.dataset.state = "idle";
  } catch (err) {
    if (err?.code === "UNAUTHENTICATED" && !askForToken) return boot(true);
    app.fail(err);
  }
  updateControls();
}

function init() {
  app.player = new FramePlayer(els.video, () => {
    scheduleRender();
    updateControls();
  });
  app.editor = initEditor(app);
  app.propagation = initPropagation(app);
  app.exporter = initExport(app);
  app.promptsFile = initPromptsFile(app, openVideo);
  app.still = initStillPreview(app);

  new ResizeObserver(fitStage).observe(els["stage-wrap"]);
  els.scrubber.addEventListener("input", () => seek(Number(els.scrubber.value)));
  els["prev-frame"].addEventListener("click", () => seek(app.player.frame - 1));
  els["next-frame"].addEventListener("click", () => seek(app.player.frame + 1));
  els.play.addEventListener("click", togglePlay);
  els.video.addEventListener("pause", () => updateControls());
  els["help-button"].addEventListener("click", toggleHelp);
  initUpload(app, openVideo);
  for (const view of VIEWS) $(`view-${view}`).addEventListener("change", () => setView(view));
  els["overlay-opacity"].addEventListener("input", () => {
    els.overlay.style.opacity = els["overlay-opacity"].value;
  });
  initBackground(app);

  installShortcuts({
    ArrowLeft: () => seek(app.player.frame - 1),
    ArrowRight: () => seek(app.player.frame + 1),
    "shift+ArrowLeft": () => seek(app.player.frame - 10),
    "shift+ArrowRight": () => seek(app.player.frame + 10),
    Home: () => seek(0),
    End: () => seek(Infinity),
    " ": togglePlay,
    k: togglePlay,
    n: () => app.editor.addObject(),
    z: () => app.editor.undo(),
    "ctrl+z": () => app.editor.undo(),
    c: () => app.editor.clearFrame(),
    p: () => app.propagation.start(),
    Escape: () => app.propagation.cancel(),
    v: () => setView(VIEWS[(VIEWS.indexOf(app.state.view) + 1) % VIEWS.length]),
    e: () => app.exporter.start(),
    "?": toggleHelp,
    ...Object.fromEntries([..."123456789"].map((d, i) => [d, () => app.editor.selectIndex(i)])),
  });

  // Free the server's session slot when the tab goes away (keepalive outlives the page).
  window.addEventListener("pagehide", () => {
    const s = app.state.session;
    if (s && !s.lost) {
      app.state.session = null;
      closeSession(s.id, { keepalive: true }).catch(() => {});
    }
  });
  boot();
}

function togglePlay() {
  if (!app.state.session) return;
  if (app.player.playing) app.player.pause();
  else app.player.play();
  updateControls();
}

init();
