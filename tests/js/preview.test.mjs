// The still preview's pure logic under `node --test tests/js/`: the request a frame becomes,
// one request at a time with the latest wish winning, stale answers not drawn.
import assert from "node:assert/strict";
import { test } from "node:test";

import { StillPreview, Versions, hexOf, previewRequest } from "../../server/static/preview.js";

const BASE = { sessionId: "s-1", frame: 7, objectIds: [2, 1], versions: [5, 4] };

test("a colour background is composited by the service, others come as a cut-out", () => {
  const colour = previewRequest({ ...BASE, background: { kind: "colour", colour: "#10C828" } });
  assert.equal(colour.url, "/sessions/s-1/composite/7?bg=10c828&objects=1%2C2&foreground=estimate");
  assert.equal(colour.over, false);
  assert.equal(colour.frame, 7);
  const checker = previewRequest({ ...BASE, background: { kind: "checker", colour: "#00ff00" } });
  assert.match(checker.url, /bg=none/);
  assert.equal(checker.over, true);
  assert.notEqual(colour.key, checker.key);
  const newer = previewRequest({ ...BASE, versions: [5, 6], background: { kind: "colour", colour: "#10c828" } });
  assert.notEqual(newer.key, colour.key); // a new matte is a new request
});

test("no request for the source colour, without a session or without mattes", () => {
  const bg = { kind: "colour", colour: "#00ff00" };
  assert.equal(previewRequest({ ...BASE, background: bg, mode: "source" }), null);
  assert.equal(previewRequest({ ...BASE, background: bg, sessionId: null }), null);
  assert.equal(previewRequest({ ...BASE, background: bg, objectIds: [] }), null);
  assert.equal(hexOf("#ABCDEF"), "abcdef");
  assert.equal(hexOf("red"), null);
});

test("versions number objects by identity", () => {
  const v = new Versions();
  const a = { counts: [1] };
  const b = { counts: [1] };
  assert.equal(v.of(a), v.of(a));
  assert.notEqual(v.of(a), v.of(b));
  assert.equal(v.of(undefined), 0);
});

function deferredLoader() {
  const calls = [];
  const load = (url, signal) =>
    new Promise((resolve, reject) => calls.push({ url, signal, resolve, reject }));
  return { calls, load };
}

const settle = () => new Promise((r) => setTimeout(r, 0));
const req = (frame) => ({ key: `k${frame}`, url: `/u/${frame}`, frame, over: false });

test("one request at a time; the latest wish replaces older waiting ones", async () => {
  const { calls, load } = deferredLoader();
  const ready = [];
  const still = new StillPreview({ load, onReady: (r) => ready.push(r.frame) });
  assert.equal(still.show(req(1)), null);
  await settle();
  still.show(req(2));
  still.show(req(3)); // stepping on: 2 is never asked for
  await settle();
  assert.deepEqual(calls.map((c) => c.url), ["/u/1"]);
  calls[0].resolve("image-1");
  await settle();
  await settle();
  assert.deepEqual(calls.map((c) => c.url), ["/u/1", "/u/3"]);
  assert.deepEqual(ready, []); // frame 1's answer came while 3 was shown: not drawn
  calls[1].resolve("image-3");
  await settle();
  await settle();
  assert.deepEqual(ready, [3]);
  assert.equal(still.show(req(3)), "image-3");
  assert.equal(still.show(req(1)), "image-1"); // kept, so going back is instant
  assert.equal(calls.length, 2);
  assert.equal(still.pending, false);
});

test("a refused request is reported once and not repeated; BUSY is asked again", async () => {
  const { calls, load } = deferredLoader();
  const errors = [];
  const still = new StillPreview({ load, onError: (e) => errors.push(e.code) });
  still.show(req(1));
  await settle();
  calls[0].reject({ code: "NOT_FOUND" });
  await settle();
  await settle();
  assert.deepEqual(errors, ["NOT_FOUND"]);
  assert.equal(still.show(req(1)), null);
  await settle();
  assert.equal(calls.length, 1);
  still.show(req(2));
  await settle();
  calls[1].reject({ code: "BUSY" });
  await settle();
  await settle();
  still.show(req(2));
  await settle();
  assert.equal(calls.length, 3);
  assert.deepEqual(errors, ["NOT_FOUND"]);
});

test("showing nothing drops the waiting wish; reset aborts the one in flight", async () => {
  const { calls, load } = deferredLoader();
  const still = new StillPreview({ load });
  still.show(req(1));
  await settle();
  still.show(req(2));
  still.show(null); // playing again: 2 is no longer wanted
  calls[0].resolve("image-1");
  await settle();
  await settle();
  assert.equal(calls.length, 1);
  still.show(req(4));
  await settle();
  still.reset();
  assert.equal(calls[1].signal.aborted, true);
  calls[1].resolve("late");
  await settle();
  assert.equal(still.show(null), null);
  assert.equal(still.images.size, 0);
});
