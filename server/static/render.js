// Mattes in the page: the encoded mattes per frame and object, decoded on demand with the
// codec's decoder, and drawn as a coloured overlay, a composite or the bare matte.

import { decodeMatte } from "./matte_rle.mjs";

const DECODED_KEEP = 48; // decoded mattes kept (about 0.5 MB each at 960x540)

export class MatteCache {
  constructor() {
    this.frames = new Map(); // frame -> Map(objectId -> encoded matte {format, size, counts})
    this.decoded = new Map(); // "frame:object" -> {width, height, data}, least recent first
    this.stale = false; // prompts changed after these mattes were computed
    this.fresh = new Set(); // frames whose mattes the service still holds (see markFresh)
  }

  /** A prompt's answer: the service now holds the mattes of these frames and no others. */
  markFresh(frames) {
    this.fresh = new Set(frames);
  }

  /** Store a frame's results: [{objectId, alpha}] (GraphQL) or [{object_id, alpha}] (stream). */
  setFrame(frame, results, { replace = true } = {}) {
    const row = replace ? new Map() : (this.frames.get(frame) ?? new Map());
    for (const r of results) {
      const id = r.objectId ?? r.object_id;
      row.set(id, r.alpha);
      this.decoded.delete(`${frame}:${id}`);
    }
    if (replace) {
      for (const k of [...this.decoded.keys()]) if (k.startsWith(`${frame}:`)) this.decoded.delete(k);
    }
    this.frames.set(frame, row);
    this.fresh.add(frame);
  }

  has(frame) {
    return this.frames.has(frame) && this.frames.get(frame).size > 0;
  }

  objectIds(frame) {
    return [...(this.frames.get(frame)?.keys() ?? [])];
  }

  /** The decoded matte of (frame, objectId), or null. Throws MatteCodecError on bad data. */
  matte(frame, objectId) {
    const k = `${frame}:${objectId}`;
    let m = this.decoded.get(k);
    if (m) {
      this.decoded.delete(k);
      this.decoded.set(k, m);
      return m;
    }
    const encoded = this.frames.get(frame)?.get(objectId);
    if (!encoded) return null;
    m = decodeMatte(encoded);
    this.decoded.set(k, m);
    while (this.decoded.size > DECODED_KEEP) this.decoded.delete(this.decoded.keys().next().value);
    return m;
  }

  deleteObject(objectId) {
    for (const row of this.frames.values()) row.delete(objectId);
    for (const k of [...this.decoded.keys()]) if (k.endsWith(`:${objectId}`)) this.decoded.delete(k);
  }

  clear() {
    this.frames.clear();
    this.decoded.clear();
    this.fresh.clear();
    this.stale = false;
  }

  /** Frames with mattes, sorted. */
  get frameIndices() {
    return [...this.frames.keys()].filter((f) => this.has(f)).sort((a, b) => a - b);
  }
}

function hexToRgb(hex) {
  const v = parseInt(hex.replace("#", ""), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

/** Per-pixel maximum of several mattes' data (the union of the objects). */
export function unionAlpha(mattes) {
  if (mattes.length === 1) return mattes[0].data;
  const out = new Uint8ClampedArray(mattes[0].data.length);
  for (const m of mattes) {
    const d = m.data;
    for (let i = 0; i < d.length; i++) if (d[i] > out[i]) out[i] = d[i];
  }
  return out;
}

/**
 * Draws mattes. The canvases it is given are sized to the matte (the video's resolution);
 * CSS scales them to the screen.
 */
export class MatteRenderer {
  constructor() {
    this.scratch = document.createElement("canvas");
    this.mask = document.createElement("canvas");
    this.fg = document.createElement("canvas");
    this.checker = null;
  }

  #size(canvas, width, height) {
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
  }

  /** Each object's matte in its colour, alpha = the matte (0-255). layers: [{matte, colour}]. */
  drawOverlay(canvas, layers, width, height) {
    this.#size(canvas, width, height);
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, width, height);
    if (!layers.length) return;
    this.#size(this.scratch, width, height);
    const sctx = this.scratch.getContext("2d");
    for (const { matte, colour } of layers) {
      const image = sctx.createImageData(matte.width, matte.height);
      const [r, g, b] = hexToRgb(colour);
      const px = image.data;
      const a = matte.data;
      for (let i = 0, j = 0; i < a.length; i++, j += 4) {
        px[j] = r;
        px[j + 1] = g;
        px[j + 2] = b;
        px[j + 3] = a[i];
      }
      sctx.putImageData(image, 0, 0);
      ctx.drawImage(this.scratch, 0, 0, width, height);
    }
  }

  #maskFrom(alpha, width, height) {
    this.#size(this.mask, width, height);
    const mctx = this.mask.getContext("2d");
    const image = mctx.createImageData(width, height);
    const px = image.data;
    for (let i = 0, j = 0; i < alpha.length; i++, j += 4) {
      px[j] = 255;
      px[j + 1] = 255;
      px[j + 2] = 255;
      px[j + 3] = alpha[i];
    }
    mctx.putImageData(image, 0, 0);
    return this.mask;
  }

  #background(ctx, width, height, background) {
    if (background.kind === "colour") {
      ctx.fillStyle = background.colour;
      ctx.fillRect(0, 0, width, height);
    } else if (background.kind === "image" && background.image) {
      const img = background.image;
      const scale = Math.max(width / img.width, height / img.height); // cover, never stretch
      const w = img.width * scale;
      const h = img.height * scale;
      ctx.drawImage(img, (width - w) / 2, (height - h) / 2, w, h);
    } else {
      const cell = Math.max(8, Math.round(Math.min(width, height) / 30));
      for (let y = 0; y < height; y += cell) {
        for (let x = 0; x < width; x += cell) {
          ctx.fillStyle = ((x + y) / cell) % 2 ? "#c8c8c8" : "#f4f4f4";
          ctx.fillRect(x, y, cell, cell);
        }
      }
    }
  }

  /** The frame (a <video>) over a background, cut out by the union of the mattes. */
  drawComposite(canvas, source, mattes, width, height, background) {
    this.#size(canvas, width, height);
    const ctx = canvas.getContext("2d");
    this.#background(ctx, canvas.width, canvas.height, background);
    if (!mattes.length) return;
    const mask = this.#maskFrom(unionAlpha(mattes), mattes[0].width, mattes[0].height);
    this.#size(this.fg, width, height);
    const fctx = this.fg.getContext("2d");
    fctx.globalCompositeOperation = "copy";
    fctx.drawImage(source, 0, 0, width, height);
    fctx.globalCompositeOperation = "destination-in";
    fctx.drawImage(mask, 0, 0, width, height);
    fctx.globalCompositeOperation = "source-over";
    ctx.drawImage(this.fg, 0, 0, canvas.width, canvas.height);
  }

  /** The union matte as grey on black. */
  drawMatte(canvas, mattes, width, height) {
    this.#size(canvas, width, height);
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, width, height);
    if (!mattes.length) return;
    ctx.drawImage(this.#maskFrom(unionAlpha(mattes), mattes[0].width, mattes[0].height), 0, 0, width, height);
  }
}
