"""``GET /sessions/<id>/composite/<frame>``: one frame's composite, as the composite export
writes it, for the page's still preview.

    GET /sessions/<id>/composite/42?bg=00ff00&objects=1,2&foreground=estimate   -> image/png

The page composites in the browser while a video plays (instant, but with the source pixel as
the colour of semi-transparent pixels); when it shows a frame still, it asks for this image,
which carries the estimated foreground colour the exports use. The pixels are computed by the
export code itself: the union of the chosen objects' mattes (:func:`server.exports.union_alpha`),
the colour :func:`~sam2_matting.export.foreground.foreground_colour` gives for ``foreground``,
and :func:`~sam2_matting.export.render.composite_over` over the background, so the PNG equals
the composite export's frame before encoding (and, with ``bg=none``, the RGBA frame of the
PNG export: the colour with its matte, for the page to draw over a checkerboard or an image).

Parameters: ``bg`` ``RRGGBB`` (``#`` optional; default ``00ff00``, the export's green) or
``none``; ``objects`` comma-separated object ids (default: every object); ``foreground``
``estimate`` (default), ``temporal`` or ``source``. ``temporal`` is drawn with the single-frame
estimate (the export's colour wherever no other frame shows the background): the temporal one
would decode and match the 12 frames around this one, several times this route's budget of a few
hundred ms on a frame, for a difference that is small on moving footage (docs/benchmarks.md).
Without ``objects``, a frame without mattes is the
background alone, as in the export; an object named in ``objects`` without a matte on the frame
is 404 ``NOT_FOUND`` (the page still shows mattes a later click made the service drop, and
keeps its own composite then). Bad parameters or a frame outside the video are 400 with the
service's JSON error; an unknown, closed or another client's session is 404 ``NOT_FOUND``, as
on every door.

One computation at a time per session (a second request waits for the first, at most
:data:`WAIT_SECONDS`, then is 503 ``BUSY``); answers are kept in a bounded LRU cache
(:data:`CACHE_BYTES`) keyed by session, frame, objects, background and colour mode and checked
against the mattes they were computed from, so a click that changes a frame's mattes is never
answered from the cache. A session's entries go when it closes.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np
from flask import Flask, Response, g, request

from sam2_matting.errors import (
    BusyError,
    FrameIndexError,
    InvalidInputError,
    MattingError,
    NotFoundError,
)
from sam2_matting.export.background import DEFAULT_BACKGROUND, parse_background
from sam2_matting.export.foreground import foreground_colour, parse_foreground
from sam2_matting.export.render import composite_over, rgba
from server.errors import error_response
from server.exports import union_alpha

__all__ = ["PreviewCache", "PreviewRequest", "init_app", "parse_request", "preview_image"]

CACHE_BYTES = 64 * 1024 * 1024  # PNG bytes kept across sessions (about 60 frames at 720p)
WAIT_SECONDS = 20.0  # how long a request waits for the session's computation in progress
PNG_LEVEL = 1  # zlib level: fast; the answer is for the screen, ~0.2 MB at 720p
MAX_OBJECTS_TEXT = 400
_HEX = re.compile(r"#?([0-9a-fA-F]{6})")
_FRAME = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True)
class PreviewRequest:
    """A checked request: ``background`` None for a transparent answer (RGBA)."""

    frame: int
    object_ids: tuple[int, ...] | None  # None: every object
    background: tuple[int, int, int] | None
    foreground: str


def parse_request(frame: str, args: Any) -> PreviewRequest:
    """``frame`` (the path's part) and ``args`` (the query) checked; InvalidInputError."""
    if not _FRAME.fullmatch(frame):
        raise InvalidInputError(f"frame must be a frame index (0, 1, ...), got {frame[:40]!r}")
    bg_text = args.get("bg")
    background: tuple[int, int, int] | None = DEFAULT_BACKGROUND
    if bg_text is not None:
        match = _HEX.fullmatch(bg_text.strip())
        if bg_text.strip().lower() in ("none", "transparent"):
            background = None
        elif match is None:
            raise InvalidInputError(f"bg must be RRGGBB (hex) or none, got {bg_text[:40]!r}")
        else:
            v = int(match.group(1), 16)
            background = ((v >> 16) & 255, (v >> 8) & 255, v & 255)
    objects_text = args.get("objects")
    object_ids: tuple[int, ...] | None = None
    if objects_text is not None:
        parts = objects_text[:MAX_OBJECTS_TEXT].split(",")
        if len(objects_text) > MAX_OBJECTS_TEXT or not all(p.strip().isdigit() for p in parts):
            raise InvalidInputError(
                f"objects must be object ids separated by commas, got {objects_text[:40]!r}"
            )
        object_ids = tuple(sorted({int(p) for p in parts}))
    foreground = parse_foreground(args.get("foreground"))
    if foreground == "temporal":  # drawn from this frame alone: the module docstring says why
        foreground = "estimate"
    return PreviewRequest(int(frame), object_ids, background, foreground)


def preview_image(
    rgb: np.ndarray, alpha: np.ndarray, background: tuple[int, int, int] | None, foreground: str
) -> np.ndarray:
    """The frame as the exports write it: (H, W, 3) over ``background`` (the composite
    export), or (H, W, 4) straight RGBA when ``background`` is None (the PNG export)."""
    colour = foreground_colour(rgb, alpha, foreground)
    if background is None:
        return rgba(colour, alpha, premultiplied=False)
    height, width = alpha.shape
    with parse_background(background).open(width, height) as bg:
        return composite_over(colour, alpha, bg.next_frame())


def encode_png(image: np.ndarray) -> bytes:
    """``image`` (H, W, 3 or 4) uint8 as PNG bytes (FFmpeg's encoder through PyAV: at 720p
    about half Pillow's time for the same size, measured in ``benchmarks/bench_preview.py``)."""
    layout = "rgba" if image.shape[2] == 4 else "rgb24"
    codec: Any = av.CodecContext.create("png", "w")
    codec.width, codec.height = image.shape[1], image.shape[0]
    codec.pix_fmt = layout
    codec.time_base = Fraction(1, 1)
    codec.options = {"compression_level": str(PNG_LEVEL), "pred": "sub"}
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=layout)
    return b"".join(bytes(packet) for packet in codec.encode(frame))


