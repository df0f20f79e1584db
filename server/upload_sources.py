"""What an upload was made from: its id and the sha256 of the bytes the client sent.

    digest, sent_sha = upload_key(src, limits, start, duration)  # id; hash of the bytes alone
    sources = SourceRecords(data_dir / "sources", data_dir / "tmp")
    sources.write(digest, sent_sha)       # sources/<digest>: one line, the sent bytes' sha256
    sources.read(digest)                  # that sha256, or None (stored before it was kept)

An upload's id (``uploads/<digest>.mp4``) hashes the bytes sent together with everything that
shapes the transcode, so a repeated upload finds its stored file. Prompts files name the sha256
of the bytes alone, so that ``matte`` can tell the original upload from the service's
transcoded copy it must be given. Used by :mod:`server.media`.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path

from server.transcode import OUTPUT_CRF, OUTPUT_MAX_SIDE, OUTPUT_PRESET, UploadLimits

__all__ = ["SourceRecords", "upload_key"]

SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class SourceRecords:
    """``sources/<digest>`` files: written atomically (through ``tmp_dir``), so every worker
    and replica on the data folder reads a whole record or none."""

    def __init__(self, folder: Path, tmp_dir: Path) -> None:
        self.folder = folder
        self.tmp_dir = tmp_dir

    def write(self, digest: str, sent_sha: str) -> None:
        tmp = self.tmp_dir / f"source-{digest}-{uuid.uuid4().hex}"
        tmp.write_text(sent_sha + "\n", encoding="ascii")
        os.replace(tmp, self.folder / digest)

    def read(self, digest: str) -> str | None:
        try:
            text = (self.folder / digest).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None  # stored before sources were kept
        return text if SHA256_HEX.fullmatch(text) else None


def upload_key(
    src: Path, limits: UploadLimits, start: float | None, duration: float | None
) -> tuple[str, str]:
    """sha256 of the uploaded bytes and of the transcode settings and trim window, and
    sha256 of the bytes alone."""
    digest = hashlib.sha256()
    sent = hashlib.sha256()
    with open(src, "rb") as f:
        for chunk in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(chunk)
            sent.update(chunk)
    recipe = (
        f"\0transcode-v1 crf={OUTPUT_CRF} preset={OUTPUT_PRESET} side={OUTPUT_MAX_SIDE}"
        f" max_side={limits.max_side} max_fps={limits.max_fps!r} max_frames={limits.max_frames}"
        f" max_duration={limits.max_duration_sec!r} start={start!r} duration={duration!r}"
    )
    digest.update(recipe.encode())
    return digest.hexdigest(), sent.hexdigest()
