// Decoder for the matte-rle/1 alpha-matte format (spec: docs/matte-rle.md). No dependencies,
// synchronous, runs in browsers and Node >= 18.
//
//   import { decodeMatte, decodeMatteInto, MatteCodecError } from "./matte_rle.mjs";
//   const { width, height, data } = decodeMatte(obj);  // data: Uint8ClampedArray, row-major
//   decodeMatteInto(obj, imageData);                    // writes alpha into RGBA data[4*i + 3]
//   decodeMatte(obj, { expectedShape: [540, 960] });    // refuse another size before decoding
//
// obj is the JSON object {"format": "matte-rle/1", "size": [H, W], "counts": "<base64>"}.
// Every malformed input throws MatteCodecError; the size is checked against maxPixels before
// anything is allocated, and inflating stops at the largest body H x W can need. Only canonical
// input is valid: varints in their shortest form and below 2**32, zero unused base64 bits, a
// blob of at most maxBlobBytes(H * W) bytes (docs/matte-rle.md, sections 2 to 5).

export const MATTE_FORMAT = "matte-rle/1";
export const DEFAULT_MAX_PIXELS = 8192 * 8192;
const HARD_MAX_PIXELS = 2 ** 31 - 1;
const MAX_VARINT_BYTES = 5;
const MAX_VARINT_VALUE = 2 ** 32 - 1;
// The character before "==" ("=") carries 4 (2) unused bits, which must be zero.
const B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

export class MatteCodecError extends Error {
  constructor(message) {
    super(message);
    this.name = "MatteCodecError";
    this.code = "BAD_MATTE";
  }
}

function fail(message) {
  throw new MatteCodecError(message);
}

/** Bytes in the canonical LEB128 form of `value` (0 <= value < 2**35). */
export function varintSize(value) {
  let size = 1;
  while (value >= 2 ** (7 * size)) size++;
  return size;
}

/** Largest valid body for `pixels` pixels: a 1-byte header and 1 payload byte per pixel. */
export function maxBodyBytes(pixels) {
  return 2 * pixels + varintSize(pixels);
}

/** Largest valid blob (method byte + body) and the length of its base64. */
export function maxBlobBytes(pixels) {
  return 1 + maxBodyBytes(pixels);
}
export function maxCountsChars(pixels) {
  return 4 * Math.ceil(maxBlobBytes(pixels) / 3);
}

/**
 * Decode a matte-rle/1 object to { width, height, data } with data a row-major
 * Uint8ClampedArray of width * height alpha values. options.maxPixels (default
 * DEFAULT_MAX_PIXELS) bounds width * height; options.expectedShape ([H, W]) refuses any other
 * size before anything is decoded.
 */
export function decodeMatte(obj, options = {}) {
  const { width, height, pixels } = decodePixels(obj, options);
  const data = new Uint8ClampedArray(pixels.buffer, pixels.byteOffset, pixels.length);
  return { width, height, data };
}

function decodePixels(obj, options) {
  const maxPixels = checkMaxPixels(options.maxPixels ?? DEFAULT_MAX_PIXELS);
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
    fail("matte must be a JSON object");
  }
  if (obj.format !== MATTE_FORMAT) {
    fail(`format must be "${MATTE_FORMAT}", got ${String(obj.format)}`);
  }
  const [height, width] = checkSize(obj.size, maxPixels);
  const expected = options.expectedShape;
  if (expected !== undefined && (expected[0] !== height || expected[1] !== width)) {
    fail(`matte is ${height}x${width} (H x W), expected ${expected[0]}x${expected[1]}`);
  }
  const counts = obj.counts;
  if (typeof counts !== "string") fail("counts must be a string");
  const n = height * width;
  const limit = maxBodyBytes(n);
  checkCountsShape(counts, n, height, width);
  const blob = decodeBase64(counts);
  const method = blob[0];
  const data = blob.subarray(1);
  let pixels;
  if (method === 2) {
    if (data.length !== n) fail(`raw matte has ${data.length} bytes, size needs ${n}`);
    pixels = data;
  } else if (method === 0 || method === 1) {
    const body = method === 1 ? inflateRaw(data, limit) : data;
    pixels = decodeBody(body, height, width);
  } else {
    fail(`unknown method byte ${method}`);
  }
  return { width, height, pixels };
}

