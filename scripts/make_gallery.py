"""Render the gallery clips from freely licensed sample images that scikit-image ships.

    .venv/bin/pip install scikit-image          # a dev tool: the service never imports it
    .venv/bin/python scripts/make_gallery.py    # writes gallery/*.mp4 (--out DIR elsewhere)

Three 4-second, 24 fps, 640x360 H.264 clips, each with something to matte:
``01_astronaut.mp4`` (the astronaut photo, cut out, drifting over the Hubble deep field),
``02_horse.mp4`` (the horse silhouette, shaded, walking across the rocket launch photo) and
``03_chelsea.mp4`` (a slow zoom and pan on the photo of Chelsea the cat: real fur and whiskers).
The images' licences are in gallery/README.md. The output is deterministic for one
scikit-image, NumPy, Pillow and PyAV version.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import color, data, measure, morphology

WIDTH, HEIGHT, FPS, SECONDS = 640, 360, 24, 4.0
FRAMES = int(FPS * SECONDS)
CRF = 24

Frame = Callable[[float], Image.Image]  # progress 0..1 -> an RGB frame


def soft_rgba(rgb: np.ndarray, mask: np.ndarray, feather: float = 1.2) -> Image.Image:
    """An RGBA image whose alpha is ``mask`` with a slightly blurred (soft) edge."""
    alpha = ndimage.gaussian_filter(mask.astype(np.float32), feather)
    return Image.fromarray(np.dstack([rgb, (alpha * 255).round().astype(np.uint8)]))


def crop_to_frame(image: Image.Image, cx: float, cy: float, width: float) -> Image.Image:
    """The 16:9 window of ``image`` about ``width`` pixels wide around (cx, cy), at 640x360."""
    width = min(width, image.width, image.height * WIDTH / HEIGHT)
    height = width * HEIGHT / WIDTH
    # Keep the window inside the picture: slide the centre rather than show a border.
    cx = min(max(cx, width / 2), image.width - width / 2)
    cy = min(max(cy, height / 2), image.height - height / 2)
    box = (cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2)
    return image.resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC, box=box)


def paste(background: Image.Image, sprite: Image.Image, x: float, y: float) -> None:
    background.paste(sprite.convert("RGB"), (round(x), round(y)), sprite.getchannel("A"))


def ease(t: float) -> float:
    """Smooth start and stop, like a camera operator's pan."""
    return 0.5 - 0.5 * math.cos(math.pi * t)


# -- the clips ------------------------------------------------------------------------------


def astronaut_cutout() -> Image.Image:
    """Eileen Collins cut out from the studio backdrop: orange suit, neck ring and head."""
    rgb = data.astronaut()
    hue, sat, val = np.moveaxis(color.rgb2hsv(rgb), -1, 0)
    yy, xx = np.mgrid[: rgb.shape[0], : rgb.shape[1]]
    # The suit is orange (hue 0.03-0.05); the flag's stripes beside it are a darker crimson.
    suit = (hue > 0.012) & (hue < 0.09) & (sat > 0.45) & (val > 0.4)
    # Hair and skin are saturated, the grey backdrop around the head is not.
    head = (((xx - 228) / 85) ** 2 + ((yy - 100) / 100) ** 2 < 1) & (sat > 0.2)
    ring = ((xx - 210) / 98) ** 2 + ((yy - 218) / 72) ** 2 < 1
    mask = ndimage.binary_closing(suit | head | ring, morphology.disk(7))
    mask = ndimage.binary_fill_holes(mask)
    labels = measure.label(mask)
    mask = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1  # the largest blob
    mask = ndimage.binary_opening(mask, morphology.disk(4))
    return soft_rgba(rgb, mask)


def astronaut_clip() -> Frame:
    space = Image.fromarray(data.hubble_deep_field())
    person = astronaut_cutout()
    person = person.resize((400, 400), Image.Resampling.LANCZOS)

    def frame(t: float) -> Image.Image:
        # The camera slowly zooms into the deep field while the astronaut floats across.
        out = crop_to_frame(space, 500 + 40 * t, 436 - 30 * t, 1000 - 220 * ease(t))
        sprite = person.rotate(6 * math.sin(2 * math.pi * t), Image.Resampling.BICUBIC)
        # Her cut-off bottom edge stays below the frame: y + 400 - rotation lift > 360.
        paste(out, sprite, -80 + 360 * ease(t), 28 + 12 * math.sin(3 * math.pi * t))
        return out

    return frame


def horse_sprite(height: int) -> Image.Image:
    """The horse silhouette filled with a shaded chestnut coat and a little texture."""
    mask = ~data.horse()
    rows, cols = np.nonzero(mask)
    mask = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    width = round(mask.shape[1] * height / mask.shape[0])
    big = Image.fromarray(mask.astype(np.uint8) * 255).resize(
        (width, height), Image.Resampling.LANCZOS
    )
    soft = np.asarray(big, dtype=np.float32) / 255
    shade = np.linspace(1.15, 0.7, height, dtype=np.float32)[:, None, None]
    rng = np.random.default_rng(7)
    texture = ndimage.gaussian_filter(rng.normal(0, 1, (height, width)), 3)[..., None]
    coat = np.array([150, 86, 44], np.float32) * shade * (1 + 0.25 * texture)
    rgb = np.clip(coat, 0, 255).astype(np.uint8)
    return soft_rgba(rgb, soft > 0.5, feather=0.8)


def horse_clip() -> Frame:
    launch = Image.fromarray(data.rocket())
    horse = horse_sprite(170)

    def frame(t: float) -> Image.Image:
        # A slow pan over the launch pad; the horse, in view from the first frame (where a
        # user clicks), walks right with a gentle bob.
        out = crop_to_frame(launch, 250 + 140 * t, 250, 500)
        bob = 6 * abs(math.sin(4 * math.pi * t))
        paste(out, horse, 30 + (WIDTH - horse.width - 60) * t, 180 - bob)
        return out

    return frame


def chelsea_clip() -> Frame:
    cat = Image.fromarray(data.chelsea())

    def frame(t: float) -> Image.Image:
        # A Ken Burns move: from the whole photo towards the cat's face.
        e = ease(t)
        return crop_to_frame(cat, 225 - 25 * e, 150 - 5 * e, 450 - 130 * e)

    return frame


CLIPS: dict[str, Callable[[], Frame]] = {
    "01_astronaut.mp4": astronaut_clip,
    "02_horse.mp4": horse_clip,
    "03_chelsea.mp4": chelsea_clip,
}


# -- encoding -------------------------------------------------------------------------------


def frames(render: Frame) -> Iterator[np.ndarray]:
    for i in range(FRAMES):
        yield np.asarray(render(i / (FRAMES - 1)).convert("RGB"))


def write_mp4(path: Path, pictures: Iterator[np.ndarray]) -> None:
    """H.264 (libx264, yuv420p), constant 24 fps, index at the front for streaming."""
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.time_base = Fraction(1, FPS)
        stream.codec_context.gop_size = 2 * FPS
        stream.options = {"crf": str(CRF), "preset": "slow", "threads": "1"}
        for index, rgb in enumerate(pictures):
            picture = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            picture.pts, picture.time_base = index, Fraction(1, FPS)
            out.mux(stream.encode(picture))
        out.mux(stream.encode(None))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "gallery")
    parser.add_argument("--only", choices=sorted(CLIPS), help="render one clip")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, make in CLIPS.items():
        if args.only and name != args.only:
            continue
        path = args.out / name
        write_mp4(path, frames(make()))
        print(f"{path}: {path.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
