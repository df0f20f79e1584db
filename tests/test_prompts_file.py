"""Prompts files on the tiny random model: record, save, load, replay, and `matte --prompts`.

The identities are byte for byte: a replayed session gives the recorded session's mattes, and
`matte --prompts` writes PNGs whose alpha is the in-process replay's matte.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
from PIL import Image

from sam2_matting import prompts_file as pf
from sam2_matting.cli import main
from sam2_matting.errors import InvalidInputError

W, H, FRAMES = 320, 180, 5


def _clip(source: Path, dest: Path, first: int = 0) -> Path:
    with av.open(str(source)) as src, av.open(str(dest), "w") as dst:
        out = dst.add_stream("libx264", rate=30)
        out.width, out.height, out.pix_fmt = W, H, "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            if i == first + FRAMES:
                break
            if i >= first:
                for packet in out.encode(frame.reformat(W, H, format="yuv420p")):
                    dst.mux(packet)
        for packet in out.encode():
            dst.mux(packet)
    return dest


@pytest.fixture(scope="module")
def clip(bedroom_video: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _clip(bedroom_video, tmp_path_factory.mktemp("clip") / "clip.mp4")


@pytest.fixture(scope="module")
def predictor(tiny_model: Any) -> Any:
    from sam2_matting.predictor import build_matting_predictor

    torch.manual_seed(0)
    return build_matting_predictor(tiny_model.config, tiny_model.checkpoint, device="cpu")


def _mattes(frames: Any) -> list[tuple[int, tuple[int, ...], np.ndarray]]:
    return [(r.frame_index, r.object_ids, r.alphas.copy()) for r in frames]


def _session_events(s: Any) -> Any:
    """Every verb, on two objects and several frames, with propagations between them."""
    s.add_points(0, 9, [[10, 10]], [1])
    s.clear_points_in_video()
    s.add_points(0, 1, [[100, 80]], [1])
    s.add_points(2, 2, [[0.2, 0.5], [0.7, 0.1]], [1, 0], normalized=True, clear_old_points=False)
    s.add_points(0, 4, [[300, 170]], [1])
    s.remove_object(4)
    assert len(_mattes(s.propagate(direction="forward", max_frames=3))) == 3
    s.add_box(3, 1, [10, 20, 200, 150])
    mask = np.zeros((H, W), np.uint8)
    mask[40:150, 180:300] = 255
    s.add_mask(1, 3, mask)
    s.add_points(4, 2, [[50, 50]], [1])
    s.clear_points_in_frame(3, 1)
    stopped = s.propagate(1, direction="forward")
    next(stopped), next(stopped)
    stopped.close()  # a propagation stopped after two frames
    return _mattes(s.propagate(direction="both"))


@pytest.fixture(scope="module")
def recorded(predictor: Any, tiny_model: Any, clip: Path) -> tuple[pf.PromptsDoc, Any]:
    model = pf.model_identity(tiny_model.config, tiny_model.checkpoint)
    with predictor.open(clip) as plain:
        session = pf.record(plain, model=model)
        mattes = _session_events(session)
        return session.document(), mattes


@pytest.fixture(scope="module")
def prompts(recorded: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pf.dump(recorded[0], tmp_path_factory.mktemp("prompts") / "clip.prompts.json")


@pytest.fixture(scope="module")
def replayed(predictor: Any, prompts: Path, clip: Path) -> Any:
    doc = pf.load(prompts)
    pf.check_video(doc, clip)
    with predictor.open(clip) as session:
        render = pf.replay(doc, session)
        assert render is not None
        return _mattes(render.run(session))


def test_recording_keeps_every_event_in_order(recorded: Any, clip: Path) -> None:
    doc, _ = recorded
    ops = [e["op"] for e in doc.events]
    assert ops == [
        "add_points", "clear_video", "add_points", "add_points", "add_points", "remove_object",
        "propagate", "add_box", "add_mask", "add_points", "clear_frame", "propagate", "propagate",
    ]  # fmt: skip
    assert doc.events[2]["points"] == [[100 / W, 80 / H]]
    assert doc.events[6]["frames"] == 3 and doc.events[11]["frames"] == 2
    assert doc.video == {
        "name": "clip.mp4", "sha256": pf.video_sha256(clip), "width": W, "height": H,
        "frame_count": FRAMES,
    }  # fmt: skip
    assert doc.options == {"dtype": "float32"}


def test_replay_on_a_fresh_session_gives_the_same_mattes(recorded: Any, replayed: Any) -> None:
    _, original = recorded
    assert [(f, o) for f, o, _ in replayed] == [(f, o) for f, o, _ in original]
    assert len(original) == FRAMES and original[0][1] == (1, 2, 3)
    for (_, _, a), (_, _, b) in zip(original, replayed, strict=True):
        assert a.tobytes() == b.tobytes()


def test_text_round_trip_is_exact(recorded: Any, prompts: Path) -> None:
    doc, _ = recorded
    assert pf.load(prompts).to_json() == doc.to_json()
    assert json.loads(prompts.read_text())["format"] == "sam2-matting-prompts"


def _alphas(folder: Path) -> list[np.ndarray]:
    files = sorted(folder.glob("*.png"))
    return [np.asarray(Image.open(f))[..., 3] for f in files]


def _matte_cli(tiny_model: Any, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable, "-m", "sam2_matting", "matte", *args,
        "--config", str(tiny_model.config), "--checkpoint", str(tiny_model.checkpoint),
        "--device", "cpu", "--no-progress", "--format", "png",
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_matte_prompts_writes_the_replayed_mattes(
    tiny_model: Any, clip: Path, prompts: Path, replayed: Any, tmp_path: Path
) -> None:
    again = tmp_path / "again.json"
    done = _matte_cli(
        tiny_model, str(clip), "--prompts", str(prompts), "--save-prompts", str(again),
        "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    written = _alphas(tmp_path / "out")
    assert len(written) == FRAMES
    for alpha, (_, _, alphas) in zip(written, replayed, strict=True):
        assert alpha.tobytes() == np.maximum.reduce(alphas).tobytes()
    # replaying records the same events: the saved file replays the same way again
    assert pf.load(again).events == pf.load(prompts).events


def test_prompts_saved_from_flags_repeat_the_run(
    tiny_model: Any, clip: Path, tmp_path: Path, capsys: Any
) -> None:
    saved = tmp_path / "flags.json"
    model = ["--config", str(tiny_model.config), "--checkpoint", str(tiny_model.checkpoint)]
    first = main(
        ["matte", str(clip), "--point", "100,80", "--point", "20,20,0", "--frame", "2",
         "--object", "2", "--box", "10,20,200,150", "--direction", "forward", "--max-frames", "3",
         "--save-prompts", str(saved), "--out", str(tmp_path / "first"), "--format", "png",
         "--device", "cpu", "--no-progress", *model]
    )  # fmt: skip
    assert first == 0, capsys.readouterr().err
    doc = pf.load(saved)
    assert [e["op"] for e in doc.events] == ["add_points", "add_points", "add_box", "propagate"]
    assert doc.events[-1]["direction"] == "forward" and doc.events[-1]["max_frames"] == 3
    second = main(
        ["matte", str(clip), "--prompts", str(saved), "--out", str(tmp_path / "second"),
         "--format", "png", "--device", "cpu", "--no-progress", *model]
    )  # fmt: skip
    assert second == 0, capsys.readouterr().err
    a, b = _alphas(tmp_path / "first"), _alphas(tmp_path / "second")
    assert len(a) == FRAMES and [x.tobytes() for x in a] == [x.tobytes() for x in b]


def _cli_error(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    code = main(["matte", *argv, "--device", "cpu", "--no-progress"])
    return code, capsys.readouterr().err.strip().splitlines()


def test_a_file_for_another_video_is_refused(
    bedroom_video: Path, prompts: Path, tiny_model: Any, tmp_path: Path, capsys: Any
) -> None:
    other = _clip(bedroom_video, tmp_path / "other.mp4", first=50)
    code, lines = _cli_error(
        capsys, str(other), "--prompts", str(prompts), "--out", str(tmp_path / "o"),
        "--config", str(tiny_model.config), "--checkpoint", str(tiny_model.checkpoint),
    )  # fmt: skip
    assert code == 2 and len(lines) == 1, lines
    assert "for another video (clip.mp4, 320x180, 5 frames" in lines[0]
    assert not (tmp_path / "o").exists()


def test_prompts_and_prompt_flags_are_exclusive(
    clip: Path, prompts: Path, tmp_path: Path, capsys: Any
) -> None:
    code, lines = _cli_error(capsys, str(clip), "--prompts", str(prompts), "--point", "1,1")
    assert code == 2 and len(lines) == 1 and "give one or the other" in lines[0]


def test_another_model_is_refused_unless_allowed(
    clip: Path, recorded: Any, tiny_model: Any, tmp_path: Path, capsys: Any
) -> None:
    doc = copy.deepcopy(recorded[0])
    doc.model["checkpoint_sha256"] = "0" * 64
    doc.events = [doc.events[2]]  # one click: the refusal is the point, not the replay
    other = pf.dump(doc, tmp_path / "other-model.json")
    model = ["--config", str(tiny_model.config), "--checkpoint", str(tiny_model.checkpoint)]
    args = [str(clip), "--prompts", str(other), "--format", "png", "--max-frames", "1", *model]
    code, lines = _cli_error(capsys, *args, "--out", str(tmp_path / "refused"))
    assert code == 2 and len(lines) == 1, lines
    assert "another model (checkpoint_sha256 000000000000 in the file" in lines[0]
    assert "--allow-other-model" in lines[0]
    code, lines = _cli_error(capsys, *args, "--allow-other-model", "--out", str(tmp_path / "ok"))
    assert code == 0, lines
    assert lines == [
        "sam2-matting: warning: the prompts file was made with another model: checkpoint_sha256 "
        f"000000000000 in the file, {recorded[0].model['checkpoint_sha256'][:12]} here"
    ]


def test_recording_logs_only_calls_that_succeed(
    predictor: Any, tiny_model: Any, clip: Path
) -> None:
    model = pf.model_identity(tiny_model.config, tiny_model.checkpoint)
    with predictor.open(clip) as plain:
        session = pf.record(plain, model=model)
        with pytest.raises(InvalidInputError):
            session.add_points(99, 1, [[1, 1]], [1])
        with pytest.raises(InvalidInputError):
            session.propagate()
        assert session.document().events == []


def test_a_bounded_memory_is_an_option_the_replay_opens_with(
    predictor: Any, tiny_model: Any, clip: Path
) -> None:
    model = pf.model_identity(tiny_model.config, tiny_model.checkpoint)
    with predictor.open(clip, memory_window=40) as plain:
        doc = pf.record(plain, model=model).document()
    assert doc.options == {"dtype": "float32", "memory_window": 40}
    with predictor.open(clip, **pf.open_options(doc.options)) as again:
        assert pf.session_options(again) == doc.options


def _valid(recorded: Any) -> dict[str, Any]:
    return copy.deepcopy(recorded[0].to_json())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(version=2), "version: unknown version 2 (newer than this"),
        (lambda d: d.update(version="1"), "version: expected an integer"),
        (lambda d: d.update(format="other"), "format: expected 'sam2-matting-prompts'"),
        (lambda d: d.update(extra=1), "document.extra: unknown field"),
        (lambda d: d["video"].pop("sha256"), "video.sha256: missing"),
        (lambda d: d["video"].update(width=0), "video.width: 0 is out of range"),
        (lambda d: d["video"].update(upload_sha256="AB"), "video.upload_sha256: expected a"),
        (lambda d: d["video"].update(path=""), "video.path: expected a non-empty string"),
        (lambda d: d["model"].update(checkpoint_sha256="abc"), "model.checkpoint_sha256: expected"),
        (lambda d: d["options"].update(memory_window=0), "options.memory_window: 0 is out"),
        (lambda d: d.update(events={}), "events: expected a list"),
        (lambda d: d["events"][0].update(op="nudge"), "events[0].op: expected one of add_points"),
        (lambda d: d["events"][0].update(frame=5), "events[0].frame: 5 is out of range [0, 4]"),
        (lambda d: d["events"][0].update(frame=True), "events[0].frame: expected an integer"),
        (lambda d: d["events"][0].update(points=[[1.5, 0]]), "events[0].points[0][0]: 1.5 is"),
        (lambda d: d["events"][0].update(points=[]), "events[0].points: needs at least one"),
        (lambda d: d["events"][0].update(labels=[1, 0]), "events[0].labels: 2 labels for 1"),
        (lambda d: d["events"][0].update(labels=[2]), "events[0].labels[0]: expected 1"),
        (lambda d: d["events"][0].pop("clear_old_points"), "events[0].clear_old_points: missing"),
        (lambda d: d["events"][7].update(box=[0.5, 0, 0.4, 1]), "events[7].box: needs x0 < x1"),
        (lambda d: d["events"][8]["mask"].update(size=[2, 2]), "events[8].mask: "),
        (lambda d: d["events"][6].update(direction="up"), "events[6].direction: expected one"),
        (lambda d: d["events"][6].update(frames=-1), "events[6].frames: -1 is out of range"),
    ],
)
def test_malformed_files_name_the_field(recorded: Any, change: Any, message: str) -> None:
    doc = _valid(recorded)
    change(doc)
    with pytest.raises(InvalidInputError) as err:
        pf.loads(json.dumps(doc))
    text = str(err.value)
    assert text.startswith("prompts file: ") and "\n" not in text
    assert message in text, text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not JSON (Expecting property name"),
        ("[]", "expected a JSON object"),
        ('{"format": "sam2-matting-prompts", "version": NaN}', "NaN is not a JSON number"),
    ],
)
def test_text_that_is_not_a_prompts_file(text: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InvalidInputError, match=re.escape(message)) as err:
        pf.load(path)
    assert str(err.value).startswith(f"prompts file {path}: ")


def test_a_session_of_another_size_is_refused(
    recorded: Any, predictor: Any, tmp_path: Path
) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(frames / f"{i}.png")
    with predictor.open(frames) as session, pytest.raises(InvalidInputError) as err:
        pf.replay(recorded[0], session)
    assert "for a 320x180 video of 5 frames; this one is 48x32 with 3 frames" in str(err.value)


def test_the_documented_example_loads() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "prompts-file.md").read_text()
    example = re.search(r"```json\n(.*?)```", text, re.S)
    assert example is not None
    doc = pf.loads(example.group(1))
    assert [e["op"] for e in doc.events][-1] == "propagate" and doc.video["frame_count"] == 8


def test_a_folder_of_frames_is_hashed_in_reading_order(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in (1, 2, 10):
        Image.fromarray(np.full((4, 6, 3), i, np.uint8)).save(frames / f"{i}.png")
    (frames / "notes.txt").write_text("not a frame")
    first = pf.video_sha256(frames)
    (frames / "notes.txt").write_text("still not a frame")
    assert pf.video_sha256(frames) == first  # only the frames count
    noise = np.random.default_rng(0).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    Image.fromarray(noise).save(frames / "10.png")  # another size of file, so no cache hit
    assert pf.video_sha256(frames) != first
    with pytest.raises(InvalidInputError, match="video not found"):
        pf.video_sha256(tmp_path / "missing.mp4")


def test_matte_refuses_a_bad_prompts_file_in_one_line(
    clip: Path, recorded: Any, tmp_path: Path, capsys: Any
) -> None:
    bad = _valid(recorded)
    bad["version"] = 2
    path = tmp_path / "v2.json"
    path.write_text(json.dumps(bad))
    for target in (path, tmp_path / "missing.json"):
        code, lines = _cli_error(capsys, str(clip), "--prompts", str(target))
        assert code == 2 and len(lines) == 1, lines
        assert lines[0].startswith("sam2-matting: error: ") and str(target) in lines[0]


def test_model_identity_names_a_size_by_its_config(tiny_model: Any, tmp_path: Path) -> None:
    from sam2_matting.errors import CheckpointError

    by_size = pf.model_identity("t", tiny_model.checkpoint)
    assert by_size["config"] == "sam2.1_hiera_t.yaml" and by_size["adapter"] is None
    by_config = pf.model_identity("configs/sam2.1/sam2.1_hiera_t.yaml", tiny_model.checkpoint)
    assert by_config == by_size
    with pytest.raises(CheckpointError, match="adapter folder not found"):
        pf.model_identity("t", tiny_model.checkpoint, adapter=tmp_path / "none")