/**
 * Decode straight into the alpha channel of an RGBA ImageData-like { width, height, data }
 * (data.length >= 4 * width * height); RGB bytes are left as they are. Returns image.
 */
export function decodeMatteInto(obj, image, options = {}) {
  if (!image || !Number.isInteger(image.width) || !Number.isInteger(image.height)) {
    fail("image must have integer width and height");
  }
  const rgba = image.data;
  if (!rgba || rgba.length < 4 * image.width * image.height) {
    fail("image.data is smaller than 4 * width * height");
  }
  const expectedShape = [image.height, image.width];
  const { pixels } = decodePixels(obj, { ...options, expectedShape });
  for (let i = 0, j = 3; i < pixels.length; i++, j += 4) rgba[j] = pixels[i];
  return image;
}

function checkMaxPixels(value) {
  if (!Number.isInteger(value) || value < 1 || value > HARD_MAX_PIXELS) {
    fail(`maxPixels must be an integer in [1, ${HARD_MAX_PIXELS}]`);
  }
  return value;
}

function checkSize(size, maxPixels) {
  if (!Array.isArray(size) || size.length !== 2) fail("size must be a list [H, W]");
  for (const v of size) {
    if (typeof v !== "number" || !Number.isInteger(v)) fail(`size: ${String(v)} is not an integer`);
    if (v < 1) fail(`size: ${v} must be at least 1`);
    if (v > maxPixels) fail(`size: ${v} is over the pixel limit ${maxPixels}`);
  }
  const [height, width] = size;
  if (height * width > maxPixels) {
    fail(`size ${height}x${width} is over the pixel limit ${maxPixels}`);
  }
  return [height, width];
}

// ------------------------------------------------------------------------------ base64

/** The checks on counts that need no decoding: length bounds, padding, unused bits. */
function checkCountsShape(counts, n, height, width) {
  const maxChars = maxCountsChars(n);
  if (counts.length > maxChars) {
    fail(
      `counts is ${counts.length} characters, more than the ${maxChars} ` +
        `of the largest valid ${height}x${width} blob`,
    );
  }
  if (counts.length === 0) fail("counts is empty: a blob has at least its method byte");
  if (counts.length % 4 !== 0) fail("counts is not valid base64: length is not a multiple of 4");
  let pad = 0;
  if (counts.endsWith("==")) pad = 2;
  else if (counts.endsWith("=")) pad = 1;
  const inner = counts.indexOf("=");
  if (inner !== -1 && inner < counts.length - pad) {
    fail("counts is not valid base64: '=' anywhere but in the last two places");
  }
  if (pad) {
    const bits = B64_ALPHABET.indexOf(counts[counts.length - pad - 1]);
    if (bits !== -1 && bits % (pad === 2 ? 16 : 4) !== 0) {
      fail("counts is not canonical base64: unused bits before '=' are not zero");
    }
  }
  const blobBytes = (counts.length / 4) * 3 - pad;
  const maxBytes = maxBlobBytes(n);
  if (blobBytes > maxBytes) {
    fail(
      `counts holds ${blobBytes} bytes, more than the ${maxBytes} ` +
        `of the largest valid ${height}x${width} blob`,
    );
  }
}

const B64 = new Int32Array(128).fill(-1);
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  .split("")
  .forEach((ch, i) => {
    B64[ch.charCodeAt(0)] = i;
  });

