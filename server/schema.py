"""The GraphQL schema: a compatible superset of the SAM 2 demo backend's, with mattes added.

Every operation of the demo keeps its name, arguments and result shape (``rleMask`` stays a
binary COCO RLE so the stock frontend works); each mask result gains ``alpha``, the 0-255 matte.
Added: ``addMask``, ``addBox``, ``session(sessionId)``, ``mattes`` (fetch computed mattes again).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import strawberry
from graphql import GraphQLError
from strawberry import relay, tools
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
)
from strawberry.file_uploads import Upload

from sam2_matting.codec import decode_coco_binary, decode_matte
from sam2_matting.errors import InvalidInputError, MattingError, NotFoundError
from server.config import Settings
from server.errors import CodedErrors, guarded
from server.schema_types import (
    UPLOAD_SCALAR,
    AddBoxInput,
    AddMaskInput,
    AddPointsInput,
    CancelExportInput,
    CancelPropagateInVideo,
    CancelPropagateInVideoInput,
    ClearPointsInFrameInput,
    ClearPointsInVideo,
    ClearPointsInVideoInput,
    CloseSession,
    CloseSessionInput,
    ExportFormatInfo,
    ExportJobInfo,
    ExportMatteInput,
    ObjectInfo,
    RemoveObjectInput,
    RLEMaskListOnFrame,
    SessionInfo,
    StartSession,
    StartSessionInput,
    Video,
    mask_list,
)
from server.sessions import SessionEntry, SessionStore

MAX_FRAMES_PER_QUERY = 1000
log = logging.getLogger(__name__)


@dataclass
class AppContext:
    """What resolvers get as ``info.context``: the app's services, built once."""

    settings: Settings
    store: SessionStore
    library: Any  # server.media.MediaLibrary
    base_url: str
    exports: Any = None  # server.exports.ExportJobs
    request: Any = None
    response: Any = None
    principal: str | None = None  # the client's name with per-client tokens, else None


def _ctx(info: strawberry.Info) -> AppContext:
    ctx: AppContext = info.context
    return ctx


def _session(info: strawberry.Info, session_id: str) -> SessionEntry:
    """The caller's live session (NotFoundError for an unknown id or another client's)."""
    ctx = _ctx(info)
    entry: SessionEntry = ctx.store.get(session_id, owner=ctx.principal)
    return entry


def _job_info(job: Any, base_url: str) -> ExportJobInfo:
    path = job.url_path
    return ExportJobInfo(
        id=job.id,
        session_id=job.session_id,
        format=job.format,
        status=job.status,
        progress=round(job.progress, 4),
        frames_done=job.done,
        frames_total=job.total,
        url=f"{base_url}/{path}" if path else None,
        error_code=job.error_code,
        error=job.error,
    )


def _background(ctx: AppContext, text: str | None) -> Any:
    """A composite background from a client: a colour or a known video id, never a path."""
    from sam2_matting.export import BackgroundSpec, parse_colour

    if text is None:
        return None
    if text.startswith(("gallery/", "uploads/")):
        return BackgroundSpec("video", path=ctx.library.resolve(text).file)
    return BackgroundSpec("colour", colour=parse_colour(text))


def _results(entry: SessionEntry, results: Iterable[Any]) -> list[RLEMaskListOnFrame]:
    return [mask_list(r.frame_index, entry.store(r)) for r in results]


@strawberry.type
class VideoConnection(relay.ListConnection[Video]):
    """The gallery page (same GraphQL name as before): bad paging arguments are the client's
    error (BAD_USER_INPUT), not an internal one."""

    @classmethod
    def resolve_connection(  # type: ignore[override]
        cls,
        nodes: Iterable[Video],
        *,
        info: strawberry.Info,
        before: str | None = None,
        after: str | None = None,
        first: int | None = None,
        last: int | None = None,
        max_results: int | None = None,
        **kwargs: Any,
    ) -> Any:
        try:
            return super().resolve_connection(
                nodes,
                info=info,
                before=before,
                after=after,
                first=first,
                last=last,
                max_results=max_results,
                **kwargs,
            )
        except (ValueError, TypeError) as err:  # an undecodable cursor, a negative count
            raise InvalidInputError(f"bad paging arguments: {err}") from None


