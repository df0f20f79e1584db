"""Every command's ``--help``: fixed value sets shown, readable metavars, one set of model options.

The help text is parsed as a user reads it; what the parser declares (``choices``, value sets in
a metavar) must be visible there, and no option may show argparse's fallback, its internal
destination name in upper case (``--frame CURRENT_FRAME``).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sam2_matting.cli import build_parser, main
from sam2_matting.cli.model_options import ENV, add_model_options, predictor_kwargs
from sam2_matting.errors import CheckpointError
from sam2_matting.export.formats import EXPORT_FORMATS
from sam2_matting.registry import MODELS, resolve_checkpoint

MODEL_COMMANDS = ("matte", "evaluate", "serve")
# Options whose values are a fixed set although argparse does not check them (a list, or a
# value the library checks): option -> values the help must show.
VALUE_SETS = {
    ("matte", "--format"): list(EXPORT_FORMATS),
    ("matte", "--device"): ["auto", "cuda", "mps", "cpu"],
    ("matte", "--dtype"): ["float32", "bfloat16", "float16"],
    ("download", "model"): list(MODELS),
}


def commands() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(name, parser) of every leaf command, e.g. ("adapter import-legacy", parser)."""

    def walk(prefix: str, parser: argparse.ArgumentParser) -> Iterator[tuple[str, Any]]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            yield prefix, parser
        for sub in subs:
            for name, child in sub.choices.items():
                yield from walk(f"{prefix} {name}".strip(), child)

    yield from walk("", build_parser())


def shown_metavars(help_text: str) -> dict[str, str]:
    """Option -> the metavar the help's option list shows for it ("" for a flag)."""
    shown: dict[str, str] = {}
    for line in help_text.splitlines():
        m = re.match(r"^  (-{1,2}[\w-]+)(?:,\s-{1,2}[\w-]+)*(?: (\S+))?", line)
        if m:
            shown[m.group(1)] = m.group(2) or ""
    return shown


def test_every_command_is_checked() -> None:
    names = {name for name, _ in commands()}
    assert {"matte", "evaluate", "serve", "download", "train", "dev make-tiny-model"} <= names
    assert {"adapter import-legacy", "adapter info"} <= names


@pytest.mark.parametrize("name", [n for n, _ in commands()])
def test_help_shows_every_value_set_and_no_internal_name(name: str) -> None:
    parser = dict(commands())[name]
    text = parser.format_help()
    shown = shown_metavars(text)
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        takes_value = action.nargs != 0
        label = action.option_strings[-1] if action.option_strings else action.dest
        if action.choices is not None:
            values = "{" + ",".join(map(str, action.choices)) + "}"
            assert values in text, f"{name} {label}: its choices {values} are not in --help"
        if action.option_strings and takes_value:
            assert label in shown, f"{name} {label} is not listed in --help"
            metavar = shown[label]
            internal = action.dest.upper()
            assert action.metavar is not None or action.choices is not None, (
                f"{name} {label} shows argparse's fallback metavar {metavar}"
            )
            assert metavar != internal or label.lstrip("-").upper() == internal, (
                f"{name} {label} shows the internal name {metavar}"
            )
        if not action.option_strings:
            shown_name = str(action.metavar or action.dest)
            assert shown_name in text
            assert action.metavar is not None or "_" not in action.dest, (
                f"{name}: positional {shown_name} is an internal name"
            )
    for (command, option), wanted in VALUE_SETS.items():
        if command == name:
            for value in wanted:
                assert re.search(rf"[{{,]{re.escape(value)}[,}}]", text), (command, option, value)


def test_matte_help_lists_formats_and_readable_prompt_options() -> None:
    text = dict(commands())["matte"].format_help()
    assert "--frame N" in text and "--object ID" in text and "CURRENT_" not in text
    assert "--format {" + ",".join(EXPORT_FORMATS) + "}[,...]" in text
    assert "--direction {forward,backward,both}" in text


def _model_help(parser: argparse.ArgumentParser) -> dict[str, tuple[str, str]]:
    group = next(g for g in parser._action_groups if g.title == "model")
    return {a.option_strings[0]: (str(a.metavar), a.help or "") for a in group._group_actions}


