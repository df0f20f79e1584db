"""`sam2-matting matte` end to end as a subprocess, on a clip cut from a shared video."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from sam2_matting.tiny import TinyModelFiles


def _clip(source: Path, dest: Path, frames: int = 8) -> Path:
    with av.open(str(source)) as src, av.open(str(dest), "w") as dst:
        out = dst.add_stream("libx264", rate=30)
        out.width, out.height, out.pix_fmt = 320, 180, "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            if i == frames:
                break
            for packet in out.encode(frame.reformat(320, 180, format="yuv420p")):
                dst.mux(packet)
        for packet in out.encode():
            dst.mux(packet)
    return dest


@pytest.fixture(scope="module")
def clip(bedroom_video: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _clip(bedroom_video, tmp_path_factory.mktemp("clip") / "clip.mp4")


def _matte(tiny_model: TinyModelFiles, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable, "-m", "sam2_matting", "matte", *args,
        "--config", str(tiny_model.config), "--checkpoint", str(tiny_model.checkpoint),
        "--device", "cpu", "--no-progress",
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_matte_writes_each_format(tiny_model, clip, tmp_path) -> None:
    mask = np.zeros((180, 320), np.uint8)
    mask[40:150, 180:300] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "new" / "result"  # its folder is created
    done = _matte(
        tiny_model, str(clip), "--point", "100,80", "--point", "20,20,0",
        "--object", "2", "--mask", str(tmp_path / "mask.png"),
        "--format", "png-zip,alpha,prores", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    zipped = tmp_path / "new" / "result_png-zip.zip"
    with zipfile.ZipFile(zipped) as z:
        assert len(z.namelist()) == 8
    with av.open(str(tmp_path / "new" / "result_alpha.mp4")) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 8 and (frames[0].width, frames[0].height) == (320, 180)
    assert (tmp_path / "new" / "result_prores.mov").stat().st_size > 0
    assert not list(tmp_path.glob("new/*.partial*")) and not list(tmp_path.glob("new/.*"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["MISSING.mp4", "--point", "1,1"], "not found"),
        (["CLIP", "--point", "1,x"], "comma-separated numbers"),
        (["CLIP", "--point", "5000,1"], "inside the frame"),
        (["CLIP"], "at least one --point"),
        (["CLIP", "--point", "1,1", "--format", "gif"], "gif"),
        (["CLIP", "--point", "1,1", "--foreground", "guess"], "--foreground must be one of"),
        (["CLIP", "--frame", "99", "--point", "1,1"], "out of range"),
        (["CLIP", "--mask", "NOPE.png"], "not a readable image"),
        (["CLIP", "--point", "1,1", "--out", "CLIP/x"], "cannot create the folder"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    tiny_model, clip, tmp_path, args, message
) -> None:
    args = [a.replace("CLIP", str(clip)) for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "out")]
    done = _matte(tiny_model, *args, *out)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sam2-matting: error:"), done.stderr
    assert message in lines[0]
    assert not any(p.name.startswith("out") for p in tmp_path.iterdir())


def test_foreground_source_and_estimate_differ_only_where_soft(tiny_model, clip, tmp_path) -> None:
    frames = {}
    for mode in ("source", "estimate", "temporal"):
        out = tmp_path / f"{mode}.zip"
        done = _matte(
            tiny_model, str(clip), "--point", "100,80", "--format", "png-zip",
            "--foreground", mode, "--out", str(out),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        with zipfile.ZipFile(out) as z:
            frames[mode] = [np.asarray(Image.open(z.open(n))) for n in sorted(z.namelist())]
    for mode in ("estimate", "temporal"):
        assert len(frames[mode]) == len(frames["source"])
        for source, estimate in zip(frames["source"], frames[mode], strict=True):
            alpha = source[..., 3]
            assert np.array_equal(alpha, estimate[..., 3])
            hard = (alpha == 0) | (alpha == 255)
            assert np.array_equal(source[hard], estimate[hard])
