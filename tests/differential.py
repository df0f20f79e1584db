"""Differential harness: random operation sequences on a MattingSession and on stock SAM 2.

    ops = [AddPoints(3, 1, ((40.0, 20.0),), (1,)), Propagate(0, "forward", None, None)]
    ours, stock = OurSide(predictor, clip), StockSide(predictor.model, folder)
    for op in ops:
        assert_same(op, ours.apply(op), stock.apply(op))

The oracle is SAM 2's own ``SAM2VideoPredictor`` API (``init_state`` on a frame folder,
``add_new_points_or_box``, ``add_new_mask``, ``clear_all_prompts_in_frame``, ``reset_state``,
``remove_object``, ``propagate_in_video``) on the same model object, fed the frames our reader
decodes (written losslessly as PNG data in the ``.jpg`` files SAM 2's folder loader accepts; it
opens them with Pillow, which reads the content, not the name). The model carries one change
from stock: memory is read in the compute dtype (``sam2_matting.sam2_internals``), without
which stock SAM 2 itself raises on some sequences (``test_stock_sam2_raises_without_the_fix``).

Semantics the oracle applies, as the session documents them: ``max_frames`` counts frames per
direction (SAM 2's ``max_frame_num_to_track`` is one less); ``both`` runs forward then backward
and yields the start frame once; ``backward`` from frame 0 yields frame 0 (SAM 2 skips the
pass); a cancel after ``k`` frames stops before the next frame is computed.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from hypothesis import strategies as st
from PIL import Image

from sam2_matting.errors import MattingError
from sam2_matting.limits import check_direction
from sam2_matting.session import FrameMattes, MattingSession

# The clip the sequences run on: small, so a sequence takes seconds on 2 cores.
FRAMES = 10
WIDTH, HEIGHT = 80, 48
OBJECTS = (1, 2, 3)
# Codes the session may answer for a call SAM 2 refuses or that is invalid for it.
ALLOWED_CODES = {"BAD_USER_INPUT", "NOT_FOUND"}
# Largest |ours - stock| on a 0-255 alpha. Both round sigmoid(logits) * 255 of the same
# logits computed by the same code on the same inputs: they agree exactly (seen on every frame).
ALPHA_TOLERANCE = 0


def make_clip(path: Path, frames: int = FRAMES) -> Path:
    """A small H.264 clip: two discs moving over a gradient, so tracking has work to do."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "12"}
        for i in range(frames):
            img = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
            img[..., 2] = (xx * 3).astype(np.uint8)
            img[..., 1] = (yy * 4).astype(np.uint8)
            for cx, cy, r, color in (
                (15 + 4 * i, 20, 9, (230, 40, 40)),
                (60 - 3 * i, 30, 7, (40, 230, 90)),
            ):
                img[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = color
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_frame_folder(session: MattingSession, folder: Path) -> Path:
    """The session's decoded frames, losslessly, where SAM 2's folder loader reads them."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(session.frame_count):
        Image.fromarray(session.frame(i)).save(folder / f"{i:05d}.jpg", format="PNG")
    return folder


# What the harness compared in this process (printed at the end of a pytest run).
COUNTS: collections.Counter[str] = collections.Counter()


# -- operations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddPoints:
    frame: int
    obj: int
    points: tuple[tuple[float, float], ...]
    labels: tuple[int, ...]
    clear_old: bool = True


@dataclass(frozen=True)
class AddBox:
    frame: int
    obj: int
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class AddMask:
    frame: int
    obj: int
    rect: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) of the mask's filled part

    def mask(self) -> np.ndarray:
        m = np.zeros((HEIGHT, WIDTH), bool)
        x0, y0, x1, y1 = self.rect
        m[y0:y1, x0:x1] = True
        return m


@dataclass(frozen=True)
class ClearFrame:
    frame: int
    obj: int


@dataclass(frozen=True)
class ClearVideo:
    pass


@dataclass(frozen=True)
class RemoveObject:
    obj: int


@dataclass(frozen=True)
class Propagate:
    start: int | None
    direction: str
    max_frames: int | None
    cancel_after: int | None  # stop after this many frames (a cancel), None: run to the end


Op = AddPoints | AddBox | AddMask | ClearFrame | ClearVideo | RemoveObject | Propagate


# An outcome: ("frames", [(frame, obj_ids, alphas), ...]), ("none", []) or ("error", code).
Outcome = tuple[str, Any]


def frames_of(results: list[tuple[int, tuple[int, ...], np.ndarray]]) -> Outcome:
    return ("frames", results)


# -- strategies -------------------------------------------------------------------------------

frames_st = st.integers(0, FRAMES - 1)
objects_st = st.sampled_from(OBJECTS)
point_st = st.tuples(st.integers(0, WIDTH - 1).map(float), st.integers(0, HEIGHT - 1).map(float))


@st.composite
def add_points_st(draw: Any) -> AddPoints:
    n = draw(st.integers(1, 3))
    points = tuple(draw(point_st) for _ in range(n))
    labels = (1, *(draw(st.sampled_from((0, 1))) for _ in range(n - 1)))
    return AddPoints(draw(frames_st), draw(objects_st), points, labels, draw(st.booleans()))


@st.composite
def add_box_st(draw: Any) -> AddBox:
    x0, x1 = sorted(draw(st.lists(st.integers(0, WIDTH - 1), min_size=2, max_size=2, unique=True)))
    y0, y1 = sorted(draw(st.lists(st.integers(0, HEIGHT - 1), min_size=2, max_size=2, unique=True)))
    return AddBox(draw(frames_st), draw(objects_st), (float(x0), float(y0), float(x1), float(y1)))


@st.composite
def add_mask_st(draw: Any) -> AddMask:
    x0 = draw(st.integers(0, WIDTH - 8))
    y0 = draw(st.integers(0, HEIGHT - 8))
    x1 = draw(st.integers(x0 + 4, WIDTH))
    y1 = draw(st.integers(y0 + 4, HEIGHT))
    return AddMask(draw(frames_st), draw(objects_st), (x0, y0, x1, y1))


propagate_st = st.builds(
    Propagate,
    start=st.none() | frames_st,
    direction=st.sampled_from(("forward", "backward", "both")),
    max_frames=st.none() | st.integers(1, FRAMES + 2),
    cancel_after=st.none() | st.integers(1, FRAMES),
)

# Hypothesis favours the first branches of a choice: the kinds are drawn by name, with
# propagation and clicks weighted up (they are what users do most).
_KINDS: dict[str, st.SearchStrategy[Any]] = {
    "propagate": propagate_st,
    "points": add_points_st(),
    "box": add_box_st(),
    "mask": add_mask_st(),
    "clear_frame": st.builds(ClearFrame, frames_st, objects_st),
    "remove": st.builds(RemoveObject, objects_st),
    "clear_video": st.just(ClearVideo()),
}
_WEIGHTS = {"propagate": 4, "points": 4, "box": 1, "mask": 1, "clear_frame": 1, "remove": 1}
op_st: st.SearchStrategy[Op] = st.sampled_from(
    [k for k in _KINDS for _ in range(_WEIGHTS.get(k, 1))]
).flatmap(lambda kind: _KINDS[kind])

# A sequence starts with a prompt, so that most sequences reach tracking; then anything goes.
sequence_st = st.tuples(
    st.one_of(add_points_st(), add_box_st(), add_mask_st()),
    st.lists(op_st, min_size=2, max_size=9),
).map(lambda t: [t[0], *t[1]])


# -- the two sides ----------------------------------------------------------------------------


def _alpha(masks: torch.Tensor) -> np.ndarray:
    """Stock SAM 2's video-size logits (objects, 1, H, W) -> uint8 alpha, rounded."""
    return (torch.sigmoid(masks.float()[:, 0]) * 255.0).round().to(torch.uint8).cpu().numpy()


def _ours(result: FrameMattes) -> tuple[int, tuple[int, ...], np.ndarray]:
    return (result.frame_index, result.object_ids, result.alphas)


class OurSide:
    """Applies operations to a :class:`MattingSession`.

    ``as_service=True`` passes the values the service's resolvers pass instead: points and
    boxes as fractions of the frame, masks through the matte codec, and an unknown object's
    removal as a no-op (as the demo does).
    """

    def __init__(self, session: MattingSession, *, as_service: bool = False) -> None:
        self.session = session
        self.as_service = as_service

    def _points(self, points: tuple[tuple[float, float], ...]) -> list[list[float]]:
        if not self.as_service:
            return [list(p) for p in points]
        return [[x / self.session.width, y / self.session.height] for x, y in points]

    def _mask(self, op: AddMask) -> np.ndarray:
        if not self.as_service:
            return op.mask()
        from sam2_matting.codec import decode_matte, encode_matte

        return decode_matte(encode_matte(op.mask().astype(np.uint8) * 255))

    def apply(self, op: Op) -> Outcome:
        s = self.session
        norm = self.as_service
        try:
            if isinstance(op, AddPoints):
                r = s.add_points(
                    op.frame,
                    op.obj,
                    self._points(op.points),
                    op.labels,
                    normalized=norm,
                    clear_old_points=op.clear_old,
                )
                return frames_of([_ours(r)])
            if isinstance(op, AddBox):
                (x0, y0), (x1, y1) = self._points((op.box[:2], op.box[2:]))
                r = s.add_box(op.frame, op.obj, (x0, y0, x1, y1), normalized=norm)
                return frames_of([_ours(r)])
            if isinstance(op, AddMask):
                return frames_of([_ours(s.add_mask(op.frame, op.obj, self._mask(op)))])
            if isinstance(op, ClearFrame):
                return frames_of([_ours(s.clear_points_in_frame(op.frame, op.obj))])
            if isinstance(op, ClearVideo):
                s.clear_points_in_video()
                return ("none", [])
            if isinstance(op, RemoveObject):
                if self.as_service and op.obj not in s.object_ids:
                    return frames_of([])
                return frames_of([_ours(r) for r in s.remove_object(op.obj)])
            out = []
            direction = check_direction(op.direction)
            gen = s.propagate(op.start, direction=direction, max_frames=op.max_frames)
            for r in gen:
                out.append(_ours(r))
                if op.cancel_after is not None and len(out) == op.cancel_after:
                    s.cancel()
            return frames_of(out)
        except MattingError as err:
            return ("error", err.code)


class StockSide:
    """Applies the same operations through SAM 2's own video predictor API."""

    def __init__(self, model: Any, folder: Path) -> None:
        self.model = model
        with torch.inference_mode():
            self.state = model.init_state(str(folder))
        self.n = int(self.state["num_frames"])

    def apply(self, op: Op) -> Outcome:
        m, state = self.model, self.state
        with torch.inference_mode():
            try:
                if isinstance(op, AddPoints):
                    f, ids, masks = m.add_new_points_or_box(
                        state, op.frame, op.obj, points=[list(p) for p in op.points],
                        labels=list(op.labels), clear_old_points=op.clear_old,
                    )  # fmt: skip
                    return frames_of([(f, tuple(ids), _alpha(masks))])
                if isinstance(op, AddBox):
                    f, ids, masks = m.add_new_points_or_box(
                        state, op.frame, op.obj, box=list(op.box)
                    )
                    return frames_of([(f, tuple(ids), _alpha(masks))])
                if isinstance(op, AddMask):
                    f, ids, masks = m.add_new_mask(
                        state, op.frame, op.obj, torch.from_numpy(op.mask())
                    )
                    return frames_of([(f, tuple(ids), _alpha(masks))])
                if isinstance(op, ClearFrame):
                    if op.obj not in state["obj_id_to_idx"]:
                        # SAM 2 would create the object; the session refuses an unknown one.
                        return ("error", "NOT_FOUND")
                    f, ids, masks = m.clear_all_prompts_in_frame(
                        state, op.frame, op.obj, need_output=True
                    )
                    return frames_of([(f, tuple(ids), _alpha(masks))])
                if isinstance(op, ClearVideo):
                    m.reset_state(state)
                    return ("none", [])
                if isinstance(op, RemoveObject):
                    ids, updated = m.remove_object(state, op.obj, strict=True, need_output=True)
                    return frames_of([(f, tuple(ids), _alpha(masks)) for f, masks in updated])
                return frames_of(list(self._propagate(op)))
            except (RuntimeError, ValueError, AssertionError) as err:
                return ("error", f"stock raised {type(err).__name__}: {err}")

    def _propagate(self, op: Propagate) -> Iterator[tuple[int, tuple[int, ...], np.ndarray]]:
        state = self.state
        cond = [
            t for out in state["output_dict_per_obj"].values() for t in out["cond_frame_outputs"]
        ] + [
            t
            for out in state["temp_output_dict_per_obj"].values()
            for t in out["cond_frame_outputs"]
        ]
        start = op.start
        if start is None:
            if not cond:
                self.model.propagate_in_video_preflight(state)  # raises: nothing prompted
            start = max(cond) if op.direction == "backward" else min(cond)
        limit = None if op.max_frames is None else op.max_frames - 1
        passes: list[tuple[bool, int | None]] = {
            "forward": [(False, limit)],
            "backward": [(True, limit)] if start > 0 else [(False, 0)],
            "both": [(False, limit), (True, limit)] if start > 0 else [(False, limit)],
        }[op.direction]
        yielded = 0
        for reverse, pass_limit in passes:
            gen = self.model.propagate_in_video(
                state, start_frame_idx=start, max_frame_num_to_track=pass_limit, reverse=reverse
            )
            for f, ids, masks in gen:
                if reverse and op.direction == "both" and f == start:
                    continue
                yield (f, tuple(ids), _alpha(masks))
                yielded += 1
                if op.cancel_after is not None and yielded == op.cancel_after:
                    gen.close()
                    return


def assert_same(step: int, op: Op, ours: Outcome, stock: Outcome) -> None:
    """Ours equals stock: same frames in the same order, same objects, alphas within tolerance."""
    where = f"step {step} {op!r}"
    COUNTS["steps"] += 1
    COUNTS["sequences"] += step == 0
    COUNTS["frames compared"] += len(ours[1]) if ours[0] == "frames" else 0
    COUNTS["refused by both"] += stock[0] == "error"
    if stock[0] == "error":
        assert ours[0] == "error", f"{where}: SAM 2 refused ({stock[1]}) but the session answered"
        assert ours[1] in ALLOWED_CODES, f"{where}: code {ours[1]!r}"
        return
    assert ours[0] == stock[0], f"{where}: ours {ours[0]} {ours[1]!r}, SAM 2 {stock[0]}"
    got, want = ours[1], stock[1]
    assert [(f, ids) for f, ids, _ in got] == [(f, ids) for f, ids, _ in want], (
        f"{where}: frames/objects differ: ours {[(f, ids) for f, ids, _ in got]}, "
        f"SAM 2 {[(f, ids) for f, ids, _ in want]}"
    )
    for (f, _, a), (_, _, b) in zip(got, want, strict=True):
        diff = int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max()) if a.size else 0
        assert diff <= ALPHA_TOLERANCE, f"{where}: frame {f}: alpha differs by {diff}"


