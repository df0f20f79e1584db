"""Lazy video decoding vs plain PyAV: sequential and random-access frames per second.

    .venv/bin/python benchmarks/bench_video.py [--video PATH] [--random 20] [--repeat 3]

Default video: ../shared/data/videos/01_dog.mp4 (H.264 1280x720, 289 frames, 2 keyframes).
Both sides produce the same thing, an RGB uint8 array per frame (``to_ndarray("rgb24")``),
and both decode with FFmpeg's frame + slice threads:

* sequential: plain PyAV ``container.decode()`` over the whole file vs
  ``open_video(...).iter_frames()`` (open time, which indexes the packets, reported apart);
* random access: the same seeded random frame indices; plain PyAV seeks to the frame's pts
  (``backward=True``) and decodes forward to it, our source uses ``get_frame`` with its default
  cache (8 frames; random indices rarely hit it).

Each figure is the best of ``--repeat`` rounds; within a round plain PyAV and ours run one
after the other, as the machine is shared. Frames/s are wall-clock; the last column compares
process CPU time (all threads), which a busy neighbour disturbs less.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import av

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sam2_matting.video import open_video  # noqa: E402

DEFAULT_VIDEO = REPO.parent / "shared" / "data" / "videos" / "01_dog.mp4"


class Clock:
    """Wall and process CPU time (all threads, FFmpeg's included) since creation."""

    def __init__(self) -> None:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall0, time.process_time() - self.cpu0


def plain_sequential(path: Path) -> tuple[tuple[float, float], int]:
    """(wall, cpu) seconds to decode every frame to RGB with plain PyAV, and the frame count."""
    clock = Clock()
    count = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            frame.to_ndarray(format="rgb24")
            count += 1
    return clock.read(), count


def ours_sequential(path: Path) -> tuple[float, tuple[float, float]]:
    """Wall seconds to open (index the packets), and (wall, cpu) to iterate every frame."""
    clock = Clock()
    with open_video(path) as video:
        opened = clock.read()[0]
        clock = Clock()
        for _frame in video.iter_frames():
            pass
        return opened, clock.read()


def frame_pts(path: Path) -> list[int]:
    """Every frame's pts in presentation order (for the plain PyAV random-access baseline)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sorted(p.pts for p in container.demux(stream) if p.size and p.pts is not None)


def plain_random(path: Path, indices: list[int], pts: list[int]) -> tuple[float, float]:
    """(wall, cpu) seconds for plain PyAV to seek to and decode each index."""
    clock = Clock()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index in indices:
            target = pts[index]
            container.seek(target, stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.pts is not None and frame.pts >= target:
                    frame.to_ndarray(format="rgb24")
                    break
    return clock.read()


def ours_random(path: Path, indices: list[int]) -> tuple[float, float]:
    """(wall, cpu) seconds for our source (opened beforehand) to return each index."""
    with open_video(path) as video:
        clock = Clock()
        for index in indices:
            video.get_frame(index)
        return clock.read()


def main(argv: list[str] | None = None) -> int:
    """Run both benchmarks and print the figures as a small Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--random", type=int, default=20, help="random frames to read")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (best kept)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    _, count = plain_sequential(args.video)  # warm the file cache
    indices = random.Random(args.seed).choices(range(count), k=args.random)
    pts = frame_pts(args.video)
    # Plain and ours alternate within each round so a busy neighbour slows both alike.
    runs: dict[str, list[tuple[float, float]]] = {}
    open_s = []
    for _ in range(args.repeat):
        runs.setdefault("plain_seq", []).append(plain_sequential(args.video)[0])
        opened, iterated = ours_sequential(args.video)
        open_s.append(opened)
        runs.setdefault("ours_seq", []).append(iterated)
        runs.setdefault("plain_rand", []).append(plain_random(args.video, indices, pts))
        runs.setdefault("ours_rand", []).append(ours_random(args.video, indices))

    def best(key: str, which: int) -> float:
        return min(run[which] for run in runs[key])

    print(f"video: {args.video.name}, {count} frames; best of {args.repeat} rounds")
    print(f"open_video (packet index + frame 0): {min(open_s) * 1000:.0f} ms")
    print("| access | plain PyAV frames/s | ours frames/s | ours / plain (wall) | (CPU) |")
    print("|---|---|---|---|---|")
    for name, n, key in (
        ("sequential, all frames", count, "seq"),
        (f"random, {args.random} frames", args.random, "rand"),
    ):
        plain, ours = best(f"plain_{key}", 0), best(f"ours_{key}", 0)
        cpu_ratio = best(f"plain_{key}", 1) / best(f"ours_{key}", 1)
        print(
            f"| {name} | {n / plain:.1f} | {n / ours:.1f} | {plain / ours:.2f} | {cpu_ratio:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
