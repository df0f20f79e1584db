"""GraphQL for background uploads: ``uploadVideoAsync`` answers a job at once, ``uploadJob``
polls it (see :mod:`server.upload_jobs`). The stock demo's ``uploadVideo`` is unchanged (it
transcodes in the request and answers the video)."""

from __future__ import annotations

import strawberry
from strawberry.file_uploads import Upload

from server.errors import guarded
from server.schema_context import ctx_of
from server.schema_types import Video
from server.upload_jobs import UploadJob


@strawberry.type(description="A background upload: its state, progress and, once done, video.")
class UploadJobInfo:
    id: str
    state: str = strawberry.field(description="queued, transcoding, done or failed")
    progress: float = strawberry.field(description="0..1: frames transcoded over frames due")
    video: Video | None = strawberry.field(description="the uploaded video once state is done")
    error_code: str | None = strawberry.field(description="the error table's code if failed")
    error: str | None = strawberry.field(description="what went wrong, if failed")


def job_info(job: UploadJob, base_url: str) -> UploadJobInfo:
    video = job.video
    return UploadJobInfo(
        id=job.id,
        state=job.state,
        progress=round(job.progress, 4),
        video=None if video is None else Video.from_record(video, base_url),
        error_code=job.error_code,
        error=job.error_message,
    )


@strawberry.type
class UploadMutation:
    @strawberry.mutation(description="Upload a video; it is transcoded in the background.")
    @guarded
    def upload_video_async(
        self,
        info: strawberry.Info,
        file: Upload,
        start_time_sec: float | None = None,
        duration_time_sec: float | None = None,
    ) -> UploadJobInfo:
        ctx = ctx_of(info)
        name = getattr(file, "filename", None) or "upload"
        job = ctx.uploads.submit(
            file,
            name,
            start_time_sec=start_time_sec,
            duration_time_sec=duration_time_sec,
            owner=ctx.principal,
        )
        return job_info(job, ctx.base_url)


@strawberry.type
class UploadQuery:
    @strawberry.field(description="A background upload's state (uploadVideoAsync).")
    @guarded
    def upload_job(self, info: strawberry.Info, id: str) -> UploadJobInfo:
        ctx = ctx_of(info)
        return job_info(ctx.uploads.get(id, owner=ctx.principal), ctx.base_url)