CacheKey = tuple[str, int, tuple[int, ...], tuple[int, int, int] | None, str]


class PreviewCache:
    """LRU of encoded previews, at most ``max_bytes``; each entry remembers the matte objects
    it was made from (immutable, replaced when recomputed) and is used only while they are
    still the session's."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[CacheKey, tuple[tuple[Any, ...], bytes]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self._busy: dict[str, threading.Lock] = {}

    def get(self, key: CacheKey, mattes: tuple[Any, ...]) -> bytes | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            made_from, png = item
            if len(made_from) != len(mattes) or any(
                a is not b for a, b in zip(made_from, mattes, strict=True)
            ):
                self._drop(key)
                return None
            self._items.move_to_end(key)
            return png

    def put(self, key: CacheKey, mattes: tuple[Any, ...], png: bytes) -> None:
        if len(png) > self.max_bytes:
            return
        with self._lock:
            self._drop(key)
            self._items[key] = (mattes, png)
            self._size += len(png)
            while self._size > self.max_bytes:
                self._drop(next(iter(self._items)))

    def session_lock(self, session_id: str) -> threading.Lock:
        with self._lock:
            return self._busy.setdefault(session_id, threading.Lock())

    def drop_session(self, session_id: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k[0] == session_id]:
                self._drop(key)
            self._busy.pop(session_id, None)

    @property
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return len(self._items)

    def _drop(self, key: CacheKey) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self._size -= len(item[1])


def render_preview(entry: Any, req: PreviewRequest, cache: PreviewCache) -> bytes:
    """The PNG for ``req`` on session ``entry`` (from the cache when its mattes are current)."""
    session = entry.session
    if req.frame >= session.frame_count:
        raise FrameIndexError(
            f"frame {req.frame} is outside the video (frames 0-{session.frame_count - 1})"
        )
    known = tuple(session.object_ids)
    ids = req.object_ids if req.object_ids is not None else tuple(sorted(known))
    unknown = sorted(set(ids) - set(known))
    if unknown:
        raise InvalidInputError(f"unknown object ids: {unknown}")
    key: CacheKey = (entry.id, req.frame, ids, req.background, req.foreground)
    lock = cache.session_lock(entry.id)
    if not lock.acquire(timeout=WAIT_SECONDS):
        raise BusyError("a preview of this session is still being computed; try again")
    try:
        with entry.lock:
            per_obj = dict(entry.mattes.get(req.frame, {}))
        missing = [i for i in ids if i not in per_obj]
        if req.object_ids is not None and missing:  # named: the client shows mattes the
            raise NotFoundError(  # service no longer has (a click dropped them): say so
                f"no matte of object {missing[0]} on frame {req.frame} (propagate again)"
            )
        used = tuple(per_obj[i] for i in ids if i in per_obj)
        if any(m.alpha is None for m in used):
            raise NotFoundError(
                f"frame {req.frame} was streamed without its soft matte (fields: "
                '["mask"]): propagate again with "alpha" among the fields'
            )
        png = cache.get(key, used)
        if png is not None:
            return png
        rgb = session.frame(req.frame)
        alpha = union_alpha({m.object_id: m for m in used}, list(ids))
        if alpha is None:
            alpha = np.zeros(rgb.shape[:2], np.uint8)
        png = encode_png(preview_image(rgb, alpha, req.background, req.foreground))
        cache.put(key, used, png)
        return png
    finally:
        lock.release()


def init_app(app: Flask, store: Any, cache: PreviewCache | None = None) -> PreviewCache:
    """Register the route for ``store``'s sessions; their cache entries go when they close."""
    cache = cache or PreviewCache()
    store.on_close.append(cache.drop_session)
    app.extensions["sam2_matting_preview"] = cache

    @app.get("/sessions/<session_id>/composite/<frame>")
    def session_composite(session_id: str, frame: str) -> Response:
        try:
            entry = store.get(session_id, owner=g.get("principal"))
            png = render_preview(entry, parse_request(frame, request.args), cache)
        except MattingError as err:
            response = error_response(err)
            if isinstance(err, BusyError):
                response.headers["Retry-After"] = "1"
            return response
        response = Response(png, mimetype="image/png")
        # a client's own pixels, and the same URL answers differently after a click
        response.headers["Cache-Control"] = "private, no-store"
        return response

    return cache