@strawberry.type
class Query:
    @strawberry.field
    @guarded
    def default_video(self, info: strawberry.Info) -> Video:
        ctx = _ctx(info)
        return Video.from_record(ctx.library.default_video(), ctx.base_url)

    @relay.connection(VideoConnection)
    def videos(self, info: strawberry.Info) -> Iterable[Video]:
        ctx = _ctx(info)
        return [Video.from_record(r, ctx.base_url) for r in ctx.library.gallery()]

    @strawberry.field(description="A live session's video, objects, prompts and progress.")
    @guarded
    def session(self, info: strawberry.Info, session_id: str) -> SessionInfo:
        ctx = _ctx(info)
        entry = _session(info, session_id)
        s = entry.session
        wall_expiry = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=entry.expires_in())
        return SessionInfo(
            session_id=entry.id,
            video=Video.from_record(entry.video, ctx.base_url),
            frame_count=s.frame_count,
            fps=s.fps,
            width=s.width,
            height=s.height,
            objects=[
                ObjectInfo(object_id=o, prompted_frames=f) for o, f in s.prompted_frames().items()
            ],
            propagated_frames=entry.cached_frames(),
            is_propagating=s.is_propagating,
            expires_in_seconds=round(entry.expires_in(), 3),
            expires_at=wall_expiry.isoformat(timespec="seconds"),
        )

    @strawberry.field(description="Mattes already computed for these frames (no recompute).")
    @guarded
    def mattes(
        self,
        info: strawberry.Info,
        session_id: str,
        frame_indices: list[int],
        object_ids: list[int] | None = None,
    ) -> list[RLEMaskListOnFrame]:
        if len(frame_indices) > MAX_FRAMES_PER_QUERY:
            raise InvalidInputError(f"at most {MAX_FRAMES_PER_QUERY} frames per query")
        entry = _session(info, session_id)
        return [mask_list(f, m) for f, m in entry.cached(frame_indices, object_ids)]

    @strawberry.field(description="An export job's status, progress and download URL.")
    @guarded
    def export_job(self, info: strawberry.Info, id: str) -> ExportJobInfo:
        ctx = _ctx(info)
        return _job_info(ctx.exports.get(id, owner=ctx.principal), ctx.base_url)

    @strawberry.field(description="The formats exportMatte writes.")
    def export_formats(self) -> list[ExportFormatInfo]:
        from sam2_matting.export import EXPORT_FORMATS

        return [
            ExportFormatInfo(
                name=f.name, extension=f.extension, mime_type=f.mime_type, description=f.description
            )
            for f in EXPORT_FORMATS.values()
            if not f.directory
        ]


