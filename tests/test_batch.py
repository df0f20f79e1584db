"""`sam2-matting batch` with the local runner, on the tiny random model and 3-frame clips.

The mattes are those of `matte --prompts` byte for byte (PNG alpha); a rerun skips complete
clips and renders partial ones again; a failing clip is reported and the others are rendered.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from sam2_matting.batch.manifest import Defaults, parse_lines
from sam2_matting.cli import main
from sam2_matting.errors import InvalidInputError

W, H, FRAMES = 96, 64, 3


def _clip(dest: Path, shift: int) -> Path:
    """A disc moving over a gradient; ``shift`` makes each clip's content its own."""
    yy, xx = np.mgrid[0:H, 0:W]
    with av.open(str(dest), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i in range(FRAMES):
            img = np.zeros((H, W, 3), np.uint8)
            img[..., 2] = (xx * 2 + shift).astype(np.uint8)
            img[(xx - 20 - shift - 5 * i) ** 2 + (yy - 30) ** 2 <= 100] = (230, 40, 40)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode(None))
    return dest


def model_args(tiny_model: Any) -> list[str]:
    return [
        "--config", str(tiny_model.config), "--checkpoint", str(tiny_model.checkpoint),
        "--device", "cpu", "--no-progress",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def shots(predictor: Any, tiny_model: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with clips a.mp4, b.mp4 and their prompts files (a click on each)."""
    from sam2_matting import prompts_file as pf

    folder = tmp_path_factory.mktemp("shots")
    model = pf.model_identity(tiny_model.config, tiny_model.checkpoint)
    for name, shift, point in (("a", 0, [22, 30]), ("b", 12, [35, 30])):
        clip = _clip(folder / f"{name}.mp4", shift)
        with predictor.open(clip) as plain:
            session = pf.record(plain, model=model)
            session.add_points(0, 1, [point], [1])
            pf.dump(session.document(), folder / f"{name}.prompts.json")
    return folder


def write_manifest(folder: Path, lines: list[dict[str, Any]]) -> Path:
    path = folder / "shots.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def batch(tiny_model: Any, manifest: Path, *extra: str) -> int:
    return main(["batch", str(manifest), *extra, *model_args(tiny_model)])


def alphas(folder: Path) -> list[np.ndarray]:
    files = sorted(folder.glob("*.png"))
    assert len(files) == FRAMES
    return [np.asarray(Image.open(f))[..., 3] for f in files]


def _line(**fields: Any) -> str:
    return json.dumps({"input": "a.mp4", "prompts": "a.json", "output": "out/a", **fields})


# -- the manifest ----------------------------------------------------------------------------
def test_manifest_lines_defaults_and_overrides(tmp_path: Path) -> None:
    text = "\n".join([
        "# comment, then a blank line", "", _line(),
        _line(output="out/b", formats="png, alpha", foreground="source", name="shot b",
              export_objects=[2], direction="forward", max_frames=2, premultiplied=True),
    ])  # fmt: skip
    a, b = parse_lines(text, "m.jsonl", tmp_path, Defaults(formats=("webm",)))
    assert (a.line, a.name, a.formats, a.foreground) == (3, "a.mp4", ("webm",), "estimate")
    assert a.input == tmp_path / "a.mp4" and a.output == tmp_path / "out" / "a"
    assert (b.line, b.name, b.formats, b.foreground) == (4, "shot b", ("png", "alpha"), "source")
    assert (b.export_objects, b.direction, b.max_frames, b.premultiplied) == (
        (2,), "forward", 2, True,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "m.jsonl line 2: not JSON"),
        ("[1, 2]", "line 2: expected a JSON object"),
        ('{"input": "a.mp4", "output": "x"}', "line 2: missing 'prompts'"),
        (_line(fromat="png"), "line 2: unknown field 'fromat'"),
        (_line(formats=["gif"]), "line 2: unknown export format 'gif'"),
        (_line(formats="png,png"), "lists a format twice"),
        (_line(foreground="guess"), "line 2: foreground must be one of"),
        (_line(direction="sideways"), '"direction" must be one of'),
        (_line(max_frames=0), '"max_frames" must be a positive integer'),
        (_line(input=""), '"input" must be a non-empty string'),
        (_line(premultiplied="yes"), '"premultiplied" must be true or false'),
        (_line(output="out/b/../a"), 'line 2: "output" out/b/../a is also line 1\'s'),
    ],
)
def test_a_bad_line_is_named(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_lines(_line() + "\n" + line, "m.jsonl", tmp_path, Defaults())
    assert message in str(caught.value).replace(str(tmp_path) + os.sep, "")
    assert "\n" not in str(caught.value)


def test_every_bad_line_is_counted_and_an_empty_manifest_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"line 1: not JSON .*\(and 1 more bad lines\)"):
        parse_lines("{\n" + _line() + "\n[]", "m", tmp_path, Defaults())
    with pytest.raises(InvalidInputError, match="m: no clips"):
        parse_lines("# nothing\n\n", "m", tmp_path, Defaults())


def test_cli_refuses_a_bad_manifest_in_one_line_and_renders_nothing(
    tiny_model: Any, shots: Path, tmp_path: Path, capsys: Any
) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(_line(input=str(shots / "a.mp4"), output=str(tmp_path / "out")) + "\n{}\n")
    assert batch(tiny_model, manifest) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"sam2-matting: error: {manifest} line 2: missing 'input', 'prompts', 'output'"]
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("out*"))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--workers", "2"], "--workers and --cpus-per-worker need --ray"),
        (["--ray", "local", "--workers", "0"], "--workers must be a positive number"),
        (["--format", "gif"], "--format: unknown export format 'gif'"),
        (["--foreground", "guess"], "--foreground must be one of"),
        (["--report", "MANIFEST/r.json"], "cannot create"),
    ],
)
def test_bad_options_are_one_line(
    tiny_model: Any, tmp_path: Path, capsys: Any, extra: list[str], message: str
) -> None:
    manifest = write_manifest(tmp_path, [{"input": "a", "prompts": "b", "output": "c"}])
    extra = [e.replace("MANIFEST", str(manifest)) for e in extra]
    assert batch(tiny_model, manifest, *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_ray_without_ray_is_one_line(
    tiny_model: Any, shots: Path, tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    manifest = write_manifest(tmp_path, [{"input": "a", "prompts": "b", "output": "c"}])
    assert batch(tiny_model, manifest, "--ray", "auto") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ray needs Ray, which is not installed" in err[0]


# -- rendering -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def first_run(tiny_model: Any, shots: Path) -> tuple[int, str, Path]:
    """Clips a and b, then two that fail: b's prompts on a, and a missing input."""
    out = shots / "out"
    manifest = write_manifest(shots, [
        {"input": "a.mp4", "prompts": "a.prompts.json", "output": "out/a", "formats": "png,alpha"},
        {"input": "b.mp4", "prompts": "b.prompts.json", "output": "out/b", "formats": ["png"]},
        {"input": "a.mp4", "prompts": "b.prompts.json", "output": "out/wrong", "formats": "png"},
        {"input": "gone.mp4", "prompts": "a.prompts.json", "output": "out/gone"},
    ])  # fmt: skip
    report = shots / "report.json"
    import contextlib
    import io

    import sam2_matting.predictor

    loads = []
    real = sam2_matting.predictor.build_matting_predictor

    def counted(*args: Any, **kwargs: Any) -> Any:
        loads.append(kwargs)
        return real(*args, **kwargs)

    said = io.StringIO()
    with contextlib.redirect_stdout(said), pytest.MonkeyPatch.context() as patch:
        patch.setattr(sam2_matting.predictor, "build_matting_predictor", counted)
        code = batch(tiny_model, manifest, "--report", str(report))
    assert len(loads) == 1  # the model is loaded once for the four clips
    return code, said.getvalue(), out


def test_a_failing_clip_is_reported_and_the_others_are_rendered(first_run: Any) -> None:
    code, said, out = first_run
    assert code == 1
    lines = said.splitlines()
    progress = [line for line in lines if line.startswith("[")]
    assert [p.split(":")[0] for p in progress] == [
        "[1/4] a.mp4", "[2/4] b.mp4", "[3/4] a.mp4", "[4/4] gone.mp4",
    ]  # fmt: skip
    assert "FAILED: the prompts file is for another video" in progress[2]
    assert "FAILED: " in progress[3] and "gone.mp4" in progress[3], progress[3]
    assert progress[3].endswith("(2 done, 2 failed)")
    table = lines[lines.index(next(x for x in lines if x.startswith("line  clip"))) :]
    assert [row.split()[2] for row in table[1:5]] == ["ok", "ok", "failed", "failed"]
    assert table[1].split()[3] == str(FRAMES)
    assert table[-1].startswith("4 clips: 2 rendered, 0 skipped (complete), 2 failed")
    assert sorted(p.name for p in out.iterdir()) == [
        "a.batch.json", "a_alpha.mp4", "a_png", "b", "b.batch.json",
    ]  # fmt: skip
    report = json.loads((out.parent / "report.json").read_text())
    assert report["counts"] == {"ok": 2, "skipped": 0, "failed": 2}
    assert report["exit_code"] == 1 and report["clips"][2]["reason"].startswith("the prompts")


def test_batch_mattes_are_those_of_matte_prompts(
    tiny_model: Any, shots: Path, first_run: Any, tmp_path: Path
) -> None:
    _, _, out = first_run
    for name, written in (("a", out / "a_png"),):
        args = ["matte", str(shots / f"{name}.mp4"), "--prompts", str(shots / f"{name}.prompts.json"),
                "--format", "png", "--out", str(tmp_path / name), *model_args(tiny_model)]  # fmt: skip
        assert main(args) == 0
        for mine, theirs in zip(alphas(written), alphas(tmp_path / name), strict=True):
            assert mine.tobytes() == theirs.tobytes()
        assert np.ptp(alphas(written)[0]) > 0  # a matte, not an empty frame


def _state(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


def test_a_rerun_skips_complete_clips_and_redoes_partial_ones(
    tiny_model: Any, shots: Path, first_run: Any, capsys: Any
) -> None:
    _, _, out = first_run
    manifest = write_manifest(shots, [
        {"input": "a.mp4", "prompts": "a.prompts.json", "output": "out/a", "formats": "png,alpha"},
        {"input": "b.mp4", "prompts": "b.prompts.json", "output": "out/b", "formats": ["png"]},
    ])  # fmt: skip
    before = _state(out)
    capsys.readouterr()
    assert batch(tiny_model, manifest) == 0
    said = capsys.readouterr().out
    assert "[1/2] a.mp4: skipped, complete" in said and "[2/2] b.mp4: skipped" in said
    assert _state(out) == before  # nothing written
    # a partial output: a's alpha video cut short, and a killed run's temporary file
    (out / "a_alpha.mp4").write_bytes((out / "a_alpha.mp4").read_bytes()[:100])
    (out / ".a_alpha.mp4.0badc0de.partial").write_bytes(b"half")
    (out / "b.batch.json").unlink()  # b: killed before its record was written
    assert batch(tiny_model, manifest) == 0
    said = capsys.readouterr().out
    assert "[1/2] a.mp4: ok" in said and "[2/2] b.mp4: ok" in said
    assert (out / "a_alpha.mp4").stat().st_size > 1000
    assert not list(out.glob(".*"))
    record = json.loads((out / "a.batch.json").read_text())
    assert [o["name"] for o in record["outputs"]] == ["a_png", "a_alpha.mp4"]
    assert record["outputs"][1]["bytes"] == (out / "a_alpha.mp4").stat().st_size


def test_completeness_follows_options_model_and_content(
    tiny_model: Any, shots: Path, first_run: Any
) -> None:
    from sam2_matting import prompts_file as pf
    from sam2_matting.batch.clip import is_complete, job_key, plan

    model = pf.model_identity(tiny_model.config, tiny_model.checkpoint)
    line = {"input": "a.mp4", "prompts": "a.prompts.json", "output": "out/a"}
    (job,) = parse_lines(json.dumps({**line, "formats": "png,alpha"}), "m", shots, Defaults())
    key = job_key(job, model)
    assert is_complete(job, key) and is_complete(job, key, verify=True)
    changed = [
        parse_lines(json.dumps({**line, **extra}), "m", shots, Defaults())[0]
        for extra in ({"formats": "png,alpha", "foreground": "source"}, {"formats": "png"})
    ]
    todo, skipped = plan([job, *changed], model)
    assert [r.line for r in skipped] == [1] and len(todo) == 2
    assert not is_complete(job, job_key(job, {**model, "checkpoint_sha256": "0" * 64}))
    video = shots / "out" / "a_alpha.mp4"
    data = bytearray(video.read_bytes())
    data[-1] ^= 0xFF  # same size, other content: only --verify sees it
    video.write_bytes(bytes(data))
    assert is_complete(job, key) and not is_complete(job, key, verify=True)


def test_a_clip_that_fails_midway_leaves_none_of_its_outputs(
    tiny_model: Any, shots: Path, tmp_path: Path, capsys: Any
) -> None:
    manifest = write_manifest(tmp_path, [{
        "input": str(shots / "a.mp4"), "prompts": str(shots / "a.prompts.json"),
        "output": "out/a", "formats": ["png", "composite"], "background": "missing.png",
    }])  # fmt: skip
    assert batch(tiny_model, manifest) == 1
    said = capsys.readouterr().out
    assert "[1/1] a.mp4: FAILED: " in said and "missing.png" in said
    assert list((tmp_path / "out").iterdir()) == []  # the png sequence written first is gone
