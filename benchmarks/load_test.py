"""Bounded load test of a running service: many clients at once, each opening sessions,
clicking and streaming, with every answer checked. Local traffic only; stops by itself.

    .venv/bin/python benchmarks/load_test.py --url http://127.0.0.1:7263 \\
        --clients 8 --sessions 40 --duration 300 --frames 4 --json out.json

Each client thread repeats, until ``--sessions`` sessions were completed by all clients
together or ``--duration`` seconds passed: ``startSession`` on one of ``--videos`` (``BUSY``
at the server's session cap is the one documented refusal: it is counted, the client waits a
little and tries again), two clicks on the client's own object id, a propagation stream of
``--frames`` frames (NDJSON and multipart in turn), ``session`` and ``mattes`` queries, and
``closeSession``. A session's state must never cross to another client: its objects must be
exactly the client's, every streamed frame must carry only them at the session's video size,
and the mattes fetched back must be the ones streamed. Any other outcome is a failure, by kind.

The report gives requests sent, failures by kind, and p50/p95/p99 latency per request kind
(a stream's latency is its whole duration; its first frame is reported apart).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import requests

START = "mutation S($input: StartSessionInput!) { startSession(input: $input) { sessionId } }"
CLOSE = "mutation C($input: CloseSessionInput!) { closeSession(input: $input) { success } }"
CLICK = """mutation A($input: AddPointsInput!) { addPoints(input: $input) { frameIndex
  rleMaskList { objectId rleMask { size } alpha { size counts } } } }"""
SESSION = """query Q($id: String!) { session(sessionId: $id) { sessionId width height frameCount
  objects { objectId promptedFrames } propagatedFrames video { path } } }"""
MATTES = """query M($id: String!, $f: [Int!]!) { mattes(sessionId: $id, frameIndices: $f) {
  frameIndex rleMaskList { objectId alpha { counts } } } }"""
DEFAULT_VIDEOS = ("gallery/small.mp4", "gallery/bedroom.mp4", "gallery/dog.mp4")
ORIGIN = "http://localhost:7262"


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0 < q <= 1) by the nearest-rank method; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class Tally:
    """Outcomes shared by the client threads (under a lock)."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    sessions_done: int = 0
    sessions_taken: int = 0  # reserved by a client before it starts one (the count limit)
    frames: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, seconds: float, outcome: str) -> None:
        with self.lock:
            self.latencies[kind].append(seconds)
            self.outcomes[outcome] += 1

    def latency(self, kind: str, seconds: float) -> None:
        """A timing that is not a request of its own (a stream's first frame)."""
        with self.lock:
            self.latencies[kind].append(seconds)

    def fail(self, kind: str, detail: str) -> None:
        with self.lock:
            self.failures[kind] += 1
            self.examples.setdefault(kind, detail[:300])


