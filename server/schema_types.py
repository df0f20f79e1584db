"""GraphQL types of the service: the SAM 2 demo's types (same names and shapes) plus mattes.

Strawberry camel-cases field names, so ``rle_mask_list`` is ``rleMaskList`` on the wire, exactly
as the stock demo frontend asks for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import strawberry
from strawberry import relay

if TYPE_CHECKING:
    from server.session_entry import EncodedMatte


@strawberry.type(description="Binary mask as COCO run-length encoding (column-major).")
class RLEMask:
    size: list[int]
    counts: str
    order: str = "F"


@strawberry.type(description="0-255 alpha matte in the sam2-matting codec (docs/matte-rle.md).")
class Matte:
    format: str
    size: list[int]
    counts: str


@strawberry.type
class RLEMaskForObject:
    object_id: int
    rle_mask: RLEMask = strawberry.field(description="binary mask, alpha >= 128")
    alpha: Matte = strawberry.field(description="the soft matte, 0-255 per pixel")


@strawberry.type
class RLEMaskListOnFrame:
    frame_index: int
    rle_mask_list: list[RLEMaskForObject]


def mask_list(frame_index: int, mattes: Iterable[EncodedMatte]) -> RLEMaskListOnFrame:
    return RLEMaskListOnFrame(
        frame_index=frame_index, rle_mask_list=[_for_object(m.with_mask()) for m in mattes]
    )


def _for_object(m: EncodedMatte) -> RLEMaskForObject:
    if m.mask is None or m.alpha is None:
        raise ValueError(f"object {m.object_id}: the matte was not encoded")
    return RLEMaskForObject(
        object_id=m.object_id,
        rle_mask=RLEMask(size=list(m.mask["size"]), counts=m.mask["counts"]),
        alpha=Matte(format=m.alpha["format"], size=list(m.alpha["size"]), counts=m.alpha["counts"]),
    )


@strawberry.type
class Video(relay.Node):
    code: relay.NodeID[str]
    path: str
    poster_path: str | None
    width: int
    height: int
    frame_count: int
    fps: float
    duration: float
    base_url: strawberry.Private[str]

    @strawberry.field
    def url(self) -> str:
        return f"{self.base_url}/{quote(self.path)}"

    @strawberry.field
    def poster_url(self) -> str:
        return f"{self.base_url}/{quote(self.poster_path or '')}"

    @classmethod
    def from_record(cls, record: Any, base_url: str) -> Video:
        return cls(
            code=record.id,
            path=record.id,
            poster_path=record.poster,
            width=record.width,
            height=record.height,
            frame_count=record.frame_count,
            fps=record.fps,
            duration=record.duration,
            base_url=base_url,
        )


@strawberry.type
class ObjectInfo:
    object_id: int
    prompted_frames: list[int]


@strawberry.type(description="What a session holds: its video, objects, prompts and progress.")
class SessionInfo:
    session_id: str
    video: Video
    frame_count: int
    fps: float
    width: int
    height: int
    objects: list[ObjectInfo]
    propagated_frames: list[int] = strawberry.field(
        description="frames whose mattes can be fetched again with `mattes` (no recompute)"
    )
    is_propagating: bool
    expires_in_seconds: float
    expires_at: str = strawberry.field(description="ISO 8601 UTC time of the idle expiry")


# -- inputs (the anchor's, then ours) -------------------------------------------------------
@strawberry.input
class StartSessionInput:
    path: str = strawberry.field(description="a video id: gallery/<name> or uploads/<hash>.mp4")
    prompts: str | None = strawberry.field(
        default=None, description="a prompts file (JSON text, docs/prompts-file.md) to replay"
    )


@strawberry.type
class StartSession:
    session_id: str


@strawberry.input
class CloseSessionInput:
    session_id: str


@strawberry.type
class CloseSession:
    success: bool


@strawberry.input
class AddPointsInput:
    session_id: str
    frame_index: int
    clear_old_points: bool
    object_id: int
    labels: list[int]
    points: list[list[float]] = strawberry.field(description="[x, y] normalised to [0, 1]")


@strawberry.input
class MatteInput:
    format: str
    size: list[int]
    counts: str


@strawberry.input
class RLEMaskInput:
    size: list[int]
    counts: str


@strawberry.input
class AddMaskInput:
    session_id: str
    frame_index: int
    object_id: int
    alpha: MatteInput | None = strawberry.field(
        default=None, description="a matte in the codec's format (alpha >= 128 is inside)"
    )
    rle_mask: RLEMaskInput | None = strawberry.field(
        default=None, description="or a binary COCO RLE, as the SAM 2 demo encodes masks"
    )


@strawberry.input
class AddBoxInput:
    session_id: str
    frame_index: int
    object_id: int
    box: list[float] = strawberry.field(description="[x0, y0, x1, y1] normalised to [0, 1]")
    points: list[list[float]] | None = None
    labels: list[int] | None = None


@strawberry.input
class ClearPointsInFrameInput:
    session_id: str
    frame_index: int
    object_id: int


@strawberry.input
class ClearPointsInVideoInput:
    session_id: str


@strawberry.type
class ClearPointsInVideo:
    success: bool


@strawberry.input
class RemoveObjectInput:
    session_id: str
    object_id: int


@strawberry.input
class CancelPropagateInVideoInput:
    session_id: str


@strawberry.type
class CancelPropagateInVideo:
    success: bool


@strawberry.type(description="An export of a session's mattes, running in the background.")
class ExportJobInfo:
    id: str
    session_id: str
    format: str
    status: str = strawberry.field(description="queued, running, done, failed or cancelled")
    progress: float
    frames_done: int
    frames_total: int
    url: str | None = strawberry.field(description="download URL once status is done")
    error_code: str | None
    error: str | None


@strawberry.type
class ExportFormatInfo:
    name: str
    extension: str
    mime_type: str
    description: str


@strawberry.input
class ExportMatteInput:
    session_id: str
    format: str = "prores"
    object_ids: list[int] | None = strawberry.field(
        default=None, description="objects whose union is exported (default: all)"
    )
    background: str | None = strawberry.field(
        default=None,
        description="composite only: a colour (#00ff00, 0,255,0, lime) or a video id",
    )
    premultiplied: bool = False
    foreground: str | None = strawberry.field(
        default=None,
        description=(
            "colour where 0 < alpha < 255: estimate (the default: the object's own colour, "
            "estimated from the frame and the matte), temporal (the same with the background "
            "seen in the frames around) or source (the source pixel); "
            "ignored by the alpha format"
        ),
    )


@strawberry.input
class CancelExportInput:
    job_id: str


def _upload_value(value: Any) -> Any:
    """An ``Upload`` variable must be a file part of a multipart request, not a JSON value."""
    from graphql import GraphQLError

    if not callable(getattr(value, "read", None)):
        raise GraphQLError(
            "an Upload is a file sent as a part of a multipart request (the GraphQL multipart"
            " request spec), not a JSON value"
        )
    return value


# Strawberry's Upload takes any value; this one refuses what is not a file (BAD_USER_INPUT).
UPLOAD_SCALAR = strawberry.scalar(
    name="Upload",
    description="Represents a file upload.",
    serialize=lambda v: v,
    parse_value=_upload_value,
)