@strawberry.type
class Mutation:
    @strawberry.mutation
    @guarded
    def upload_video(
        self,
        info: strawberry.Info,
        file: Upload,
        start_time_sec: float | None = None,
        duration_time_sec: float | None = None,
    ) -> Video:
        ctx = _ctx(info)
        name = getattr(file, "filename", None) or "upload"
        record = ctx.library.ingest_upload(
            file, name, start_time_sec=start_time_sec, duration_time_sec=duration_time_sec
        )
        return Video.from_record(record, ctx.base_url)

    @strawberry.mutation
    @guarded
    def start_session(self, info: strawberry.Info, input: StartSessionInput) -> StartSession:
        ctx = _ctx(info)
        record = ctx.library.resolve(input.path)
        entry = ctx.store.create(record, owner=ctx.principal)
        if input.prompts is not None:
            from server.prompts import replay_prompts

            try:
                replay_prompts(entry, input.prompts, record.file, ctx.settings)
            except BaseException:
                ctx.store.close(entry.id)  # a refused file leaves no session behind
                raise
        return StartSession(session_id=entry.id)

    @strawberry.mutation
    @guarded
    def close_session(self, info: strawberry.Info, input: CloseSessionInput) -> CloseSession:
        ctx = _ctx(info)
        try:
            entry = _session(info, input.session_id)
        except NotFoundError:
            return CloseSession(success=False)  # as for an unknown id: nothing to close
        return CloseSession(success=ctx.store.close(entry.id))

    @strawberry.mutation
    @guarded
    def add_points(self, info: strawberry.Info, input: AddPointsInput) -> RLEMaskListOnFrame:
        entry = _session(info, input.session_id)
        result = entry.session.add_points(
            input.frame_index,
            input.object_id,
            input.points,
            input.labels,
            normalized=True,
            clear_old_points=input.clear_old_points,
        )
        entry.invalidate()
        return _results(entry, [result])[0]

    @strawberry.mutation(description="Prompt with a box (normalised x0, y0, x1, y1).")
    @guarded
    def add_box(self, info: strawberry.Info, input: AddBoxInput) -> RLEMaskListOnFrame:
        entry = _session(info, input.session_id)
        result = entry.session.add_box(
            input.frame_index,
            input.object_id,
            input.box,
            points=input.points,
            labels=input.labels,
            normalized=True,
        )
        entry.invalidate()
        return _results(entry, [result])[0]

    @strawberry.mutation(description="Prompt with a mask: a matte (alpha >= 128) or COCO RLE.")
    @guarded
    def add_mask(self, info: strawberry.Info, input: AddMaskInput) -> RLEMaskListOnFrame:
        entry = _session(info, input.session_id)
        s = entry.session
        if (input.alpha is None) == (input.rle_mask is None):
            raise InvalidInputError("give exactly one of alpha or rleMask")
        if input.alpha is not None:
            mask = decode_matte(
                {
                    "format": input.alpha.format,
                    "size": input.alpha.size,
                    "counts": input.alpha.counts,
                },
                expected_shape=(s.height, s.width),  # checked before anything is decoded
            )
        else:
            assert input.rle_mask is not None
            mask = decode_coco_binary(
                {"size": input.rle_mask.size, "counts": input.rle_mask.counts}
            )
            mask = np.where(mask > 0, 255, 0).astype(np.uint8)
        result = s.add_mask(input.frame_index, input.object_id, mask)
        entry.invalidate()
        return _results(entry, [result])[0]

    @strawberry.mutation
    @guarded
    def clear_points_in_frame(
        self, info: strawberry.Info, input: ClearPointsInFrameInput
    ) -> RLEMaskListOnFrame:
        entry = _session(info, input.session_id)
        result = entry.session.clear_points_in_frame(input.frame_index, input.object_id)
        entry.invalidate()
        return _results(entry, [result])[0]

    @strawberry.mutation
    @guarded
    def clear_points_in_video(
        self, info: strawberry.Info, input: ClearPointsInVideoInput
    ) -> ClearPointsInVideo:
        entry = _session(info, input.session_id)
        entry.session.clear_points_in_video()
        entry.invalidate()
        return ClearPointsInVideo(success=True)

    @strawberry.mutation
    @guarded
    def remove_object(
        self, info: strawberry.Info, input: RemoveObjectInput
    ) -> list[RLEMaskListOnFrame]:
        entry = _session(info, input.session_id)
        if input.object_id not in entry.session.object_ids:
            return []  # as the demo: an unknown id changes nothing
        results = entry.session.remove_object(input.object_id)
        entry.invalidate()
        return _results(entry, results)

    @strawberry.mutation
    @guarded
    def cancel_propagate_in_video(
        self, info: strawberry.Info, input: CancelPropagateInVideoInput
    ) -> CancelPropagateInVideo:
        entry = _session(info, input.session_id)
        entry.cancel_streams()
        return CancelPropagateInVideo(success=True)


@strawberry.type
class ExportMutation:
    @strawberry.mutation(description="Export the computed mattes as a file (a background job).")
    @guarded
    def export_matte(self, info: strawberry.Info, input: ExportMatteInput) -> ExportJobInfo:
        ctx = _ctx(info)
        entry = _session(info, input.session_id)
        job = ctx.exports.start(
            entry,
            input.format,
            input.object_ids,
            _background(ctx, input.background),
            input.premultiplied,
        )
        return _job_info(job, ctx.base_url)

    @strawberry.mutation(description="Cancel an export; its partial output is deleted.")
    @guarded
    def cancel_export(self, info: strawberry.Info, input: CancelExportInput) -> ExportJobInfo:
        ctx = _ctx(info)
        return _job_info(ctx.exports.cancel(input.job_id, owner=ctx.principal), ctx.base_url)


class MattingSchema(strawberry.Schema):
    """Strawberry's schema, logging client errors as one line instead of a traceback.

    Unexpected errors are logged in full by :class:`~server.errors.CodedErrors`.
    """

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        for error in errors:
            original = error.original_error
            if isinstance(original, GraphQLError | MattingError) or original is None:
                log.info("graphql error on %s: %s", error.path or "-", error.message)


def build_schema(settings: Settings) -> strawberry.Schema:
    """The schema with the service's limits, error codes and introspection switch."""
    # Factories, not instances: Strawberry builds fresh extensions for every request.
    extensions: list[Any] = [
        partial(QueryDepthLimiter, max_depth=settings.max_query_depth),
        partial(MaxAliasesLimiter, max_alias_count=settings.max_aliases),
        partial(MaxTokensLimiter, max_token_count=settings.max_tokens),
        CodedErrors,
    ]
    if not settings.introspection_enabled:
        extensions.append(DisableIntrospection)
    mutation = tools.merge_types("Mutation", (Mutation, ExportMutation))
    return MattingSchema(
        query=Query,
        mutation=mutation,
        extensions=extensions,
        scalar_overrides={Upload: UPLOAD_SCALAR},
    )
