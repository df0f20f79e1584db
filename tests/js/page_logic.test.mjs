// The page's pure logic under `node --test tests/js/`: prompts and undo, the mutation each
// change becomes, error messages, NDJSON line splitting, limits and export documents.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  ApiError,
  describeError,
  errorFromBody,
  isSessionGone,
  sentence,
} from "../../server/static/errors.js";
import { exportDocument, jobDocument } from "../../server/static/exporter.js";
import { PromptModel, requestFor } from "../../server/static/prompts.js";
import {
  LineSplitter,
  RateMeter,
  checkUpload,
  describeLimits,
  formatBytes,
  fraction,
} from "../../server/static/util.js";

const LIMITS = {
  max_upload_bytes: 200 * 1024 * 1024,
  max_duration_sec: 600,
  max_frames: 10000,
  max_side: 4096,
  max_fps: 120,
};

test("points on one frame accumulate and become one addPoints with clearOldPoints", () => {
  const p = new PromptModel();
  p.addPoint(3, 0, 0.25, 0.5, 1);
  const change = p.addPoint(3, 0, 0.75, 0.5, 0);
  assert.deepEqual(requestFor(change, p, "s1"), {
    op: "addPoints",
    input: {
      sessionId: "s1",
      frameIndex: 3,
      objectId: 0,
      clearOldPoints: true,
      points: [
        [0.25, 0.5],
        [0.75, 0.5],
      ],
      labels: [1, 0],
    },
  });
  assert.deepEqual(p.framesOf(0), [3]);
  assert.deepEqual(p.framesOf(1), []);
});

test("a box keeps the points, is normalised and goes as addBox", () => {
  const p = new PromptModel();
  p.addPoint(0, 2, 0.5, 0.5, 1);
  const change = p.setBox(0, 2, [0.8, 0.9, 0.1, -0.2]);
  const { op, input } = requestFor(change, p, "s");
  assert.equal(op, "addBox");
  assert.deepEqual(input.box, [0.1, 0, 0.8, 0.9]);
  assert.deepEqual(input.points, [[0.5, 0.5]]);
  assert.deepEqual(input.labels, [1]);
});

test("undo restores the previous prompt; the last prompt of an object removes it", () => {
  const p = new PromptModel();
  p.addPoint(0, 0, 0.1, 0.1, 1);
  p.addPoint(5, 0, 0.2, 0.2, 1);
  p.addPoint(5, 0, 0.3, 0.3, 1);
  let [change] = p.undo();
  assert.deepEqual(change.points, [[0.2, 0.2, 1]]);
  assert.equal(requestFor(change, p, "s").op, "addPoints");
  [change] = p.undo();
  assert.deepEqual(change.points, []);
  assert.equal(requestFor(change, p, "s").op, "clearPointsInFrame"); // frame 0 still prompted
  [change] = p.undo();
  assert.deepEqual(requestFor(change, p, "s"), { op: "removeObject", input: { sessionId: "s", objectId: 0 } });
  assert.equal(p.isEmpty, true);
  assert.equal(p.canUndo, false);
  assert.deepEqual(p.undo(), []);
});

test("clear all and remove object are single undo steps", () => {
  const p = new PromptModel();
  p.addPoint(0, 0, 0.1, 0.1, 1);
  p.addPoint(1, 1, 0.2, 0.2, 1);
  p.setBox(2, 1, [0.1, 0.1, 0.4, 0.4]);
  assert.equal(p.removeObject(1).length, 2);
  assert.deepEqual(p.framesOf(), [0]);
  assert.equal(p.undo().length, 2);
  assert.deepEqual(p.framesOf(1), [1, 2]);
  assert.equal(p.clearAll().length, 3);
  assert.equal(p.isEmpty, true);
  const restored = p.undo();
  assert.deepEqual(
    restored.map((c) => [c.frame, c.objectId]),
    [
      [0, 0],
      [1, 1],
      [2, 1],
    ],
  );
  assert.deepEqual(p.entries().map((e) => e.frame), [0, 1, 2]);
  assert.equal(p.clearFrame(9, 0), null);
});

test("points are clamped into the frame", () => {
  const p = new PromptModel();
  const change = p.addPoint(0, 0, -0.5, 1.5, 1);
  assert.deepEqual(change.points, [[0, 1, 1]]);
});