/** Strict RFC 4648 base64 (standard alphabet, padded, no whitespace) to bytes. */
function decodeBase64(text) {
  if (text.length % 4 !== 0) fail("counts is not valid base64: length is not a multiple of 4");
  let pad = 0;
  if (text.endsWith("==")) pad = 2;
  else if (text.endsWith("=")) pad = 1;
  const out = new Uint8Array((text.length / 4) * 3 - pad);
  const full = pad ? text.length - 4 : text.length; // groups of 4 without padding
  let codes = 0; // OR of all char codes: >= 128 means a non-ASCII character
  let values = 0; // OR of all 6-bit values: negative means a character outside the alphabet
  let o = 0;
  for (let i = 0; i < full; i += 4) {
    const c0 = text.charCodeAt(i);
    const c1 = text.charCodeAt(i + 1);
    const c2 = text.charCodeAt(i + 2);
    const c3 = text.charCodeAt(i + 3);
    const a = B64[c0 & 127];
    const b = B64[c1 & 127];
    const c = B64[c2 & 127];
    const d = B64[c3 & 127];
    codes |= c0 | c1 | c2 | c3;
    values |= a | b | c | d;
    const v = (a << 18) | (b << 12) | (c << 6) | d;
    out[o++] = v >>> 16;
    out[o++] = v >>> 8;
    out[o++] = v;
  }
  if (pad) {
    const a = text.charCodeAt(full) < 128 ? B64[text.charCodeAt(full)] : -1;
    const b = text.charCodeAt(full + 1) < 128 ? B64[text.charCodeAt(full + 1)] : -1;
    const c = pad === 1 && text.charCodeAt(full + 2) < 128 ? B64[text.charCodeAt(full + 2)] : 0;
    values |= a | b | c;
    out[o++] = (a << 2) | (b >> 4);
    if (pad === 1) out[o++] = ((b & 15) << 4) | (c >> 2);
  }
  if (codes > 127 || values < 0) {
    fail("counts is not valid base64: a character outside A-Z a-z 0-9 + /");
  }
  return out;
}

// ------------------------------------------------------------------------------ token body

/**
 * One canonical varint (unsigned LEB128, shortest form, at most 5 bytes, value < 2**32) at
 * bytes[pos], ending by `end`: returns [value, next position] or throws MatteCodecError.
 */
export function readVarint(bytes, pos, end = bytes.length) {
  let value = 0;
  for (let k = 0; ; k++) {
    if (k === MAX_VARINT_BYTES) fail("varint longer than 5 bytes");
    if (pos >= end) fail("truncated varint");
    const b = bytes[pos++];
    value += (b & 127) * 2 ** (7 * k);
    if (b < 128) {
      if (k > 0 && b === 0) fail("overlong varint (not the shortest form of its value)");
      if (value > MAX_VARINT_VALUE) fail(`varint ${value} is 2**32 or more`);
      return [value, pos];
    }
  }
}

function decodeBody(body, height, width) {
  const n = height * width;
  let [headerBytes, p] = readVarint(body, 0);
  if (headerBytes > body.length - p) {
    fail(`token headers claim ${headerBytes} bytes, body has ${body.length - p}`);
  }
  if (headerBytes > n) fail(`token headers claim ${headerBytes} bytes for ${n} pixels`);
  const headersEnd = p + headerBytes;
  let q = headersEnd; // payload cursor
  // Allocated on the first non-zero write (or at the end): a matte found inconsistent before
  // then costs no memory of its declared size. Uint8Array stores mod 256: the prediction wraps.
  let out = null;
  let o = 0;
  let h;
  while (p < headersEnd) {
    [h, p] = readVarint(body, p, headersEnd);
    const kind = h % 4;
    const len = (h - kind) / 4 + 1;
    if (len > n - o) fail(`runs cover more than the ${n} pixels of a ${height}x${width} matte`);
    if (kind === 1) {
      out ??= new Uint8Array(n);
      out.fill(255, o, o + len);
    } else if (kind === 3) {
      if (q >= body.length) fail("payload too short for the tokens");
      out ??= new Uint8Array(n);
      out.fill(body[q++], o, o + len);
    } else if (kind === 2) {
      if (len > body.length - q) fail("payload too short for the tokens");
      out ??= new Uint8Array(n);
      const end = o + len;
      for (; o < end && o < width; o++) out[o] = body[q++]; // row 0: nothing above
      for (; o < end; o++) out[o] = body[q++] + out[o - width];
      continue;
    }
    o += len;
  }
  if (o !== n) fail(`runs cover ${o} pixels, size ${height}x${width} needs ${n}`);
  if (q !== body.length) fail(`${body.length - q} payload bytes left over after the tokens`);
  return out ?? new Uint8Array(n);
}

