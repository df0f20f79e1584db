// Cross-language tests of the browser matte decoder: run with `node --test tests/js/`.
// The fixtures in tests/fixtures/codec/ are written by scripts/make_codec_fixtures.py from the
// Python encoder; each valid one carries the pixels it must decode to.
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import {
  DEFAULT_MAX_PIXELS,
  MATTE_FORMAT,
  MatteCodecError,
  decodeMatte,
  decodeMatteInto,
  inflateRaw,
  maxBlobBytes,
  maxBodyBytes,
  maxCountsChars,
  readVarint,
  varintSize,
} from "../../sam2_matting/codec/matte_rle.mjs";

const FIXTURES = fileURLToPath(new URL("../fixtures/codec/", import.meta.url));
const load = (name) => JSON.parse(readFileSync(FIXTURES + name, "utf8"));
const valid = readdirSync(FIXTURES)
  .filter((name) => name.endsWith(".json") && name !== "bad.json")
  .sort()
  .map(load);
const bad = load("bad.json").cases;

/** Expected pixels of a fixture: raw bytes in base64, or "value:length,..." runs. */
function expectedPixels(fixture) {
  if (fixture.pixels_b64 !== undefined) {
    return new Uint8Array(Buffer.from(fixture.pixels_b64, "base64"));
  }
  const [height, width] = fixture.matte.size;
  const out = new Uint8Array(height * width);
  let o = 0;
  for (const pair of fixture.pixels_runs.split(",")) {
    const [value, length] = pair.split(":").map(Number);
    out.fill(value, o, o + length);
    o += length;
  }
  assert.equal(o, out.length);
  return out;
}

/** Index of the first differing byte, or -1 (a readable failure for big arrays). */
function firstDifference(a, b) {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

test("the fixtures cover every method and the edge cases", () => {
  assert.ok(valid.length >= 15);
  assert.deepEqual(new Set(valid.map((f) => f.method)), new Set([0, 1, 2]));
  const shapes = valid.map((f) => f.matte.size);
  assert.ok(shapes.some(([h, w]) => h === 1 && w > 1), "a 1xN matte");
  assert.ok(shapes.some(([h, w]) => w === 1 && h > 1), "an Nx1 matte");
  assert.ok(bad.length >= 30);
});

for (const fixture of valid) {
  test(`decodes ${fixture.name} (${fixture.note})`, () => {
    const [height, width] = fixture.matte.size;
    const result = decodeMatte(fixture.matte);
    assert.equal(result.height, height);
    assert.equal(result.width, width);
    assert.ok(result.data instanceof Uint8ClampedArray);
    assert.equal(firstDifference(result.data, expectedPixels(fixture)), -1);
  });
}

test("decodeMatteInto writes only the alpha channel of RGBA data", () => {
  for (const fixture of valid.filter((f) => f.pixels_b64 !== undefined)) {
    const [height, width] = fixture.matte.size;
    const image = { width, height, data: new Uint8ClampedArray(4 * width * height) };
    for (let i = 0; i < image.data.length; i++) image.data[i] = (i * 7) & 255;
    assert.equal(decodeMatteInto(fixture.matte, image), image);
    const expected = expectedPixels(fixture);
    for (let i = 0; i < expected.length; i++) {
      assert.equal(image.data[4 * i + 3], expected[i], `${fixture.name}: alpha of pixel ${i}`);
      for (let c = 0; c < 3; c++) assert.equal(image.data[4 * i + c], ((4 * i + c) * 7) & 255);
    }
  }
});

test("decodeMatteInto rejects an image of another size", () => {
  const example = valid.find((f) => f.name === "worked_example").matte;
  const image = { width: 3, height: 4, data: new Uint8ClampedArray(48) };
  assert.throws(() => decodeMatteInto(example, image), MatteCodecError);
  const short = { width: 4, height: 3, data: new Uint8ClampedArray(47) };
  assert.throws(() => decodeMatteInto(example, short), MatteCodecError);
});

test("the worked example of the spec decodes by hand", () => {
  const example = valid.find((f) => f.name === "worked_example");
  const counts = "AAUQAgUGBUAAIA==";
  assert.deepEqual(example.matte, { format: MATTE_FORMAT, size: [3, 4], counts });
  const pixels = Array.from(decodeMatte(example.matte).data);
  assert.deepEqual(pixels, [0, 0, 0, 0, 0, 64, 255, 255, 0, 96, 255, 255]);
});

for (const { name, matte, max_pixels: maxPixels } of bad) {
  test(`rejects ${name}`, () => {
    const options = maxPixels === undefined ? {} : { maxPixels };
    assert.throws(() => decodeMatte(matte, options), MatteCodecError);
  });
}

test("the configured pixel limit applies and is itself validated", () => {
  const example = valid.find((f) => f.name === "worked_example").matte;
  assert.equal(decodeMatte(example, { maxPixels: 12 }).data.length, 12);
  assert.throws(() => decodeMatte(example, { maxPixels: 11 }), MatteCodecError);
  assert.throws(() => decodeMatte(example, { maxPixels: 0 }), MatteCodecError);
  assert.throws(() => decodeMatte(example, { maxPixels: 2.5 }), MatteCodecError);
  const huge = { format: MATTE_FORMAT, size: [8193, 8192], counts: "AAEA" };
  assert.ok(8193 * 8192 > DEFAULT_MAX_PIXELS);
  assert.throws(() => decodeMatte(huge), /pixel limit/);
});

test("MatteCodecError is an Error with a stable code", () => {
  const err = new MatteCodecError("x");
  assert.ok(err instanceof Error);
  assert.equal(err.name, "MatteCodecError");
  assert.equal(err.code, "BAD_MATTE");
});

test("inflateRaw stops at its output limit", () => {
  const stream = Buffer.from(load("soft_72x128.json").matte.counts, "base64").subarray(1);
  const body = inflateRaw(stream, 1 << 20);
  assert.ok(body.length > 100);
  assert.equal(inflateRaw(stream, body.length).length, body.length);
  assert.throws(() => inflateRaw(stream, body.length - 1), /inflates past/);
});

test("corrupted streams either decode to the right size or throw MatteCodecError", () => {
  // Deterministic byte flips over every method; any other exception type is a decoder bug.
  let seed = 12345;
  const random = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x80000000;
  };
  let rejected = 0;
  for (const fixture of valid) {
    const blob = Buffer.from(fixture.matte.counts, "base64");
    for (let trial = 0; trial < 60; trial++) {
      const mutated = Buffer.from(blob);
      const flips = 1 + Math.floor(random() * 3);
      for (let k = 0; k < flips; k++) {
        mutated[Math.floor(random() * mutated.length)] ^= 1 << Math.floor(random() * 8);
      }
      const matte = { ...fixture.matte, counts: mutated.toString("base64") };
      try {
        const { data } = decodeMatte(matte);
        assert.equal(data.length, fixture.matte.size[0] * fixture.matte.size[1]);
      } catch (err) {
        assert.ok(err instanceof MatteCodecError, `${fixture.name}: ${err}`);
        rejected++;
      }
    }
  }
  assert.ok(rejected > 100, `only ${rejected} corrupted streams were rejected`);
});