test("errors: codes from GraphQL and plain bodies, and words a person can act on", () => {
  const gqlError = errorFromBody({ errors: [{ message: "session 'x' expired", extensions: { code: "NOT_FOUND" } }] });
  assert.equal(gqlError.code, "NOT_FOUND");
  assert.equal(isSessionGone(gqlError), true);
  assert.equal(isSessionGone(new ApiError("NOT_FOUND", "no session 'x' (it may have expired or been closed)")), true);
  assert.equal(isSessionGone(new ApiError("NOT_FOUND", "no object 3 in this session")), false);
  assert.equal(isSessionGone(new ApiError("NOT_FOUND", "no such video")), false);
  const expired = describeError(gqlError, { ttlSec: 900 });
  assert.equal(expired.action, "restart");
  assert.match(expired.text, /15 minutes/);

  const plain = errorFromBody({ error: { code: "LIMIT_EXCEEDED", message: "request body over 10 bytes" } }, 413);
  assert.equal(plain.code, "LIMIT_EXCEEDED");
  assert.equal(describeError(plain).text, "Request body over 10 bytes.");
  assert.equal(errorFromBody({}, 401).code, "UNAUTHENTICATED");
  assert.equal(errorFromBody({}, 503).code, "BUSY");
  assert.equal(describeError(new ApiError("UNAUTHENTICATED", "x")).action, "token");

  const busy = describeError(new ApiError("BUSY", "the server is at its limit of 4 live sessions"), { ttlSec: 60 });
  assert.equal(busy.action, "retry");
  assert.match(busy.text, /^The server is at its limit of 4 live sessions\. Sessions are freed .* 1 minute/);
  const tracking = describeError(new ApiError("SESSION_BUSY", "the session is propagating"));
  assert.equal(tracking.action, "retry");
  assert.equal(tracking.text, "The session is propagating.");
  assert.equal(errorFromBody({}, 409).code, "SESSION_BUSY");
  assert.equal(describeError(new ApiError("INTERNAL", "boom")).title, "Server error");
  assert.equal(describeError(new ApiError("NETWORK", "x")).title, "Cannot reach the service");
  assert.equal(sentence("done!"), "Done!");
});

test("NDJSON lines split across chunks", () => {
  const s = new LineSplitter();
  assert.deepEqual(s.push('{"a":1}\n{"b"'), ['{"a":1}']);
  assert.deepEqual(s.push(":2}\n\n"), ['{"b":2}']);
  assert.deepEqual(s.push('{"end":true}'), []);
  assert.deepEqual(s.flush(), ['{"end":true}']);
  assert.deepEqual(s.flush(), []);
});

test("rate meter, byte sizes and job progress", () => {
  const m = new RateMeter(3);
  assert.equal(m.rate, 0);
  for (const t of [0, 0.5, 1, 1.5]) m.tick(t);
  assert.equal(m.rate, 2); // the window keeps the last three
  assert.equal(formatBytes(512), "512 bytes");
  assert.equal(formatBytes(1024 * 1024), "1 MB");
  assert.equal(formatBytes(1.5 * 1024 * 1024), "1.5 MB");
  assert.equal(formatBytes(200 * 1024 * 1024), "200 MB");
  assert.equal(fraction(0.25), 0.25);
  assert.equal(fraction(50), 0.5);
  assert.equal(fraction(null), 0);
});

test("upload limits are described and checked before uploading", () => {
  assert.equal(
    describeLimits(LIMITS),
    "The server accepts videos up to 200 MB, 10 min long, 4096 px a side, 120 fps, 10,000 frames.",
  );
  assert.deepEqual(checkUpload(LIMITS, { size: 1000, duration: 10, width: 1920, height: 1080 }), []);
  const problems = checkUpload(LIMITS, { size: 300 * 1024 * 1024, duration: 700, width: 8000, height: 100 });
  assert.equal(problems.length, 3);
  assert.match(problems[0], /300 MB, over the 200 MB limit/);
  assert.match(problems[1], /11 min 40 s, over the 10 min limit/);
  assert.match(problems[2], /8000×100/);
  assert.deepEqual(checkUpload(LIMITS, { size: 0 }), ["the file is empty"]);
});

test("export documents carry literal, escaped arguments", () => {
  const doc = exportDocument({ sessionId: 'a"b', objectIds: [0, 2], format: "composite", background: "#00ff00" });
  assert.equal(
    doc,
    'mutation ExportMatte { exportMatte(input: { sessionId: "a\\"b", objectIds: [0, 2], format: "composite", ' +
      'background: "#00ff00" }) { id status progress url } }',
  );
  assert.doesNotMatch(exportDocument({ sessionId: "s", objectIds: [1], format: "png-zip", background: null }), /background/);
  assert.equal(jobDocument("j1"), 'query ExportJob { exportJob(id: "j1") { id status progress url } }');
});
