"""``POST /propagate_in_video``: mattes streamed frame by frame as they are propagated.

Request (JSON, the SAM 2 demo's body plus optional fields)::

    {"session_id": "...", "start_frame_index": 0,
     "direction": "both" | "forward" | "backward", "max_frames": 100, "object_ids": [1, 2]}

Default representation: ``multipart/x-savi-stream; boundary=frame`` with the demo's exact part
framing (``Content-Length`` on every part, no CRLF after a body, no closing delimiter). Each
JSON part is ``{"frame_index": i, "results": [{"object_id", "mask", "alpha"}]}`` (snake_case);
``Frame-Current``/``Frame-Total`` count frames done and due. With
``Accept: application/x-ndjson`` the same results come as one JSON object per line, ending
with ``{"type": "end"}``. An error after the headers ends the stream with an error part
(content type ``application/vnd.sam2-matting.error+json``, which the stock UI ignores) or an
``{"type": "error"}`` line. Cancel with the ``cancelPropagateInVideo`` mutation, or disconnect.

A stream stopped before its last frame ends with ``{"type": "end", "cancelled": true,
"reason": ...}``: ``cancelled`` (the mutation), ``closed`` (``closeSession``), ``expired`` or
``shutdown`` (the server is stopping, e.g. on SIGTERM), ``taken_over`` (a new request of the
same client for the same session took its place: same token name with per-client tokens,
else the same remote address). A multipart stream stopped by a
shutdown ends with an error part of code ``SHUTTING_DOWN``, so no client mistakes it for a
finished propagation.

``"fields": ["mask"]``, ``["alpha"]`` or both choose what each result carries; only those are
encoded. Without ``fields``: both (the compatible superset), except a browser's request for the
multipart stream (an ``Origin`` header: the SAM 2 demo's frontend, which reads only ``mask``),
which gets ``mask`` only. Frames are computed by a producer thread and encoded on a small pool
beside it (``server.stream_pipeline``); the response only writes. A client that reads nothing
for ``send_timeout`` seconds (``SAM2_MATTING_SEND_TIMEOUT``) is cut off (``server.body_guard``):
the connection closes, the propagation stops and the session stays usable.

The body has no ``Content-Length``: gunicorn sends it chunked, one chunk per part, and ends it
with the terminating zero-length chunk once the last part is out (the connection stays open
for the next request, or closes cleanly with ``Connection: close``). See docs/reliability.md,
"The end of the stream".
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import Gauge

from sam2_matting.errors import BusyError, InvalidInputError, MattingError
from sam2_matting.limits import check_direction, check_max_frames
from server.errors import SHUTTING_DOWN, client_error, error_response
from server.session_entry import FIELDS, EncodedMatte, SessionEntry
from server.sessions import SessionStore
from server.stream_pipeline import PRODUCER_SUFFIX, FramePipeline

log = logging.getLogger(__name__)

BOUNDARY = "frame"
MULTIPART_TYPE = f"multipart/x-savi-stream; boundary={BOUNDARY}"
NDJSON_TYPE = "application/x-ndjson"
ERROR_PART_TYPE = "application/vnd.sam2-matting.error+json"


def multipart_part(body: bytes, current: int, total: int, content_type: str) -> bytes:
    """One part, byte for byte as the SAM 2 demo frames it."""
    head = (
        f"--{BOUNDARY}\r\n"
        f"Content-Type: {content_type}; charset=utf-8\r\n"
        f"Frame-Current: {current}\r\n"
        f"Frame-Total: {total}\r\n"
        "Mask-Type: RLE[]\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode("ascii") + body


def frames_due(start: int, count: int, direction: str, max_frames: int | None) -> int:
    """How many frames a propagation will yield (the stream's ``Frame-Total``)."""
    cap = max_frames if max_frames is not None else count
    forward = min(cap, count - start)
    backward = min(cap, start + 1)
    if direction == "forward":
        return forward
    if direction == "backward":
        return backward
    return forward + backward - 1


def _parse(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInputError('send a JSON object: {"session_id": ..., "start_frame_index": 0}')
    sid = body.get("session_id")
    if not isinstance(sid, str) or not sid:
        raise InvalidInputError("session_id (a string) is required")
    out: dict[str, Any] = {"session_id": sid}
    start = body.get("start_frame_index", 0)
    if isinstance(start, bool) or not isinstance(start, int):
        raise InvalidInputError("start_frame_index must be an integer")
    out["start"] = start
    out["direction"] = check_direction(body.get("direction", "both"))
    out["max_frames"] = check_max_frames(body.get("max_frames"))
    object_ids = body.get("object_ids")
    if object_ids is not None and (
        not isinstance(object_ids, list)
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in object_ids)
    ):
        raise InvalidInputError("object_ids must be a list of integers")
    out["object_ids"] = None if object_ids is None else set(object_ids)
    fields = body.get("fields")
    if fields is not None and (
        not isinstance(fields, list)
        or not fields
        or not all(isinstance(f, str) and f in FIELDS for f in fields)
    ):
        raise InvalidInputError('fields must be a non-empty list of "mask" and "alpha"')
    out["fields"] = None if fields is None else tuple(f for f in FIELDS if f in fields)
    return out


def default_fields(ndjson: bool, browser: bool) -> tuple[str, ...]:
    """What a request without ``fields`` gets: both, except the stock frontend's request
    (a browser asking for the multipart stream), which reads only ``mask``."""
    return ("mask",) if browser and not ndjson else FIELDS


def _result_json(frame_index: int, mattes: list[EncodedMatte], wanted: set[int] | None) -> dict:
    results = []
    for m in mattes:
        if wanted is not None and m.object_id not in wanted:
            continue
        item: dict[str, Any] = {"object_id": m.object_id}
        if m.mask is not None:
            item["mask"] = m.mask
        if m.alpha is not None:
            item["alpha"] = m.alpha
        results.append(item)
    return {"frame_index": frame_index, "results": results}


def client_key(principal: str | None, remote_addr: str | None) -> str | None:
    """Who may take over a stream: the token's client with per-client tokens, else the
    remote address (None: unknown, never takes over)."""
    if principal:
        return f"token:{principal}"
    return f"addr:{remote_addr}" if remote_addr else None


def init_app(
    app: Flask,
    store: SessionStore,
    metrics: Any,
    *,
    send_timeout: float | None = 30.0,
    encode_workers: int = 2,
) -> None:
    # 0 workers: each frame is encoded in the producer thread, after its model step.
    pool = (
        ThreadPoolExecutor(max_workers=encode_workers, thread_name_prefix="encode")
        if encode_workers > 0
        else None
    )
    app.extensions["sam2_matting_encoders"] = pool
    live = Gauge(
        "sam2_matting_stream_producers",
        "Live propagation producer threads",
        registry=metrics.registry,
    )
    live.set_function(lambda: sum(t.name.endswith(PRODUCER_SUFFIX) for t in threading.enumerate()))

    @app.post("/propagate_in_video")
    def propagate_in_video() -> Response:
        ndjson = NDJSON_TYPE in request.headers.get("Accept", "")
        try:
            try:
                body = request.get_json(silent=True)
            except RecursionError:  # JSON nested thousands deep
                body = None
            args = _parse(body)
            principal = g.get("principal")
            entry = store.get(args["session_id"], owner=principal)
            if store.draining:
                raise BusyError("the server is shutting down; try again in a moment")
            session = entry.session
            unknown = (args["object_ids"] or set()) - set(session.object_ids)
            if unknown:
                raise InvalidInputError(f"unknown object ids: {sorted(unknown)}")
            # SessionBusyError if another client's stream runs; the same client's is taken over
            token, epoch = entry.begin_stream(client_key(principal, request.remote_addr))
            try:
                frames = session.propagate(
                    args["start"],
                    direction=args["direction"],
                    max_frames=args["max_frames"],
                    cancel=token,
                )
            except BaseException:
                entry.end_stream(token)
                raise
        except MattingError as err:
            return error_response(err)
        total = frames_due(
            args["start"], session.frame_count, args["direction"], args["max_frames"]
        )
        fields = args["fields"] or default_fields(ndjson, "Origin" in request.headers)
        log.info(
            "session %s: stream of %d frames from %d (%s; %s)",
            entry.id,
            total,
            args["start"],
            args["direction"],
            "+".join(fields),
        )
        sock = request.environ.get("gunicorn.socket")
        if send_timeout is not None and hasattr(sock, "send_timeout"):
            sock.send_timeout = send_timeout  # type: ignore[union-attr]
        body = _generate(
            entry,
            frames,
            token,
            epoch,
            total,
            args["object_ids"],
            ndjson,
            metrics,
            store,
            fields=fields,
            pool=pool,
            sock=sock,
        )
        # Not "no-store": Chromium then reports a stream read to its end as net::ERR_ABORTED
        # (docs/reliability.md, "The end of the stream"). A POST response is not cached anyway.
        headers = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}
        return Response(
            body,
            mimetype=NDJSON_TYPE if ndjson else None,
            headers=headers,
            content_type=None if ndjson else MULTIPART_TYPE,
        )