class Failed(Exception):
    """A check failed; the client abandons (and closes) this session."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class Busy(Exception):
    pass


class Client:
    def __init__(self, index: int, args: argparse.Namespace, tally: Tally, stop: Any) -> None:
        self.index = index
        self.args = args
        self.tally = tally
        self.stop = stop
        self.http = requests.Session()
        self.headers = {"Origin": ORIGIN}
        if args.token:
            self.headers["Authorization"] = f"Bearer {args.token}"
        self.rng = random.Random(1000 + index)
        self.object_id = 100 + index  # no other client uses it: crossing state would show

    # -- requests --------------------------------------------------------------------------
    def gql(self, kind: str, query: str, variables: dict[str, Any]) -> Any:
        started = time.perf_counter()
        try:
            r = self.http.post(
                f"{self.args.url}/graphql",
                json={"query": query, "variables": variables},
                headers=self.headers,
                timeout=self.args.timeout,
            )
        except requests.RequestException as err:
            self.tally.record(kind, time.perf_counter() - started, "exception")
            raise Failed(f"{kind}: {type(err).__name__}", str(err)) from None
        elapsed = time.perf_counter() - started
        if r.status_code >= 500:
            self.tally.record(kind, elapsed, f"http {r.status_code}")
            raise Failed(f"{kind}: http {r.status_code}", r.text)
        try:
            body = r.json()
        except ValueError:
            self.tally.record(kind, elapsed, "not json")
            raise Failed(f"{kind}: not json", r.text) from None
        errors = body.get("errors")
        if errors:
            code = str(errors[0].get("extensions", {}).get("code"))
            self.tally.record(kind, elapsed, code)
            if code == "BUSY" and kind == "startSession":
                raise Busy()
            raise Failed(f"{kind}: {code}", json.dumps(errors)[:300])
        self.tally.record(kind, elapsed, "ok")
        return body["data"]

    def stream(self, sid: str, start: int, ndjson: bool) -> list[dict[str, Any]]:
        kind = "stream-ndjson" if ndjson else "stream-multipart"
        headers = dict(self.headers)
        if ndjson:
            headers["Accept"] = "application/x-ndjson"
        body = {
            "session_id": sid,
            "start_frame_index": start,
            "direction": "forward",
            "max_frames": self.args.frames,
            # Both, asked for: a browser's multipart request without "fields" gets masks only
            # (the stock frontend's), and the checks below compare the alpha with `mattes`.
            "fields": ["mask", "alpha"],
        }
        started = time.perf_counter()
        first: float | None = None
        frames: list[dict[str, Any]] = []
        try:
            with self.http.post(
                f"{self.args.url}/propagate_in_video",
                json=body,
                headers=headers,
                stream=True,
                timeout=self.args.timeout,
            ) as r:
                if r.status_code != 200:
                    self.tally.record(kind, time.perf_counter() - started, f"http {r.status_code}")
                    raise Failed(f"{kind}: http {r.status_code}", r.text)
                chunks = r.iter_content(chunk_size=None)
                for payload in _ndjson(chunks) if ndjson else _multipart(chunks):
                    if first is None:
                        first = time.perf_counter() - started
                    frames.append(payload)
        except requests.RequestException as err:
            self.tally.record(kind, time.perf_counter() - started, "exception")
            raise Failed(f"{kind}: {type(err).__name__}", str(err)) from None
        except ValueError as err:  # a malformed part or line
            self.tally.record(kind, time.perf_counter() - started, "malformed")
            raise Failed(f"{kind}: malformed", str(err)) from None
        self.tally.record(kind, time.perf_counter() - started, "ok")
        if first is not None:
            self.tally.latency("stream-first-frame", first)
        return frames

    # -- one session -------------------------------------------------------------------------
    def session(self, video: str, ndjson: bool) -> None:
        sid = self.gql("startSession", START, {"input": {"path": video}})["startSession"][
            "sessionId"
        ]
        try:
            self.use(sid, video, ndjson)
        finally:
            closed = self.gql("closeSession", CLOSE, {"input": {"sessionId": sid}})
            if not closed["closeSession"]["success"]:
                raise Failed("closeSession: not closed", sid)

    def use(self, sid: str, video: str, ndjson: bool) -> None:
        info = self.gql("session", SESSION, {"id": sid})["session"]
        size = [info["height"], info["width"]]
        if info["sessionId"] != sid or info["video"]["path"] != video or info["objects"]:
            raise Failed("crossed state: new session", json.dumps(info))
        start = self.rng.randrange(max(1, min(3, info["frameCount"])))
        oid = self.object_id
        for click in range(2):
            point = [round(self.rng.uniform(0.1, 0.9), 3), round(self.rng.uniform(0.1, 0.9), 3)]
            inp = {
                "sessionId": sid,
                "frameIndex": start,
                "clearOldPoints": click == 0,
                "objectId": oid,
                "labels": [1],
                "points": [point],
            }
            res = self.gql("addPoints", CLICK, {"input": inp})["addPoints"]
            got = [(m["objectId"], m["alpha"]["size"]) for m in res["rleMaskList"]]
            if res["frameIndex"] != start or got != [(oid, size)]:
                raise Failed("crossed state: click", f"{sid}: {res['frameIndex']} {got}")
        frames = self.stream(sid, start, ndjson)
        expected = list(range(start, min(info["frameCount"], start + self.args.frames)))
        if ndjson:
            end = frames.pop() if frames else {}
            if end.get("type") != "end" or end.get("cancelled"):
                raise Failed("stream: bad end", json.dumps(end)[:200])
        seen = [f["frame_index"] for f in frames]
        if seen != expected:
            raise Failed("stream: wrong frames", f"{seen} != {expected}")
        for f in frames:
            objects = [(r["object_id"], r["alpha"]["size"]) for r in f["results"]]
            if objects != [(oid, size)]:
                raise Failed("crossed state: stream", f"{sid} frame {f['frame_index']}: {objects}")
        with self.tally.lock:
            self.tally.frames += len(frames)
        after = self.gql("session", SESSION, {"id": sid})["session"]
        if after["objects"] != [{"objectId": oid, "promptedFrames": [start]}]:
            raise Failed("crossed state: objects", json.dumps(after["objects"]))
        if after["propagatedFrames"] != expected:
            raise Failed("crossed state: frames", f"{after['propagatedFrames']} != {expected}")
        last = frames[-1]
        again = self.gql("mattes", MATTES, {"id": sid, "f": [last["frame_index"]]})["mattes"]
        fetched = again[0]["rleMaskList"][0]["alpha"]["counts"] if again else None
        if fetched != last["results"][0]["alpha"]["counts"]:
            raise Failed("crossed state: mattes", f"{sid} frame {last['frame_index']}")

    def run(self) -> None:
        videos = itertools.cycle(self.args.videos[self.index % len(self.args.videos) :])
        ndjson = self.index % 2 == 0
        deadline = time.monotonic() + self.args.duration
        while time.monotonic() < deadline and not self.stop.is_set():
            with self.tally.lock:
                if self.tally.sessions_taken >= self.args.sessions:
                    return
                self.tally.sessions_taken += 1
            try:
                self.session(next(videos), ndjson)
            except Busy:
                with self.tally.lock:
                    self.tally.sessions_taken -= 1
                self.stop.wait(self.rng.uniform(0.1, 0.4))  # at the cap: back off, try again
                continue
            except Failed as err:
                self.tally.fail(err.kind, err.detail)
                continue
            with self.tally.lock:
                self.tally.sessions_done += 1
            ndjson = not ndjson


def _ndjson(chunks: Any) -> Any:
    buf = b""
    for chunk in chunks:
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)
    if buf.strip():
        raise ValueError("stream ended inside a line")


def _multipart(chunks: Any) -> Any:
    """Parts of a ``multipart/x-savi-stream`` (Content-Length framed); JSON bodies."""
    buf = b""
    it = iter(chunks)

    def fill() -> bool:
        nonlocal buf
        try:
            buf += next(it)
            return True
        except StopIteration:
            return False

    while True:
        while b"\r\n\r\n" not in buf:
            if not fill():
                if buf.strip():
                    raise ValueError("stream ended inside a part's headers")
                return
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.strip(b"\r\n").split(b"\r\n")
        if lines[0] != b"--frame":
            raise ValueError(f"bad boundary {lines[0][:40]!r}")
        headers = dict(line.decode().split(": ", 1) for line in lines[1:])
        length = int(headers["Content-Length"])
        while len(buf) < length:
            if not fill():
                raise ValueError("stream ended inside a part's body")
        body, buf = buf[:length], buf[length:]
        if not headers["Content-Type"].startswith("application/json"):
            raise ValueError(f"unexpected part: {body[:200]!r}")
        yield json.loads(body)


def run_load(args: argparse.Namespace) -> dict[str, Any]:
    """Run the clients to completion; the report as a dict (see the module doc)."""
    tally = Tally()
    stop = threading.Event()
    clients = [Client(i, args, tally, stop) for i in range(args.clients)]
    threads = [threading.Thread(target=c.run, name=f"client-{c.index}") for c in clients]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.duration + args.timeout + 30)
    stop.set()
    wall = time.monotonic() - started
    kinds = {
        kind: {
            "count": len(values),
            "p50_ms": round(1000 * percentile(values, 0.50), 1),
            "p95_ms": round(1000 * percentile(values, 0.95), 1),
            "p99_ms": round(1000 * percentile(values, 0.99), 1),
            "max_ms": round(1000 * max(values), 1),
        }
        for kind, values in sorted(tally.latencies.items())
    }
    requests_sent = sum(v["count"] for k, v in kinds.items() if k != "stream-first-frame")
    return {
        "clients": args.clients,
        "wall_s": round(wall, 1),
        "sessions_completed": tally.sessions_done,
        "frames_streamed": tally.frames,
        "requests": requests_sent,
        "outcomes": dict(tally.outcomes),
        "failures": dict(tally.failures),
        "failure_examples": tally.examples,
        "latency": kinds,
        "threads_alive": sum(t.is_alive() for t in threads),
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:7263", help="service base URL (local)")
    p.add_argument("--clients", type=int, default=8, help="concurrent client threads")
    p.add_argument("--sessions", type=int, default=40, help="stop after this many sessions")
    p.add_argument("--duration", type=float, default=300.0, help="stop after this many seconds")
    p.add_argument("--frames", type=int, default=4, help="frames per stream")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    p.add_argument("--videos", nargs="+", default=list(DEFAULT_VIDEOS), help="video ids")
    p.add_argument("--token", help="API token, if the service needs one")
    p.add_argument("--json", help="also write the report to this file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    host = args.url.split("//", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
        print("load_test: local services only (127.0.0.1)", file=sys.stderr)
        return 2
    report = run_load(args)
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0 if not report["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
