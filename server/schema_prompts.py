"""The GraphQL mutations that change a session's prompts: ``addPoints``, ``addBox``,
``addMask``, ``clearPointsInFrame``, ``clearPointsInVideo``, ``removeObject``.

Each one calls the session entry's verb of the same meaning (:mod:`server.session_entry`), which
applies the change, drops the mattes it made stale and encodes the fresh ones under the entry's
lock; a resolver never touches the session or the cache itself.
"""

from __future__ import annotations

import numpy as np
import strawberry

from sam2_matting.codec import decode_coco_binary, decode_matte
from sam2_matting.errors import InvalidInputError
from server.errors import guarded
from server.schema_context import session_of
from server.schema_types import (
    AddBoxInput,
    AddMaskInput,
    AddPointsInput,
    ClearPointsInFrameInput,
    ClearPointsInVideo,
    ClearPointsInVideoInput,
    RemoveObjectInput,
    RLEMaskListOnFrame,
    mask_list,
)
from server.session_entry import EncodedFrame


def _frame(frame: EncodedFrame) -> RLEMaskListOnFrame:
    return mask_list(frame.frame_index, frame.mattes)


@strawberry.type
class PromptMutation:
    @strawberry.mutation
    @guarded
    def add_points(self, info: strawberry.Info, input: AddPointsInput) -> RLEMaskListOnFrame:
        entry = session_of(info, input.session_id)
        return _frame(
            entry.add_points(
                input.frame_index,
                input.object_id,
                input.points,
                input.labels,
                normalized=True,
                clear_old_points=input.clear_old_points,
            )
        )

    @strawberry.mutation(description="Prompt with a box (normalised x0, y0, x1, y1).")
    @guarded
    def add_box(self, info: strawberry.Info, input: AddBoxInput) -> RLEMaskListOnFrame:
        entry = session_of(info, input.session_id)
        return _frame(
            entry.add_box(
                input.frame_index,
                input.object_id,
                input.box,
                points=input.points,
                labels=input.labels,
                normalized=True,
            )
        )

    @strawberry.mutation(description="Prompt with a mask: a matte (alpha >= 128) or COCO RLE.")
    @guarded
    def add_mask(self, info: strawberry.Info, input: AddMaskInput) -> RLEMaskListOnFrame:
        entry = session_of(info, input.session_id)
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
        return _frame(entry.add_mask(input.frame_index, input.object_id, mask))

    @strawberry.mutation
    @guarded
    def clear_points_in_frame(
        self, info: strawberry.Info, input: ClearPointsInFrameInput
    ) -> RLEMaskListOnFrame:
        entry = session_of(info, input.session_id)
        return _frame(entry.clear_frame(input.frame_index, input.object_id))

    @strawberry.mutation
    @guarded
    def clear_points_in_video(
        self, info: strawberry.Info, input: ClearPointsInVideoInput
    ) -> ClearPointsInVideo:
        session_of(info, input.session_id).clear_video()
        return ClearPointsInVideo(success=True)

    @strawberry.mutation
    @guarded
    def remove_object(
        self, info: strawberry.Info, input: RemoveObjectInput
    ) -> list[RLEMaskListOnFrame]:
        entry = session_of(info, input.session_id)
        return [_frame(f) for f in entry.remove_object(input.object_id)]