// ------------------------------------------------------------------------------ inflate

const LEN_BASE = [
  3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
  163, 195, 227, 258,
];
const LEN_EXTRA = [
  0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE = [
  1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049,
  3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA = [
  0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13,
];
const CODE_LENGTH_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/**
 * A lookup table for a canonical Huffman code given its code lengths: indexed by the next
 * `bits` input bits (LSB first), each entry is (symbol << 4) | codeLength, 0 for no code.
 */
function huffmanTable(lengths) {
  const count = new Uint16Array(16);
  let bits = 0;
  for (const len of lengths) {
    count[len]++;
    if (len > bits) bits = len;
  }
  count[0] = 0;
  let left = 1;
  for (let len = 1; len <= 15; len++) {
    left = 2 * left - count[len];
    if (left < 0) fail("corrupt deflate stream: over-subscribed Huffman code");
  }
  if (bits === 0) bits = 1; // no codes at all: every lookup is an error
  const next = new Uint16Array(16);
  for (let len = 1, code = 0; len <= 15; len++) {
    code = (code + count[len - 1]) << 1;
    next[len] = code;
  }
  const table = new Uint16Array(1 << bits);
  for (let sym = 0; sym < lengths.length; sym++) {
    const len = lengths[sym];
    if (len === 0) continue;
    let code = next[len]++;
    let rev = 0;
    for (let i = 0; i < len; i++) {
      rev = (rev << 1) | (code & 1);
      code >>= 1;
    }
    for (let i = rev; i < table.length; i += 1 << len) table[i] = (sym << 4) | len;
  }
  return { table, bits };
}

let fixedTables = null;
function getFixedTables() {
  if (fixedTables === null) {
    const lit = new Uint8Array(288);
    lit.fill(8, 0, 144);
    lit.fill(9, 144, 256);
    lit.fill(7, 256, 280);
    lit.fill(8, 280, 288);
    fixedTables = [huffmanTable(lit), huffmanTable(new Uint8Array(30).fill(5))];
  }
  return fixedTables;
}

/** Raw deflate (RFC 1951) to bytes; fails past `limit` output bytes or on trailing input. */
export function inflateRaw(input, limit) {
  let pos = 0;
  let bitBuf = 0;
  let bitCount = 0;
  let out = new Uint8Array(Math.min(limit, Math.max(1024, input.length * 4)));
  let op = 0;

  const need = (nbits) => {
    while (bitCount < nbits) {
      if (pos >= input.length) fail("truncated deflate stream");
      bitBuf |= input[pos++] << bitCount;
      bitCount += 8;
    }
  };
  const bits = (nbits) => {
    need(nbits);
    const v = bitBuf & ((1 << nbits) - 1);
    bitBuf >>>= nbits;
    bitCount -= nbits;
    return v;
  };
  const symbol = (huff) => {
    while (bitCount < huff.bits && pos < input.length) {
      bitBuf |= input[pos++] << bitCount;
      bitCount += 8;
    }
    const entry = huff.table[bitBuf & ((1 << huff.bits) - 1)];
    const len = entry & 15;
    if (len === 0) fail("corrupt deflate stream: invalid Huffman code");
    if (len > bitCount) fail("truncated deflate stream");
    bitBuf >>>= len;
    bitCount -= len;
    return entry >> 4;
  };
  const room = (extra) => {
    if (op + extra <= out.length) return;
    if (op + extra > limit) {
      fail(`deflate stream inflates past ${limit} bytes, more than the size needs`);
    }
    const grown = new Uint8Array(Math.min(limit, Math.max(op + extra, 2 * out.length)));
    grown.set(out.subarray(0, op));
    out = grown;
  };

  let last = 0;
  while (!last) {
    last = bits(1);
    const type = bits(2);
    if (type === 0) {
      bitBuf = 0; // drop the bits up to the byte boundary, hand back whole buffered bytes
      pos -= bitCount >> 3;
      bitCount = 0;
      if (pos + 4 > input.length) fail("truncated deflate stream");
      const len = input[pos] | (input[pos + 1] << 8);
      const nlen = input[pos + 2] | (input[pos + 3] << 8);
      if (len !== (~nlen & 0xffff)) fail("corrupt deflate stream: stored block length check");
      pos += 4;
      if (pos + len > input.length) fail("truncated deflate stream");
      room(len);
      out.set(input.subarray(pos, pos + len), op);
      op += len;
      pos += len;
      continue;
    }
    let lit;
    let dist;
    if (type === 1) {
      [lit, dist] = getFixedTables();
    } else if (type === 2) {
      const nlit = bits(5) + 257;
      const ndist = bits(5) + 1;
      const ncode = bits(4) + 4;
      if (nlit > 286 || ndist > 30) {
        fail("corrupt deflate stream: too many length or distance codes");
      }
      const clens = new Uint8Array(19);
      for (let i = 0; i < ncode; i++) clens[CODE_LENGTH_ORDER[i]] = bits(3);
      const cl = huffmanTable(clens);
      const lengths = new Uint8Array(nlit + ndist);
      for (let i = 0; i < lengths.length; ) {
        const sym = symbol(cl);
        if (sym < 16) {
          lengths[i++] = sym;
          continue;
        }
        let repeat;
        let value = 0;
        if (sym === 16) {
          if (i === 0) fail("corrupt deflate stream: repeat with no previous length");
          value = lengths[i - 1];
          repeat = 3 + bits(2);
        } else if (sym === 17) {
          repeat = 3 + bits(3);
        } else {
          repeat = 11 + bits(7);
        }
        if (i + repeat > lengths.length) fail("corrupt deflate stream: too many code lengths");
        lengths.fill(value, i, i + repeat);
        i += repeat;
      }
      if (lengths[256] === 0) fail("corrupt deflate stream: no end-of-block code");
      lit = huffmanTable(lengths.subarray(0, nlit));
      dist = huffmanTable(lengths.subarray(nlit));
    } else {
      fail("corrupt deflate stream: invalid block type");
    }
    for (;;) {
      let sym = symbol(lit);
      if (sym < 256) {
        if (op >= out.length) room(1);
        out[op++] = sym;
        continue;
      }
      if (sym === 256) break;
      sym -= 257;
      if (sym >= 29) fail("corrupt deflate stream: invalid length code");
      const len = LEN_BASE[sym] + bits(LEN_EXTRA[sym]);
      const dsym = symbol(dist);
      if (dsym >= 30) fail("corrupt deflate stream: invalid distance code");
      const back = DIST_BASE[dsym] + bits(DIST_EXTRA[dsym]);
      if (back > op) fail("corrupt deflate stream: distance too far back");
      room(len);
      for (let end = op + len; op < end; op++) out[op] = out[op - back];
    }
  }
  if (pos - (bitCount >> 3) !== input.length) {
    fail(`${input.length - pos + (bitCount >> 3)} stray bytes after the deflate stream`);
  }
  return out.subarray(0, op);
}
