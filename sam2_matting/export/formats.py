"""The export formats: names, file extensions, MIME types and what each one holds.

    from sam2_matting.export import EXPORT_FORMATS, get_format

    fmt = get_format("prores")
    fmt.extension, fmt.mime_type          # ".mov", "video/quicktime"
    sorted(EXPORT_FORMATS)                # every name a caller may pass as ``fmt``

========== ============== ===================== ==========================================
name       extension      MIME type             content
========== ============== ===================== ==========================================
png        (a folder)     inode/directory       RGBA PNG per frame, ``00000.png`` ...
png-zip    .zip           application/zip       the same PNGs in a zip (stored, not deflated)
prores     .mov           video/quicktime       ProRes 4444 with alpha + source audio
webm       .webm          video/webm            VP9 with alpha + source audio as Opus
alpha      .mp4           video/mp4             the matte as grey H.264 + source audio
composite  .mp4           video/mp4             source over a background, H.264 + audio
foreground .mp4           video/mp4             the object's colour over black, H.264 + audio
========== ============== ===================== ==========================================

Colour with alpha (png, png-zip, prores, webm) is straight (unassociated) unless the caller
asks for ``premultiplied=True``. ``foreground`` is the "fgr" output of matting tools, paired
with ``alpha`` ("pha"): straight, it is the source colour wherever alpha > 0 and black where
alpha is 0, so ``fgr * pha + background * (1 - pha)`` composites it; premultiplied, it is
``colour * alpha`` and ``fgr + background * (1 - pha)`` composites it.

The colour of semi-transparent pixels (0 < alpha < 255) in every format but ``alpha`` is, by
default, the object's colour estimated from the frame and the matte (``foreground="estimate"``,
:mod:`~sam2_matting.export.foreground`), so no old background spills into a composite;
``foreground="source"`` keeps the source pixel. Opaque and transparent pixels are the source's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from sam2_matting.errors import InvalidInputError

__all__ = ["EXPORT_FORMATS", "ExportFormat", "get_format"]


@dataclass(frozen=True)
class ExportFormat:
    """One export format.

    ``extension`` is the suffix of the output (``""`` for a folder), ``mime_type`` the content
    type to serve it with, ``directory`` whether the output is a folder, ``has_alpha`` whether
    it stores colour with an alpha channel (and so takes ``premultiplied``), ``premultipliable``
    whether ``premultiplied=True`` means anything for it, ``audio`` whether it carries the
    source's audio, ``video_codec`` the PyAV encoder (``png`` for the PNG formats).
    """

    name: str
    extension: str
    mime_type: str
    description: str
    directory: bool
    has_alpha: bool
    premultipliable: bool
    audio: bool
    video_codec: str

    @property
    def carries_colour(self) -> bool:
        """Whether the output holds the object's colour (all but ``alpha``), and so takes
        ``foreground`` (:mod:`~sam2_matting.export.foreground`)."""
        return self.name != "alpha"


_FORMATS = (
    ExportFormat(
        "png", "", "inode/directory", "folder of RGBA PNG frames (lossless)",
        directory=True, has_alpha=True, premultipliable=True, audio=False, video_codec="png",
    ),
    ExportFormat(
        "png-zip", ".zip", "application/zip", "zip of RGBA PNG frames (lossless)",
        directory=False, has_alpha=True, premultipliable=True, audio=False, video_codec="png",
    ),
    ExportFormat(
        "prores", ".mov", "video/quicktime", "ProRes 4444 with alpha (editors)",
        directory=False, has_alpha=True, premultipliable=True, audio=True,
        video_codec="prores_ks",
    ),
    ExportFormat(
        "webm", ".webm", "video/webm", "VP9 with alpha (web)",
        directory=False, has_alpha=True, premultipliable=True, audio=True,
        video_codec="libvpx-vp9",
    ),
    ExportFormat(
        "alpha", ".mp4", "video/mp4", "the matte as a grey H.264 video",
        directory=False, has_alpha=False, premultipliable=False, audio=True,
        video_codec="libx264",
    ),
    ExportFormat(
        "composite", ".mp4", "video/mp4", "the source over a colour, image or video",
        directory=False, has_alpha=False, premultipliable=False, audio=True,
        video_codec="libx264",
    ),
    ExportFormat(
        "foreground", ".mp4", "video/mp4", "the object's colour over black (fgr)",
        directory=False, has_alpha=False, premultipliable=True, audio=True,
        video_codec="libx264",
    ),
)  # fmt: skip

EXPORT_FORMATS: Mapping[str, ExportFormat] = MappingProxyType({f.name: f for f in _FORMATS})


def get_format(fmt: str | ExportFormat) -> ExportFormat:
    """The :class:`ExportFormat` named ``fmt`` (case-insensitive); InvalidInputError if none."""
    if isinstance(fmt, ExportFormat):
        return fmt
    found = EXPORT_FORMATS.get(str(fmt).strip().lower())
    if found is None:
        names = ", ".join(EXPORT_FORMATS)
        raise InvalidInputError(f"unknown export format {fmt!r} (choose one of: {names})")
    return found
