// The page's reading of prompts files under `node --test tests/js/`: the prompts a file's
// events leave on each frame, the file names, and what is refused before the service is asked.
import assert from "node:assert/strict";
import { test } from "node:test";

import { PromptModel, requestFor } from "../../server/static/prompts.js";
import {
  masksFromEvents,
  promptsFileName,
  readPromptsFile,
  statesFromEvents,
  videoFileName,
} from "../../server/static/promptsfile.js";

const points = (frame, object, pts, labels, clear = true) => ({
  op: "add_points", frame, object, points: pts, labels, clear_old_points: clear,
});

test("events leave the prompts the session holds, in order", () => {
  const states = statesFromEvents([
    points(6, 0, [[0.3, 0.4]], [1]),
    points(6, 1, [[0.7, 0.5]], [1]),
    { op: "propagate", start_frame: 2, direction: "both", max_frames: null, frames: 12 },
    points(9, 0, [[0.4, 0.5]], [0], false), // a correction: added to the frame's points
    points(6, 0, [[0.1, 0.2]], [1], false),
    { op: "add_box", frame: 3, object: 2, box: [0.1, 0.2, 0.5, 0.6], points: [[0.2, 0.3]], labels: [0] },
    points(3, 2, [[0.25, 0.35]], [1], false), // points after a box keep the box
    points(4, 1, [[0.5, 0.5]], [1]),
    { op: "clear_frame", frame: 4, object: 1 },
    points(5, 3, [[0.5, 0.5]], [1]),
    { op: "add_mask", frame: 5, object: 3, mask: {} }, // replaces the frame's points
    points(7, 4, [[0.5, 0.5]], [1]),
    { op: "remove_object", object: 4 },
  ]);
  const byKey = Object.fromEntries(states.map((s) => [`${s.frame}:${s.objectId}`, s]));
  assert.deepEqual(Object.keys(byKey).sort(), ["3:2", "6:0", "6:1", "9:0"]);
  assert.deepEqual(byKey["6:0"].points, [[0.3, 0.4, 1], [0.1, 0.2, 1]]);
  assert.deepEqual(byKey["9:0"].points, [[0.4, 0.5, 0]]);
  assert.deepEqual(byKey["3:2"], { frame: 3, objectId: 2, points: [[0.2, 0.3, 0], [0.25, 0.35, 1]], box: [0.1, 0.2, 0.5, 0.6] });
  assert.deepEqual(statesFromEvents([points(1, 1, [[0.5, 0.5]], [1]), { op: "clear_video" }]), []);

  const model = new PromptModel();
  model.load(states);
  assert.deepEqual(model.framesOf(0), [6, 9]);
  assert.equal(model.canUndo, false); // a loaded file is where undo starts
});

test("file names follow the video", () => {
  assert.equal(promptsFileName({ path: "gallery/02_horse.mp4" }), "02_horse.prompts.json");
  const upload = { path: `uploads/${"a".repeat(64)}.mp4`, uploadName: "my holiday.mov" };
  assert.equal(promptsFileName(upload), "my_holiday.prompts.json");
  assert.equal(videoFileName(upload), "my_holiday.sam2-matting.mp4");
  assert.equal(videoFileName({ path: "gallery/02_horse.mp4" }), "02_horse.mp4");
  assert.equal(promptsFileName({ path: "gallery/..mp4" }), "video.prompts.json");
});

test("text that is not a prompts file is refused readably", () => {
  assert.throws(() => readPromptsFile("a.json", "{"), { code: "BAD_USER_INPUT", message: "The file a.json is not a prompts file (not JSON)." });
  assert.throws(() => readPromptsFile("b.json", '{"format": "x", "events": []}'), /b.json is not a sam2-matting prompts file/);
  const doc = readPromptsFile("c.json", '{"format": "sam2-matting-prompts", "events": [], "video": {"path": "gallery/a.mp4"}}');
  assert.equal(doc.video.path, "gallery/a.mp4");
});

test("mask prompts are kept by frame and object, and keep their object alive", () => {
  const mask = (frame, object) => ({ op: "add_mask", frame, object, mask: {} });
  const masks = masksFromEvents([
    mask(2, 0), mask(5, 0), mask(3, 1), mask(4, 2), mask(6, 3),
    points(5, 0, [[0.5, 0.5]], [1]), // a click replaces the frame's mask
    { op: "clear_frame", frame: 3, object: 1 },
    { op: "remove_object", object: 2 },
  ]);
  assert.deepEqual(masks, [{ frame: 2, objectId: 0 }, { frame: 6, objectId: 3 }]);
  assert.deepEqual(masksFromEvents([mask(1, 1), { op: "clear_video" }]), []);

  const prompts = new PromptModel();
  prompts.load([{ frame: 7, objectId: 0, points: [[0.1, 0.1, 1]], box: null }], masks);
  assert.ok(prompts.hasMask(2, 0) && !prompts.hasMask(7, 0));
  assert.deepEqual(prompts.framesOf(0), [2, 7]);
  // Clearing object 0's last point: it still has its mask prompt, so it is not removed.
  const cleared = prompts.clearFrame(7, 0);
  assert.equal(requestFor(cleared, prompts, "s").op, "clearPointsInFrame");
  // Clearing the mask's frame clears the mask; now the object has nothing left.
  const last = prompts.clearFrame(2, 0);
  assert.deepEqual(last, { frame: 2, objectId: 0, points: [], box: null });
  assert.equal(requestFor(last, prompts, "s").op, "removeObject");
  // A click on a mask's frame replaces it; an object with only a mask can be removed.
  prompts.addPoint(6, 3, 0.5, 0.5, 1);
  assert.ok(!prompts.hasMask(6, 3));
  prompts.load([], [{ frame: 1, objectId: 4 }]);
  assert.ok(!prompts.isEmpty);
  const removed = prompts.removeObject(4);
  assert.equal(requestFor(removed.at(-1), prompts, "s").op, "removeObject");
  assert.ok(prompts.isEmpty);
});
