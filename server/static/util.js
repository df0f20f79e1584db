// Small pure helpers: NDJSON line splitting, rates and human-readable sizes. No DOM.

/** Splits text chunks into complete lines; keeps a partial last line for the next chunk. */
export class LineSplitter {
  constructor() {
    this.rest = "";
  }

  /** The complete, non-empty lines in rest + chunk. */
  push(chunk) {
    const parts = (this.rest + chunk).split("\n");
    this.rest = parts.pop();
    return parts.map((l) => l.trim()).filter(Boolean);
  }

  /** What is left at the end of the stream (a last line without a newline), or []. */
  flush() {
    const last = this.rest.trim();
    this.rest = "";
    return last ? [last] : [];
  }
}

/** Frames per second over a sliding window of arrival times (seconds). */
export class RateMeter {
  constructor(window = 20) {
    this.window = window;
    this.times = [];
  }

  tick(t) {
    this.times.push(t);
    if (this.times.length > this.window) this.times.shift();
  }

  /** Frames per second, or 0 before two frames arrived. */
  get rate() {
    const n = this.times.length;
    if (n < 2) return 0;
    const span = this.times[n - 1] - this.times[0];
    return span > 0 ? (n - 1) / span : 0;
  }
}

export function formatBytes(n) {
  if (!Number.isFinite(n)) return "?";
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  if (i === 0) return `${v} bytes`;
  const text = v < 10 ? v.toFixed(1).replace(/\.0$/, "") : v.toFixed(0);
  return `${text} ${units[i]}`;
}

export function formatSeconds(sec) {
  if (!Number.isFinite(sec) || sec < 0) return "?";
  if (sec < 60) return `${Math.round(sec)} s`;
  const m = Math.floor(sec / 60);
  const s = Math.round(sec % 60);
  return s ? `${m} min ${s} s` : `${m} min`;
}

/** The text shown under the upload button: what the server accepts. */
export function describeLimits(limits) {
  const parts = [
    `up to ${formatBytes(limits.max_upload_bytes)}`,
    `${formatSeconds(limits.max_duration_sec)} long`,
    `${limits.max_side} px a side`,
    `${limits.max_fps} fps`,
    `${Number(limits.max_frames).toLocaleString("en")} frames`,
  ];
  return `The server accepts videos ${parts.join(", ")}.`;
}

/** Reasons a file breaks the limits, from what the browser knows before uploading. */
export function checkUpload(limits, { size, duration = null, width = null, height = null }) {
  const problems = [];
  if (size > limits.max_upload_bytes) {
    problems.push(`the file is ${formatBytes(size)}, over the ${formatBytes(limits.max_upload_bytes)} limit`);
  }
  if (size === 0) problems.push("the file is empty");
  if (duration !== null && Number.isFinite(duration) && duration > limits.max_duration_sec) {
    problems.push(`it lasts ${formatSeconds(duration)}, over the ${formatSeconds(limits.max_duration_sec)} limit`);
  }
  if (width !== null && height !== null && Math.max(width, height) > limits.max_side) {
    problems.push(`it is ${width}×${height}, over the ${limits.max_side} px limit`);
  }
  return problems;
}

/** A job's progress (0..1 or a percentage) as a fraction in [0, 1]. */
export function fraction(progress) {
  const p = Number(progress);
  if (!Number.isFinite(p) || p < 0) return 0;
  return p > 1 ? Math.min(1, p / 100) : p;
}
