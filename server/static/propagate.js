// Propagation: stream mattes from the current frame (forward, backward or both), with a
// progress bar and frames per second; mattes are shown as they arrive; cancel at any time.

import { gql, propagateStream } from "./api.js";
import { ApiError } from "./errors.js";
import { RateMeter, formatSeconds } from "./util.js";

const CANCEL = `mutation CancelPropagateInVideo($input: CancelPropagateInVideoInput!) {
  cancelPropagateInVideo(input: $input) { success } }`;

export function initPropagation(app) {
  const { els, mattes } = app;
  let running = false;
  let cancelling = false;
  let controller = null;

  function status(text, state, extra = {}) {
    const el = els["propagate-status"];
    el.textContent = text;
    el.dataset.state = state;
    for (const [k, v] of Object.entries(extra)) el.dataset[k] = String(v);
  }

  async function start() {
    const s = app.state.session;
    if (running || !s || s.lost || app.prompts.isEmpty) return;
    await waitForPrompts();
    const direction = document.querySelector("input[name=direction]:checked").value;
    const startFrame = app.player.frame;
    app.player.pause();
    running = true;
    cancelling = false;
    controller = new AbortController();
    const bar = els["propagate-progress"];
    bar.value = 0;
    const meter = new RateMeter();
    const began = performance.now() / 1000;
    let done = 0;
    let total = 0;
    status(`Starting ${direction} from frame ${startFrame + 1}…`, "running", { frames: 0, total: 0 });
    app.updateControls();
    mattes.stale = false;
    try {
      // The page draws only the soft matte: no binary COCO masks are encoded for it.
      const body = { session_id: s.id, start_frame_index: startFrame, direction, fields: ["alpha"] };
      for await (const line of propagateStream(body, { signal: controller.signal })) {
        if (line.type === "frame") {
          mattes.setFrame(line.frame_index, line.results);
          done = line.current;
          total = line.total;
          meter.tick(performance.now() / 1000);
          bar.value = total ? done / total : 0;
          const fps = meter.rate;
          const left = fps ? ` · ${formatSeconds((total - done) / fps)} left` : "";
          status(
            `${cancelling ? "Cancelling… " : ""}${done} / ${total} frames · ${fps.toFixed(1)} fps${left}`,
            cancelling ? "cancelling" : "running",
            { frames: done, total, fps: fps.toFixed(2) },
          );
          follow(line.frame_index);
        } else if (line.type === "end") {
          const seconds = performance.now() / 1000 - began;
          const fps = seconds > 0 ? line.frames / seconds : 0;
          const words = line.cancelled ? `Cancelled after ${line.frames} of ${line.total} frames` : `Done: ${line.frames} frames`;
          status(`${words} in ${formatSeconds(seconds)} (${fps.toFixed(1)} fps).`, line.cancelled ? "cancelled" : "done", {
            frames: line.frames,
            total: line.total,
          });
        } else if (line.type === "error") {
          status(`Stopped after ${line.frames ?? done} frames.`, "error");
          throw new ApiError(line.error?.code ?? "INTERNAL", line.error?.message ?? "propagation failed");
        }
      }
    } catch (err) {
      if (err?.name === "AbortError") status(`Stopped after ${done} frames.`, "cancelled", { frames: done, total });
      else {
        if (els["propagate-status"].dataset.state === "running") status("Propagation failed.", "error");
        app.fail(err);
      }
    } finally {
      running = false;
      cancelling = false;
      controller = null;
      app.promptsFile?.changed(); // the session recorded the frames it streamed
      app.updateControls();
      app.scheduleRender();
    }
  }

  /** Show an arriving frame when the person asked to, and the screen is free. */
  function follow(frame) {
    // seek() coalesces: while one seek runs, only the latest frame asked for is kept.
    if (els.follow.checked) app.player.seek(frame);
    else app.scheduleRender();
  }

  async function waitForPrompts() {
    // Clicks still on their way must reach the server before the stream starts.
    while (app.editor.pending) await new Promise((r) => setTimeout(r, 30));
  }

  async function cancel() {
    if (!running || cancelling) return;
    cancelling = true;
    status("Cancelling…", "cancelling");
    try {
      await gql(CANCEL, { input: { sessionId: app.state.session.id } });
    } catch (err) {
      controller?.abort(); // the server cannot be told: drop the stream instead
      app.fail(err);
    }
  }

  /** Drop a running stream at once (another video is being opened). */
  function abort() {
    controller?.abort();
  }

  els.propagate.addEventListener("click", start);
  els.cancel.addEventListener("click", cancel);

  return {
    start,
    cancel,
    abort,
    get running() {
      return running;
    },
  };
}
