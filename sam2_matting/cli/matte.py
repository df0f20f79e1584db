"""Offline matting: prompts on the command line, files an editor can use, no server.

    sam2-matting matte clip.mp4 --point 640,360 --format prores --out out/clip
    sam2-matting matte clip.mp4 --frame 10 --object 1 --point 0.5,0.4 --normalized \\
        --object 2 --box 100,80,400,600 --format webm,alpha --background "#00ff00"
    sam2-matting matte frames/ --mask first_frame_mask.png --format png-zip --out matte.zip
    sam2-matting matte clip.mp4 --point 640,360 --save-prompts clip.prompts.json
    sam2-matting matte clip.mp4 --prompts clip.prompts.json --format png-zip

Prompts belong to the latest ``--object`` (default 1) and ``--frame`` (default 0) before them.
``--point X,Y[,LABEL]`` (label 1 positive, 0 negative), ``--box X0,Y0,X1,Y1`` and ``--mask PNG``
(white = inside) are in pixels, or fractions of the frame with ``--normalized``. Several objects
are exported as one matte (their union) unless ``--export-object`` picks some. With several
formats ``--out`` is a base name and each format adds its extension. ``--foreground estimate``
(the default) writes the object's own colour, estimated from the frame and the matte, where the
matte is semi-transparent; ``temporal`` does the same with the background under the soft pixels
taken from the frames around (within 6) where they show it (a camera on a tripod); ``source``
keeps the source pixel there (old background included).
The model options are the ones of ``evaluate`` and ``serve``.

``--prompts FILE`` replays a prompts file (docs/prompts-file.md: saved by the page, the service
or ``--save-prompts``) instead of prompt flags; its last propagation is the one rendered unless
``--direction`` or ``--max-frames`` say otherwise. A file made on another video is refused; one
made with another model or options too, unless ``--allow-other-model``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sam2_matting.cli.model_options import add_model_options, predictor_kwargs, value_set
from sam2_matting.errors import InvalidInputError
from sam2_matting.limits import DIRECTIONS

DEFAULT_FORMAT = "prores"


@dataclass
class Prompt:
    kind: str  # point | box | mask
    value: str
    object_id: int
    frame: int


class _PromptAction(argparse.Action):
    """Records a prompt together with the --object and --frame in force when it was given."""

    def __call__(self, parser: Any, ns: argparse.Namespace, value: Any, opt: Any = None) -> None:
        prompts = list(getattr(ns, "prompts", None) or [])
        prompts.append(Prompt(self.dest, str(value), ns.current_object, ns.current_frame))
        ns.prompts = prompts


def register(sub: Any) -> None:
    p = sub.add_parser(
        "matte",
        help="matte a video offline and write files an editor can use",
        description=__doc__.split("\n\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from sam2_matting.export.foreground import DEFAULT_FOREGROUND, FOREGROUND_MODES
    from sam2_matting.export.formats import EXPORT_FORMATS

    p.add_argument("input", help="video file (mp4, mov, webm, mkv, ...) or a folder of frames")
    prompts = p.add_argument_group("prompts (each one is for the --object and --frame before it)")
    prompts.add_argument(
        "--frame", dest="current_frame", metavar="N", type=int, default=0, help="prompt frame"
    )
    prompts.add_argument(
        "--object", dest="current_object", metavar="ID", type=int, default=1, help="object id"
    )
    prompts.add_argument(
        "--point",
        dest="point",
        metavar="X,Y[,LABEL]",
        action=_PromptAction,
        help="a click; LABEL 1 (default) includes, 0 excludes",
    )
    prompts.add_argument(
        "--box", dest="box", metavar="X0,Y0,X1,Y1", action=_PromptAction, help="a box, corners"
    )
    prompts.add_argument(
        "--mask", dest="mask", metavar="PNG", action=_PromptAction, help="mask, white inside"
    )
    prompts.add_argument(
        "--normalized", action="store_true", help="coordinates are fractions [0,1] of the frame"
    )
    prompts.add_argument(
        "--prompts",
        dest="prompts_file",
        metavar="FILE",
        help="replay a prompts file instead of --point, --box and --mask",
    )
    prompts.add_argument(
        "--allow-other-model",
        action="store_true",
        help="replay a prompts file made with another model or options (with a warning)",
    )
    prompts.add_argument(
        "--save-prompts",
        metavar="FILE",
        help="write the prompts of this run as a prompts file, to repeat it with --prompts",
    )
    out = p.add_argument_group("output")
    out.add_argument(
        "--format",
        metavar=value_set(list(EXPORT_FORMATS)) + "[,...]",
        default=DEFAULT_FORMAT,
        help=f"one or several, comma-separated (default: {DEFAULT_FORMAT})",
    )
    out.add_argument(
        "--out",
        metavar="PATH",
        help="output path, its folder created if missing (default: next to the input)",
    )
    out.add_argument(
        "--background",
        metavar="COLOUR|IMAGE|VIDEO",
        help="background of the composite format: a colour (#00ff00), an image or a video",
    )
    out.add_argument("--premultiplied", action="store_true", help="premultiplied alpha")
    out.add_argument(
        "--foreground",
        metavar=value_set(FOREGROUND_MODES),
        default=DEFAULT_FOREGROUND,
        help="colour where 0 < alpha < 255: the estimated object colour, the same with the "
        "background seen in the frames around (temporal), or the source pixel "
        f"(default: {DEFAULT_FOREGROUND}; ignored by the alpha format)",
    )
    out.add_argument(
        "--export-object",
        metavar="ID",
        type=int,
        action="append",
        help="an object to export (repeat for several, exported as their union; default: all)",
    )
    track = p.add_argument_group("propagation")
    track.add_argument(
        "--direction",
        choices=DIRECTIONS,
        help="from the first prompted frame (the last one for backward; default: both, or the "
        "prompts file's)",
    )
    track.add_argument(
        "--max-frames", metavar="N", type=int, help="frames to propagate in each direction"
    )
    add_model_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run, prompts=[])


def run(args: argparse.Namespace) -> int:
    formats, outputs = check_args(args)
    if args.save_prompts:
        _make_parent(Path(args.save_prompts), "--save-prompts")
    doc, identity = _prompts_file(args, Path(args.input))
    for out in render(args, _predictor(args), formats, outputs, doc, identity):
        print(f"wrote {out}")
    return 0


def check_args(args: argparse.Namespace) -> tuple[list[Any], list[Path]]:
    """The formats and output paths of ``args`` (their folders created), or a one-line error.

    ``args.foreground`` is parsed in place."""
    from sam2_matting.export import get_format
    from sam2_matting.export.foreground import parse_foreground

    formats = [get_format(f.strip()) for f in str(args.format).split(",") if f.strip()]
    if not formats:
        raise InvalidInputError("--format needs at least one format")
    try:
        args.foreground = parse_foreground(args.foreground)
    except InvalidInputError as err:
        raise InvalidInputError(f"--{err}") from None
    if args.prompts_file and args.prompts:
        raise InvalidInputError(
            "--prompts replaces --point, --box and --mask: give one or the other"
        )
    if not args.prompts and not args.prompts_file:
        raise InvalidInputError("give at least one --point, --box or --mask, or --prompts FILE")
    outputs = output_paths(Path(args.input), args.out, formats)
    for out in outputs:  # before the model runs: `--out out/clip` works on a fresh clone
        _make_parent(out)
    return formats, outputs


def render(
    args: argparse.Namespace,
    predictor: Any,
    formats: list[Any],
    outputs: list[Path],
    doc: Any = None,
    identity: Any = None,
) -> list[Path]:
    """Prompt (flags or the prompts file ``doc``), propagate and write every format with a
    loaded ``predictor``; returns the paths written. ``sam2-matting batch`` renders each clip
    with this, the model loaded once."""
    source = Path(args.input)
    with predictor.open(source, **_open_options(doc)) as plain:
        session, replayed = _prompt(plain, doc, identity, args)
        wanted = args.export_object or list(session.object_ids)
        missing = set(wanted) - set(session.object_ids)
        if missing:
            raise InvalidInputError(f"--export-object {sorted(missing)} has no prompt")
        mattes = _propagate(session, args, wanted, replayed)
        if args.save_prompts:
            from sam2_matting.prompts_file import dump

            print(f"wrote {dump(session.document(), args.save_prompts)}")
    for fmt, out in zip(formats, outputs, strict=True):
        _write(source, mattes, fmt, out, args)
    return outputs


def _prompts_file(args: argparse.Namespace, source: Path) -> tuple[Any, Any]:
    """The prompts file (checked against the video and the model) and the model's identity."""
    if not (args.prompts_file or args.save_prompts):
        return None, None
    from sam2_matting.prompts_file import check_model, check_video, load, model_identity

    doc = load(args.prompts_file) if args.prompts_file else None
    if doc is not None:
        check_video(doc, source)
    kwargs = predictor_kwargs(args)
    identity = model_identity(
        kwargs["model"], kwargs["checkpoint"], kwargs["adapter"], kwargs["checkpoint_dir"]
    )
    if doc is not None:
        for line in check_model(doc, identity, allow_other=args.allow_other_model):
            print(f"sam2-matting: warning: {line}", file=sys.stderr)
    return doc, identity


