"""The GraphQL schema: a compatible superset of the SAM 2 demo backend's, with mattes added.

Every operation of the demo keeps its name, arguments and result shape (``rleMask`` stays a
binary COCO RLE so the stock frontend works); each mask result gains ``alpha``, the 0-255 matte.
Added: ``addMask``, ``addBox``, ``session(sessionId)``, ``mattes`` (fetch computed mattes again),
``sessionPrompts`` (the session's prompts file).
The prompt mutations are in :mod:`server.schema_prompts`, the types in :mod:`server.schema_types`,
what resolvers get as context in :mod:`server.schema_context`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from functools import partial
from typing import Any

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

from sam2_matting.errors import InvalidInputError, MattingError, NotFoundError
from server.config import Settings
from server.errors import CodedErrors, guarded
from server.schema_context import AppContext, ctx_of, session_of
from server.schema_prompts import PromptMutation
from server.schema_types import (
    UPLOAD_SCALAR,
    CancelExportInput,
    CancelPropagateInVideo,
    CancelPropagateInVideoInput,
    CloseSession,
    CloseSessionInput,
    ExportFormatInfo,
    ExportJobInfo,
    ExportMatteInput,
    ObjectInfo,
    RLEMaskListOnFrame,
    SessionInfo,
    StartSession,
    StartSessionInput,
    Video,
    mask_list,
)

MAX_FRAMES_PER_QUERY = 1000
log = logging.getLogger(__name__)


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
        return BackgroundSpec("video", path=ctx.library.resolve(text, ctx.principal).file)
    return BackgroundSpec("colour", colour=parse_colour(text))


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
        ctx = ctx_of(info)
        return Video.from_record(ctx.library.default_video(), ctx.base_url)

    @relay.connection(VideoConnection)
    def videos(self, info: strawberry.Info) -> Iterable[Video]:
        ctx = ctx_of(info)
        return [Video.from_record(r, ctx.base_url) for r in ctx.library.gallery()]

    @strawberry.field(description="A live session's video, objects, prompts and progress.")
    @guarded
    def session(self, info: strawberry.Info, session_id: str) -> SessionInfo:
        ctx = ctx_of(info)
        entry = session_of(info, session_id)
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

    @strawberry.field(
        description="A live session's prompts file (JSON text, docs/prompts-file.md): every "
        "prompt and propagation so far, to replay with startSession or `sam2-matting matte`."
    )
    @guarded
    def session_prompts(self, info: strawberry.Info, session_id: str) -> str:
        from server.prompts import prompts_text

        return prompts_text(session_of(info, session_id))

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
        entry = session_of(info, session_id)
        return [mask_list(f, m) for f, m in entry.cached(frame_indices, object_ids)]

    @strawberry.field(description="An export job's status, progress and download URL.")
    @guarded
    def export_job(self, info: strawberry.Info, id: str) -> ExportJobInfo:
        ctx = ctx_of(info)
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
        ctx = ctx_of(info)
        name = getattr(file, "filename", None) or "upload"
        record = ctx.library.ingest_upload(
            file,
            name,
            start_time_sec=start_time_sec,
            duration_time_sec=duration_time_sec,
            owner=ctx.principal,
        )
        return Video.from_record(record, ctx.base_url)

    @strawberry.mutation
    @guarded
    def start_session(self, info: strawberry.Info, input: StartSessionInput) -> StartSession:
        ctx = ctx_of(info)
        record = ctx.library.resolve(input.path, ctx.principal)
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
        ctx = ctx_of(info)
        try:
            entry = session_of(info, input.session_id)
        except NotFoundError:
            return CloseSession(success=False)  # as for an unknown id: nothing to close
        return CloseSession(success=ctx.store.close(entry.id))

    @strawberry.mutation
    @guarded
    def cancel_propagate_in_video(
        self, info: strawberry.Info, input: CancelPropagateInVideoInput
    ) -> CancelPropagateInVideo:
        entry = session_of(info, input.session_id)
        entry.cancel_streams()
        return CancelPropagateInVideo(success=True)


@strawberry.type
class ExportMutation:
    @strawberry.mutation(description="Export the computed mattes as a file (a background job).")
    @guarded
    def export_matte(self, info: strawberry.Info, input: ExportMatteInput) -> ExportJobInfo:
        ctx = ctx_of(info)
        entry = session_of(info, input.session_id)
        job = ctx.exports.start(
            entry,
            input.format,
            input.object_ids,
            _background(ctx, input.background),
            input.premultiplied,
            foreground=input.foreground,
        )
        return _job_info(job, ctx.base_url)

    @strawberry.mutation(description="Cancel an export; its partial output is deleted.")
    @guarded
    def cancel_export(self, info: strawberry.Info, input: CancelExportInput) -> ExportJobInfo:
        ctx = ctx_of(info)
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
    from server.schema_uploads import UploadMutation, UploadQuery

    mutation = tools.merge_types(
        "Mutation", (Mutation, PromptMutation, ExportMutation, UploadMutation)
    )
    return MattingSchema(
        query=tools.merge_types("Query", (Query, UploadQuery)),
        mutation=mutation,
        extensions=extensions,
        scalar_overrides={Upload: UPLOAD_SCALAR},
    )