def test_matte_evaluate_and_serve_share_the_model_options() -> None:
    parsers = dict(commands())
    matte, evaluate, serve = (_model_help(parsers[c]) for c in MODEL_COMMANDS)
    assert matte == evaluate
    assert set(serve) == set(matte) == {
        "--model", "--config", "--checkpoint", "--checkpoint-dir", "--adapter", "--device",
        "--dtype",
    }  # fmt: skip
    for option, (metavar, text) in serve.items():
        # serve adds only where the environment can set it.
        assert metavar == matte[option][0]
        assert text.startswith(matte[option][1].split(" (default")[0]), option
    defaults = {c: parsers[c].parse_args(["x"] if c == "matte" else []) for c in ("matte",)}
    assert defaults["matte"].model == "large" and defaults["matte"].device == "auto"
    assert parsers["serve"].parse_args([]).model is None  # the environment decides


def test_model_option_variables_are_the_service_settings() -> None:
    from server.config import Settings

    for dest, variable in ENV.items():
        assert Settings.env_name(dest) == variable
    settings = Settings()
    parser = argparse.ArgumentParser()
    add_model_options(parser)
    kwargs = predictor_kwargs(parser.parse_args([]))
    for name in ("model", "device", "dtype", "checkpoint", "adapter"):
        assert kwargs[name] == getattr(settings, name), name


def test_predictor_kwargs() -> None:
    parser = argparse.ArgumentParser()
    add_model_options(parser)
    args = parser.parse_args(["--config", "c.yaml", "--checkpoint", "c.pt", "--dtype", "bf16"])
    kwargs = predictor_kwargs(args)
    assert kwargs["model"] == "c.yaml" and kwargs["checkpoint"] == "c.pt"
    assert kwargs["dtype"] == "bf16" and kwargs["device"] == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args(["--config", "c.yaml", "--model", "tiny"])


def test_one_checkpoint_resolver_and_its_messages(tmp_path: Path) -> None:
    file = tmp_path / "sam2.1_hiera_tiny.pt"
    with pytest.raises(CheckpointError, match=r"`sam2-matting download tiny --dir .*`"):
        resolve_checkpoint("t", None, tmp_path)
    with pytest.raises(CheckpointError, match=r"no checkpoint given for config x\.yaml"):
        resolve_checkpoint("x.yaml", None, tmp_path)
    with pytest.raises(CheckpointError, match=r"checkpoint not found: .*nowhere\.pt"):
        resolve_checkpoint("tiny", tmp_path / "nowhere.pt")
    file.write_bytes(b"weights")
    assert resolve_checkpoint("hiera_t", None, tmp_path) == file
    assert resolve_checkpoint("x.yaml", file) == file


@pytest.mark.parametrize("command", MODEL_COMMANDS)
@pytest.mark.parametrize("case", ["size not downloaded", "config without checkpoint"])
def test_every_command_says_the_same_thing_without_a_checkpoint(
    command: str, case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = {
        "matte": ["matte", "clip.mp4", "--point", "1,1", "--out", str(tmp_path / "m")],
        "evaluate": ["evaluate", "--data", str(tmp_path), "--layout", "synthetic"],
        "serve": ["serve"],
    }[command]
    if command == "evaluate":
        argv += ["--out", str(tmp_path / "out")]
        (tmp_path / "v.mp4").symlink_to(Path(__file__).parents[1] / "gallery" / "01_astronaut.mp4")
    none = tmp_path / "none"
    if case == "size not downloaded":
        argv += ["--model", "small", "--checkpoint-dir", str(none)]
        expected = (
            f"no checkpoint for model 'small' at {none / 'sam2.1_hiera_small.pt'}; "
            f"get it with `sam2-matting download small --dir {none}`"
        )
    else:
        argv += ["--config", "my.yaml"]
        expected = "no checkpoint given for config my.yaml: pass --checkpoint PATH"
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == CheckpointError.exit_code and len(err.splitlines()) == 1, err
    assert err == f"sam2-matting: error: {expected}"
