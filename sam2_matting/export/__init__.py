"""Exports: the source video plus its per-frame mattes, written as files editors can use.

    from sam2_matting.export import EXPORT_FORMATS, export_video, open_writer

    export_video("clip.mp4", mattes, "clip.mov", "prores")               # ProRes 4444 + alpha
    export_video("clip.mp4", mattes, "clip.webm", "webm")                # VP9 + alpha, web
    export_video("clip.mp4", mattes, "clip.mp4", "composite", background="beach.jpg")
    EXPORT_FORMATS["webm"].mime_type                                     # "video/webm"

``mattes`` is an iterable of ``(frame_index, alpha)`` with alpha a uint8 (H, W) matte (255
opaque) in increasing frame order; for several objects, merge them first (e.g. the per-pixel
maximum). Everything is encoded with PyAV (no ffmpeg binary), frame by frame, under a temporary
name renamed into place at the end. Modules:

- :mod:`~sam2_matting.export.formats`: the format table (:data:`EXPORT_FORMATS`).
- :mod:`~sam2_matting.export.pipeline`: :func:`export_video` (source decoding, matte
  alignment, cancel and progress) and :func:`open_writer`.
- :mod:`~sam2_matting.export.writers`: the writer base class, temporary-name handling, PNG.
- :mod:`~sam2_matting.export.video_writer`: ProRes, VP9, H.264 settings, audio copy.
- :mod:`~sam2_matting.export.background`: colour / image / video backgrounds.
- :mod:`~sam2_matting.export.render`: premultiply, composite, pad to even sizes.

Measured fidelity of the stored alpha (``tests/test_export.py`` asserts these bounds): PNG
exact; ProRes 4444 within 1/255 (exact in practice); VP9 (crf 32) max error 4-8, mean < 1;
grey H.264 (crf 12) mean < 0.5 with larger errors only at sharp edges.
"""

from __future__ import annotations

from sam2_matting.export.background import (
    DEFAULT_BACKGROUND,
    BackgroundSpec,
    parse_background,
    parse_colour,
)
from sam2_matting.export.formats import EXPORT_FORMATS, ExportFormat, get_format
from sam2_matting.export.pipeline import Cancellable, export_video, open_writer
from sam2_matting.export.writers import ExportWriter, frame_name

__all__ = [
    "DEFAULT_BACKGROUND",
    "EXPORT_FORMATS",
    "BackgroundSpec",
    "Cancellable",
    "ExportFormat",
    "ExportWriter",
    "export_video",
    "frame_name",
    "get_format",
    "open_writer",
    "parse_background",
    "parse_colour",
]