def _generate(
    entry: SessionEntry,
    frames: Iterator[Any],
    token: Any,
    epoch: int,
    total: int,
    wanted: set[int] | None,
    ndjson: bool,
    metrics: Any,
    store: Any = None,
    *,
    fields: Collection[str] = FIELDS,
    pool: ThreadPoolExecutor | None = None,
    sock: Any = None,
) -> Iterator[bytes]:
    """The response body: writes the parts the pipeline produces, then the end."""

    def encode(current: int, result: Any) -> bytes:  # on the encoding pool
        mattes = entry.encode_and_cache(result, fields)
        payload = _result_json(result.frame_index, mattes, wanted)
        if ndjson:
            line = {"type": "frame", "current": current, "total": total, **payload}
            return (json.dumps(line) + "\n").encode()
        return multipart_part(json.dumps(payload).encode(), current, total, "application/json")

    done = 0
    metrics.streams.inc()
    pipeline = FramePipeline(
        frames, encode, token, pool=pool, on_release=lambda: entry.release_stream(token)
    )
    try:
        if entry.cancelled_since(epoch) or (store is not None and store.draining):
            token.cancel()  # a cancel that came between the request and the first frame
        pipeline.start()
        tick = time.perf_counter()
        for part in pipeline:
            done += 1
            now = time.perf_counter()
            metrics.frames.inc()
            metrics.frame_seconds.observe(now - tick)
            tick = now
            yield part
        cancelled = token.cancelled and done < total
        reason = entry.stop_reason_of(token) if cancelled else None
        if cancelled and store is not None and store.draining:
            reason = "shutdown"
        if ndjson:
            end: dict[str, Any] = {
                "type": "end",
                "frames": done,
                "total": total,
                "cancelled": cancelled,
            }
            if reason:
                end["reason"] = reason
            yield (json.dumps(end) + "\n").encode()
        elif reason == "shutdown":
            error = {
                "error": {"code": SHUTTING_DOWN, "message": "the server is shutting down"},
                "frames": done,
            }
            yield multipart_part(json.dumps(error).encode(), done, total, ERROR_PART_TYPE)
    except Exception as err:  # after the headers: end with an error part, never silently
        code, message = client_error(err)
        log.warning("session %s: stream failed after %d frames: %s", entry.id, done, code)
        error = {"error": {"code": code, "message": message}, "frames": done}
        if ndjson:
            yield (json.dumps({"type": "error", **error}) + "\n").encode()
        else:
            yield multipart_part(json.dumps(error).encode(), done, total, ERROR_PART_TYPE)
    finally:
        _release(entry, pipeline, token, metrics)
        if getattr(sock, "send_timed_out", False):
            log.warning("session %s: the client read nothing in time; stream cut", entry.id)
        log.info("session %s: stream ended, %d/%d frames", entry.id, done, total)


def _release(entry: SessionEntry, pipeline: FramePipeline, token: Any, metrics: Any) -> None:
    """Stop the propagation and free the session for the next stream. Never raises: an
    exception here would end the body before its terminating chunk (gunicorn then drops the
    connection and the client sees a broken stream instead of a finished one)."""
    token.cancel()
    try:
        if not pipeline.stop():
            log.error("session %s: the propagation did not stop in time", entry.id)
    except Exception:
        log.exception("session %s: stopping the propagation failed", entry.id)
    finally:
        entry.end_stream(token)
        metrics.streams.dec()