def op_source(op: Op) -> str:
    """The operation as Python source, for a regression test."""
    fields = ", ".join(repr(getattr(op, f.name)) for f in dataclasses.fields(op))
    return f"{type(op).__name__}({fields})"


# -- regression sequences (each was a failure once) ---------------------------------------------

# Sequences that each failed once; tests/test_differential*.py run them on every run.
REGRESSIONS: dict[str, list[Op]] = {
    # Memory of frames tracked before any prompted frame has no object pointers: SAM 2 left it
    # bfloat16 and a float32 model failed in memory_attention.
    "prompt on 3, forward from 0": [
        AddPoints(3, 1, ((30.0, 20.0),), (1,)),
        Propagate(0, "forward", None, None),
    ],
    "prompt on 0, backward from 8": [
        AddPoints(0, 1, ((30.0, 20.0),), (1,)),
        Propagate(8, "backward", None, None),
    ],
    "second object on 3, forward from 0": [
        AddPoints(0, 1, ((15.0, 20.0),), (1,)),
        AddPoints(3, 2, ((55.0, 30.0),), (1,)),
        Propagate(0, "forward", None, None),
    ],
    "both from a frame between prompts": [
        AddPoints(2, 1, ((20.0, 20.0),), (1,)),
        AddMask(7, 2, (40, 20, 60, 40)),
        Propagate(5, "both", None, None),
    ],
    # An object whose only prompt was cleared: SAM 2 raises RuntimeError in its preflight.
    "object left without prompts": [
        AddPoints(0, 1, ((15.0, 20.0),), (1,)),
        AddBox(4, 2, (40.0, 10.0, 70.0, 40.0)),
        ClearFrame(4, 2),
        Propagate(None, "forward", None, None),
    ],
    # A click on a tracked frame is decoded with the object's memory; SAM 2 asserts it holds a
    # merged prompt, and clearing the only one left the service answering INTERNAL.
    "click on a tracked frame after its only prompt was cleared": [
        AddPoints(0, 1, ((15.0, 20.0),), (1,)),
        Propagate(None, "forward", None, None),
        ClearFrame(0, 1),
        AddPoints(3, 1, ((20.0, 20.0),), (1,)),
    ],
    "correction, then its base prompt cleared, then another click": [
        AddPoints(0, 1, ((15.0, 20.0),), (1,)),
        Propagate(None, "forward", None, None),
        AddPoints(3, 1, ((20.0, 20.0),), (1,)),
        ClearFrame(0, 1),
        AddPoints(5, 1, ((20.0, 20.0),), (1,)),
        Propagate(3, "both", None, None),
        AddPoints(5, 1, ((22.0, 20.0),), (1,)),
    ],
    # A correction click on a tracked frame does not condition the object there: SAM 2 starts
    # a propagation without a start frame at the earliest conditioning frame, not at it.
    "default start after a correction before the first prompt": [
        AddPoints(1, 1, ((0.0, 0.0),), (1,), False),
        Propagate(None, "backward", None, None),
        AddPoints(0, 1, ((0.0, 0.0), (0.0, 0.0), (0.0, 0.0)), (1, 0, 0), False),
        Propagate(None, "forward", None, None),
        Propagate(None, "backward", None, None),
    ],
    "edit after tracking, cancel, propagate again": [
        AddPoints(0, 1, ((15.0, 20.0),), (1,)),
        Propagate(None, "forward", None, 4),
        AddPoints(6, 1, ((40.0, 20.0),), (1,)),
        AddPoints(6, 3, ((60.0, 30.0),), (1,)),
        Propagate(9, "both", 6, None),
        RemoveObject(1),
        Propagate(None, "forward", None, None),
        ClearVideo(),
        Propagate(None, "both", None, None),
    ],
}
