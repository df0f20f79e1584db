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
- :mod:`~sam2_matting.export.pipeline`: :func:`export_video` (options, cancel, progress,
  clean-up on error) and :func:`open_writer`.
- :mod:`~sam2_matting.export.source`: source decoding (file or frame folder) and matte
  alignment, the two streams :func:`export_video` walks in step.
- :mod:`~sam2_matting.export.writers`: the writer base class, temporary-name handling, PNG.
- :mod:`~sam2_matting.export.video_writer`: ProRes, VP9, H.264 settings, audio copy.
- :mod:`~sam2_matting.export.background`: colour / image / video backgrounds.
- :mod:`~sam2_matting.export.render`: premultiply, composite, pad to even sizes.

Measured fidelity of the stored alpha, in 8-bit levels (``tests/test_export.py`` asserts
bounds on a synthetic clip; figures from there and from bedroom.mp4 with a soft matte):

- png, png-zip: exact (colour too).
- prores: within 1 (exact in every test); colour mean error < 0.1 (BT.709, 10-bit 4:4:4).
- webm (VP9 crf 32, realtime): mean 0.04-0.5, 99th percentile <= 6, but single pixels on
  moving soft edges up to ~50 off. Fine for the web; use prores or png for compositing work.
- alpha (grey H.264 crf 12, limited range): mean 0.2-0.55, 99th percentile <= 5, max ~11.
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