// ------------------------------------------------------------------ the exact rules of the spec

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

function leb128(value) {
  const out = [];
  while (value >= 128) {
    out.push((value % 128) | 128);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return out;
}

/** A matte of H x W pixels as one-pixel literal tokens: the largest valid blob for its size. */
function allLiterals(height, width, pixels) {
  const n = height * width;
  const residuals = pixels.map((v, i) => (i >= width ? (v - pixels[i - width] + 256) % 256 : v));
  return Buffer.from([0, ...leb128(n), ...new Array(n).fill(2), ...residuals]);
}

const matteOf = (size, bytes) => ({ format: MATTE_FORMAT, size, counts: bytes.toString("base64") });

test("the length bounds are 2HW + varintSize(HW) (+1 method byte), base64'd", () => {
  for (const n of [1, 12, 127, 128, 16383, 16384, 2 ** 21, 2 ** 28, 2 ** 31 - 1]) {
    const v = leb128(n).length;
    assert.equal(varintSize(n), v);
    assert.equal(maxBodyBytes(n), 2 * n + v);
    assert.equal(maxBlobBytes(n), 2 * n + v + 1);
    assert.equal(maxCountsChars(n), 4 * Math.ceil((2 * n + v + 1) / 3));
  }
});

test("the largest valid blob decodes; one more byte or base64 group is refused", () => {
  for (const [height, width] of [[1, 1], [3, 4], [1, 64], [128, 1], [1, 200], [130, 130]]) {
    const n = height * width;
    const pixels = Array.from({ length: n }, (_, i) => (i * 37) % 256);
    const blob = allLiterals(height, width, pixels);
    assert.equal(blob.length, maxBlobBytes(n));
    const largest = matteOf([height, width], blob);
    assert.equal(largest.counts.length, maxCountsChars(n));
    assert.deepEqual(Array.from(decodeMatte(largest).data), pixels);
    const longer = matteOf([height, width], Buffer.concat([blob, Buffer.from([0])]));
    assert.throws(() => decodeMatte(longer), /more than the \d+ of the largest valid/);
    const group = { ...largest, counts: largest.counts + "AAAA" };
    assert.throws(() => decodeMatte(group), /characters, more than the \d+ of the largest valid/);
  }
});

test("varints: only the shortest form, at most 5 bytes, below 2**32", () => {
  for (const value of [0, 1, 127, 128, 300, 16383, 16384, 2 ** 21, 2 ** 28 - 1, 2 ** 32 - 1]) {
    const bytes = leb128(value);
    assert.deepEqual(readVarint(bytes, 0), [value, bytes.length]);
  }
  const refused = [
    [0x80, 0x00], // 0 in 2 bytes
    [0x81, 0x00], // 1 in 2 bytes
    [0xff, 0x80, 0x00], // 127 in 3 bytes
    [0x80, 0x80, 0x80, 0x80, 0x00], // 0 in 5 bytes
    [0x85, 0x80, 0x80, 0x80, 0x00], // 5 in 5 bytes
    [0x80, 0x80, 0x80, 0x80, 0x10], // 2**32
    [0xff, 0xff, 0xff, 0xff, 0x7f], // 2**35 - 1
    [0x80, 0x80, 0x80, 0x80, 0x80, 0x00], // 6 bytes
  ];
  for (const bytes of refused) {
    assert.throws(() => readVarint(bytes, 0), /varint/, JSON.stringify(bytes));
    // inside a matte: the worked example with its first header written that way
    const headers = [...bytes, 2, 5, 6, 5];
    const blob = Buffer.from([0, headers.length, ...headers, 64, 0, 32]);
    assert.throws(() => decodeMatte(matteOf([3, 4], blob)), /varint/);
    // and as the header count
    const count = Buffer.from([0, ...bytes, 16, 2, 5, 6, 5, 64, 0, 32]);
    assert.throws(() => decodeMatte(matteOf([3, 4], count)), MatteCodecError);
  }
});

test("base64: non-zero bits before the padding are refused", () => {
  const padded = valid.filter((f) => f.matte.counts.endsWith("="));
  assert.ok(padded.some((f) => f.matte.counts.endsWith("==")));
  assert.ok(padded.some((f) => !f.matte.counts.endsWith("==")));
  for (const fixture of padded) {
    const counts = fixture.matte.counts;
    const pad = counts.endsWith("==") ? 2 : 1;
    const i = counts.length - pad - 1;
    const value = B64.indexOf(counts[i]);
    const unused = pad === 2 ? 16 : 4;
    assert.equal(value % unused, 0, fixture.name);
    for (let low = 1; low < unused; low++) {
      const loose = counts.slice(0, i) + B64[value + low] + counts.slice(i + 1);
      assert.deepEqual(Buffer.from(loose, "base64"), Buffer.from(counts, "base64"));
      assert.throws(() => decodeMatte({ ...fixture.matte, counts: loose }), /canonical base64/);
    }
  }
});

test("the empty blob has its own message", () => {
  const empty = { format: MATTE_FORMAT, size: [3, 4], counts: "" };
  assert.throws(() => decodeMatte(empty), /counts is empty: a blob has at least its method byte/);
});

test("a size is a value: 3.0 is 3, 3.5 and booleans are refused", () => {
  const text = '{"format": "matte-rle/1", "size": [3.0, 4e0], "counts": "AAUQAgUGBUAAIA=="}';
  assert.deepEqual(JSON.parse(text).size, [3, 4]);
  assert.equal(decodeMatte(JSON.parse(text)).data.length, 12);
  for (const size of [[3.5, 4], [true, 4], [3, NaN], [3, Infinity], ["3", 4], [0, 4]]) {
    assert.throws(() => decodeMatte({ ...JSON.parse(text), size }), /size/);
  }
});

test("maxPixels outside [1, 2**31 - 1] is refused, not clamped", () => {
  const example = valid.find((f) => f.name === "worked_example").matte;
  assert.equal(decodeMatte(example, { maxPixels: 2 ** 31 - 1 }).data.length, 12);
  for (const maxPixels of [2 ** 31, 2 ** 40, 0, -1, 2.5, "12", Infinity]) {
    assert.throws(() => decodeMatte(example, { maxPixels }), /maxPixels must be an integer in/);
  }
});

test("expectedShape refuses another size before anything is decoded", () => {
  const example = valid.find((f) => f.name === "worked_example").matte;
  assert.equal(decodeMatte(example, { expectedShape: [3, 4] }).data.length, 12);
  const garbage = { ...example, size: [8192, 8192], counts: "AAAA".repeat(5) };
  assert.throws(
    () => decodeMatte(garbage, { expectedShape: [3, 4] }),
    /matte is 8192x8192 \(H x W\), expected 3x4/,
  );
  const image = { width: 4, height: 3, data: new Uint8ClampedArray(48) };
  assert.throws(() => decodeMatteInto(garbage, image), /expected 3x4/);
});