def _open_options(doc: Any) -> dict[str, Any]:
    if doc is None:
        return {}
    from sam2_matting.prompts_file import open_options

    return open_options(doc.options)


def _prompt(plain: Any, doc: Any, identity: Any, args: Any) -> tuple[Any, Any]:
    """Apply the prompts (flags or file) to the session; returns it and the file's render."""
    from sam2_matting import prompts_file as pf

    session = pf.record(plain, model=identity) if args.save_prompts else plain
    if doc is None:
        for prompt in args.prompts:
            _apply(session, prompt, args.normalized)
        return session, None
    options = pf.session_options(plain)  # the model was compared before it loaded
    for line in pf.check_model(doc, options=options, allow_other=args.allow_other_model):
        print(f"sam2-matting: warning: {line}", file=sys.stderr)
    return session, pf.replay(doc, session)


def _predictor(args: argparse.Namespace) -> Any:
    from sam2_matting.predictor import build_matting_predictor

    return build_matting_predictor(**predictor_kwargs(args))


def _numbers(text: str, count: tuple[int, ...], what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise InvalidInputError(f"{what} {text!r}: expected comma-separated numbers") from None
    if len(values) not in count:
        raise InvalidInputError(f"{what} {text!r}: expected {' or '.join(map(str, count))} numbers")
    return values


def _apply(session: Any, prompt: Prompt, normalized: bool) -> None:
    if prompt.kind == "point":
        v = _numbers(prompt.value, (2, 3), "--point")
        label = int(v[2]) if len(v) == 3 else 1
        session.add_points(
            prompt.frame,
            prompt.object_id,
            [v[:2]],
            [label],
            normalized=normalized,
            clear_old_points=False,
        )
    elif prompt.kind == "box":
        box = _numbers(prompt.value, (4,), "--box")
        session.add_box(prompt.frame, prompt.object_id, box, normalized=normalized)
    else:
        session.add_mask(prompt.frame, prompt.object_id, _read_mask(prompt.value, session))


def _read_mask(path: str, session: Any) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            mask = np.asarray(image.convert("L"))
    except (OSError, UnidentifiedImageError) as err:
        raise InvalidInputError(f"--mask {path}: not a readable image ({err})") from None
    if mask.shape != (session.height, session.width):
        raise InvalidInputError(
            f"--mask {path} is {mask.shape[1]}x{mask.shape[0]}, "
            f"the video is {session.width}x{session.height}"
        )
    return mask


def _propagate(
    session: Any, args: argparse.Namespace, wanted: list[int], render: Any = None
) -> dict[int, dict]:
    """Propagate and keep each frame's union matte, encoded (memory stays small).

    ``render``: a prompts file's last propagation, whose settings apply where no flag is given.
    """
    from tqdm import tqdm

    from sam2_matting.codec import encode_matte

    mattes: dict[int, dict] = {}
    started = time.perf_counter()
    start, direction, max_frames = None, args.direction or "both", args.max_frames
    if render is not None and args.direction is None and args.max_frames is None:
        start, direction, max_frames = render.start_frame, render.direction, render.max_frames
    frames = session.propagate(start, direction=direction, max_frames=max_frames)
    with tqdm(
        total=session.frame_count if max_frames is None else None,
        unit="frame",
        desc="matting",
        disable=args.no_progress,
    ) as bar:
        for result in frames:
            picked = [result.alpha(o) for o in wanted if o in result.object_ids]
            union = np.maximum.reduce(picked) if picked else np.zeros_like(result.alphas[0])
            mattes[result.frame_index] = encode_matte(union)
            bar.update(1)
    if not args.no_progress:
        elapsed = time.perf_counter() - started
        print(f"matted {len(mattes)} frames in {elapsed:.1f} s ({len(mattes) / elapsed:.2f} fps)")
    return mattes


def _write(source: Path, mattes: dict[int, dict], fmt: Any, out: Path, args: Any) -> None:
    from tqdm import tqdm

    from sam2_matting.codec import decode_matte
    from sam2_matting.export import export_video

    def ordered() -> Any:
        for frame in sorted(mattes):
            yield frame, decode_matte(mattes[frame])

    with tqdm(unit="frame", desc=f"writing {fmt.name}", disable=args.no_progress) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        export_video(
            source,
            ordered(),
            out,
            fmt,
            background=args.background if fmt.name == "composite" else None,
            premultiplied=args.premultiplied,
            progress=progress,
            foreground=args.foreground,
        )


def _make_parent(out: Path, option: str = "--out") -> None:
    """Create the folder ``out`` goes into, or say in one line why it cannot be."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InvalidInputError(
            f"{option} {out}: cannot create the folder {out.parent} ({err.strerror})"
        ) from None


def output_paths(source: Path, out: str | None, formats: list[Any]) -> list[Path]:
    base = Path(out) if out else source.with_name(source.stem + "_matte")
    if len(formats) == 1:
        fmt = formats[0]
        if fmt.extension and base.suffix.lower() == fmt.extension:
            return [base]
        return [base.with_name(base.name + fmt.extension)]
    paths = [base.with_name(f"{base.name}_{f.name}{f.extension}") for f in formats]
    if len(set(paths)) != len(paths):
        raise InvalidInputError("--format lists a format twice")
    return paths
