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
