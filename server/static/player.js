// Frame-accurate access to a <video>: seek to frame i at time (i + 0.5) / fps, coalescing fast
// scrubbing into the latest request, and play back with a callback per presented frame.
//
//   const player = new FramePlayer(videoElement, (frame) => redraw(frame));
//   await player.load(url, fps, frameCount);
//   await player.seek(42);     // resolves when frame 42 is on screen
//   player.play(); player.pause();

export class FramePlayer {
  constructor(video, onFrame) {
    this.video = video;
    this.onFrame = onFrame;
    this.fps = 25;
    this.frameCount = 0;
    this.frame = 0;
    this.playing = false;
    this.#pending = null;
    this.#seeking = false;
    this.#waiters = [];
    video.addEventListener("ended", () => this.#stopped());
  }

  #pending;
  #seeking;
  #waiters;
  #loadToken = 0;
  #onSeeked = null; // the listener of the seek in flight

  /** Open url; resolves when frame 0 is on screen. Rejects if the browser cannot play it. */
  load(url, fps, frameCount) {
    this.pause();
    this.fps = fps > 0 ? fps : 25;
    this.frameCount = frameCount;
    this.frame = 0;
    this.#pending = null;
    this.#seeking = false;
    if (this.#onSeeked) this.video.removeEventListener("seeked", this.#onSeeked);
    this.#onSeeked = null;
    const token = ++this.#loadToken;
    const video = this.video;
    return new Promise((resolve, reject) => {
      const done = () => {
        video.removeEventListener("loadeddata", done);
        video.removeEventListener("error", failed);
        if (token === this.#loadToken) this.seek(0).then(resolve, reject);
      };
      const failed = () => {
        video.removeEventListener("loadeddata", done);
        video.removeEventListener("error", failed);
        reject(new Error(`the browser cannot play this video (${video.error?.message || "media error"})`));
      };
      video.addEventListener("loadeddata", done);
      video.addEventListener("error", failed);
      video.src = url;
      video.load();
    });
  }

  /** Show frame i (clamped); resolves once it (or a later request) is on screen. */
  seek(i) {
    const target = Math.max(0, Math.min(this.frameCount - 1, Math.round(i)));
    if (this.playing) this.pause();
    this.#pending = target;
    const promise = new Promise((resolve) => this.#waiters.push(resolve));
    if (!this.#seeking) this.#next();
    return promise;
  }

  #next() {
    if (this.#pending === null) {
      this.#seeking = false;
      const waiters = this.#waiters.splice(0);
      for (const w of waiters) w(this.frame);
      return;
    }
    const target = this.#pending;
    this.#pending = null;
    this.#seeking = true;
    const video = this.video;
    const time = (target + 0.5) / this.fps;
    const shown = () => {
      this.#onSeeked = null;
      this.frame = target;
      this.onFrame(target);
      this.#next();
    };
    if (Math.abs(video.currentTime - time) < 1e-6 && video.readyState >= 2) {
      shown();
      return;
    }
    this.#onSeeked = shown;
    video.addEventListener("seeked", shown, { once: true });
    video.currentTime = time;
  }

  get busy() {
    return this.#seeking;
  }

  play() {
    if (this.playing || !this.frameCount) return;
    if (this.frame >= this.frameCount - 1) {
      this.seek(0).then(() => this.play());
      return;
    }
    this.playing = true;
    const video = this.video;
    const step = (_now, meta) => {
      if (!this.playing) return;
      const f = Math.min(this.frameCount - 1, Math.max(0, Math.round(meta.mediaTime * this.fps)));
      if (f !== this.frame) {
        this.frame = f;
        this.onFrame(f);
      }
      video.requestVideoFrameCallback(step);
    };
    video.requestVideoFrameCallback(step);
    video.play().catch(() => this.#stopped());
  }

  pause() {
    if (!this.playing) return;
    this.playing = false;
    this.video.pause();
    // Land exactly on the frame shown, so clicks go to the frame the person sees.
    this.seek(this.frame);
  }

  #stopped() {
    if (!this.playing) return;
    this.playing = false;
    this.seek(this.frameCount - 1);
  }
}
