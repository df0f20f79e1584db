// Times the browser decoder under Node; called by benchmarks/bench_codec.py:
//   node benchmarks/bench_codec_js.mjs <mattes.json> [repeats]
// mattes.json maps a name to a matte-rle/1 object. Prints JSON: name -> best-of-N times (ms).
import { readFileSync } from "node:fs";

import { decodeMatte, decodeMatteInto } from "../sam2_matting/codec/matte_rle.mjs";

const [path, repeatsArg] = process.argv.slice(2);
const repeats = Number(repeatsArg ?? 100);
const mattes = JSON.parse(readFileSync(path, "utf8"));

function bestOf(fn) {
  for (let i = 0; i < 10; i++) fn(); // let the JIT settle
  let best = Infinity;
  for (let i = 0; i < repeats; i++) {
    const start = performance.now();
    fn();
    best = Math.min(best, performance.now() - start);
  }
  return best;
}

const results = {};
for (const [name, obj] of Object.entries(mattes)) {
  const [height, width] = obj.size;
  const image = { width, height, data: new Uint8ClampedArray(4 * width * height) };
  results[name] = {
    node: process.version,
    repeats,
    decode_ms: bestOf(() => decodeMatte(obj)),
    into_ms: bestOf(() => decodeMatteInto(obj, image)),
  };
}
console.log(JSON.stringify(results));
