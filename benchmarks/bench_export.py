"""Export writers benchmark (issue 6): frames per second of every export format at 720p and
1080p next to plain PyAV decoding of the same clip, and peak memory on a long video.

    .venv/bin/python benchmarks/bench_export.py              # full run (~4 min on 2 idle cores)
    .venv/bin/python benchmarks/bench_export.py --quick      # 20 frames, 200-frame long video

Clips are made in a temporary folder and deleted at the end: the first ``--frames`` frames of
``01_dog.mp4`` (H.264 1280x720, with its AAC audio over the same span) re-encoded as H.264
(crf 18), and the same frames scaled to 1920x1080. Mattes are
``sam2_matting.codec.synthetic.soft_matte`` (4 different ones, cycled, made before timing).

"decode" is plain PyAV: demux + decode + ``to_ndarray("rgb24")`` of every frame, which the
export also does. Each export is timed once, wall and CPU (all threads of this process);
"wall x decode" is the export's wall time over the decode's, "CPU x decode" the same for
CPU time (steadier on a shared machine). Peak memory: each export of a long
clip (``bedroom.mp4`` looped, 960x540) and of a 100-frame one runs in a fresh child process
that reports its RSS before the export and its peak RSS during it (Linux ``VmHWM``, reset just
before); equal peaks mean memory does not grow with the video's length.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sam2_matting.codec.synthetic import soft_matte  # noqa: E402
from sam2_matting.export import EXPORT_FORMATS, export_video  # noqa: E402

VIDEOS = REPO.parent / "shared" / "data" / "videos"
RSS_FORMATS = ("alpha", "webm", "png-zip")


def _open(path: Path, write: bool = False) -> Any:
    """``av.open`` typed loosely: PyAV's stubs type demuxed frames as a union of four kinds."""
    return av.open(str(path), "w") if write else av.open(str(path))


def make_clip(source: Path, out: Path, frames: int, size: tuple[int, int] | None) -> None:
    """The first ``frames`` frames of ``source`` (optionally scaled) as H.264 + its audio."""
    with _open(source) as src, _open(out, write=True) as dst:
        vin = src.streams.video[0]
        ain = src.streams.audio[0] if src.streams.audio else None
        width, height = size or (vin.width, vin.height)
        vout = dst.add_stream("libx264", rate=vin.average_rate, options={"crf": "18"})
        vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
        vout.codec_context.time_base = vin.time_base
        aout = dst.add_stream_from_template(ain) if ain is not None else None
        end: float | None = None  # seconds: audio up to the last frame kept
        count = 0
        for packet in src.demux([vin] + ([ain] if ain is not None else [])):
            if packet.stream is ain:
                if packet.dts is not None and (end is None or packet.pts * ain.time_base < end):
                    packet.stream = aout
                    dst.mux(packet)
                continue
            for frame in packet.decode():
                if count == frames:
                    continue
                image = frame.reformat(width=width, height=height, format="yuv420p")
                image.pts, image.time_base = frame.pts, frame.time_base
                dst.mux(vout.encode(image))
                count += 1
                if count == frames:
                    end = float(frame.pts * frame.time_base)
        dst.mux(vout.encode(None))


def loop_clip(source: Path, out: Path, frames: int) -> None:
    """``source`` played again and again up to ``frames`` frames, H.264 ultrafast, no audio."""
    with _open(out, write=True) as dst:
        stream = dst.add_stream("libx264", rate=30, options={"preset": "ultrafast", "crf": "23"})
        count = 0
        while count < frames:
            with _open(source) as src:
                vin = src.streams.video[0]
                if count == 0:
                    stream.width, stream.height = vin.width, vin.height
                    stream.pix_fmt = "yuv420p"
                for frame in src.decode(vin):
                    image = frame.reformat(format="yuv420p")
                    image.pts, image.time_base = count, Fraction(1, 30)
                    dst.mux(stream.encode(image))
                    count += 1
                    if count == frames:
                        break
        dst.mux(stream.encode(None))


def cycled_mattes(mattes: list[np.ndarray], frames: int) -> Iterator[tuple[int, np.ndarray]]:
    for i in range(frames):
        yield i, mattes[i % len(mattes)]


def time_decode(path: Path) -> tuple[int, float, float]:
    """(frames, wall s, CPU s) of decoding every frame to an RGB array."""
    wall, cpu = time.perf_counter(), time.process_time()
    count = 0
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            frame.to_ndarray(format="rgb24")
            count += 1
    return count, time.perf_counter() - wall, time.process_time() - cpu


def time_export(
    path: Path, out_dir: Path, fmt: str, mattes: list[np.ndarray], frames: int
) -> tuple[float, float]:
    spec = EXPORT_FORMATS[fmt]
    out = out_dir / f"out-{fmt}{spec.extension}"
    wall, cpu = time.perf_counter(), time.process_time()
    export_video(path, cycled_mattes(mattes, frames), out, fmt)
    result = time.perf_counter() - wall, time.process_time() - cpu
    _remove(out)
    return result


def _remove(path: Path) -> None:
    if path.is_dir():
        for child in path.iterdir():
            child.unlink()
        path.rmdir()
    elif path.exists():
        path.unlink()


def _status_mib(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def child_rss(source: str, fmt: str, out: str) -> None:
    """Run in a child: one export with cycled mattes; print RSS before and peak RSS during it.

    The peak-RSS mark (VmHWM) is reset after the mattes are made (``clear_refs`` 5), so it
    measures the export alone, on top of the baseline.
    """
    with _open(Path(source)) as container:
        stream = container.streams.video[0]
        height, width, frames = stream.height, stream.width, stream.frames
    mattes = [soft_matte(height, width, seed=k) for k in range(4)]
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_mib("VmRSS")
    export_video(source, cycled_mattes(mattes, frames), out, fmt)
    print(f"{before:.1f} {_status_mib('VmHWM'):.1f}")


def measure_rss(source: Path, fmt: str, out_dir: Path) -> tuple[float, float]:
    out = out_dir / f"rss-{fmt}{EXPORT_FORMATS[fmt].extension}"
    result = subprocess.run(
        [sys.executable, __file__, "--child-rss", str(source), fmt, str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    _remove(out)
    before, after = (float(v) for v in result.stdout.split())
    return before, after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=60, help="frames per speed clip")
    parser.add_argument("--long-frames", type=int, default=1000, help="frames of the long clip")
    parser.add_argument("--quick", action="store_true", help="20 frames, 200-frame long clip")
    parser.add_argument("--child-rss", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_rss:
        child_rss(*args.child_rss)
        return
    if args.quick:
        args.frames, args.long_frames = 20, 200

    print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f} av={av.__version__}")
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        folder = Path(tmp)
        clips = {
            "720p": (folder / "clip720.mp4", None),
            "1080p": (folder / "clip1080.mp4", (1920, 1080)),
        }
        for path, size in clips.values():
            make_clip(VIDEOS / "01_dog.mp4", path, args.frames, size)

        results: dict[str, dict[str, tuple[float, float, float, float]]] = {}
        for label, (path, _) in clips.items():
            frames, dec_wall, dec_cpu = time_decode(path)
            with _open(path) as container:
                stream = container.streams.video[0]
                height, width = stream.height, stream.width
            mattes = [soft_matte(height, width, seed=k) for k in range(4)]
            row = {"decode": (frames / dec_wall, 1.0, 1000 * dec_cpu / frames, 1.0)}
            for fmt in EXPORT_FORMATS:
                wall, cpu = time_export(path, folder, fmt, mattes, frames)
                row[fmt] = (frames / wall, wall / dec_wall, 1000 * cpu / frames, cpu / dec_cpu)
                print(f"  {label} {fmt}: {frames / wall:.1f} fps", flush=True)
            results[label] = row
            print(f"{label}: {frames} frames {width}x{height}, decode {frames / dec_wall:.1f} fps")

        print()
        columns = ["fps", "wall x decode", "CPU ms/frame", "CPU x decode"]
        header = [f"{label} {column}" for label in clips for column in columns]
        print("| writer | " + " | ".join(header) + " |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name in ["decode", *EXPORT_FORMATS]:
            cells = []
            for label in clips:
                fps, wall_ratio, cpu_ms, cpu_ratio = results[label][name]
                cells += [f"{fps:.1f}", f"{wall_ratio:.2f}", f"{cpu_ms:.1f}", f"{cpu_ratio:.1f}"]
            print(f"| {name} | " + " | ".join(cells) + " |")
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")

        long_clip, short_clip = folder / "long.mp4", folder / "short.mp4"
        loop_clip(VIDEOS / "bedroom.mp4", long_clip, args.long_frames)
        loop_clip(VIDEOS / "bedroom.mp4", short_clip, 100)
        print()
        print(f"Peak RSS (MiB), bedroom.mp4 looped, 960x540: 100 vs {args.long_frames} frames")
        print("| writer | RSS before export | peak, 100 frames | peak, long | long - short |")
        print("|---|---:|---:|---:|---:|")
        for fmt in RSS_FORMATS:
            base, short_peak = measure_rss(short_clip, fmt, folder)
            _, long_peak = measure_rss(long_clip, fmt, folder)
            print(
                f"| {fmt} | {base:.1f} | {short_peak:.1f} | {long_peak:.1f} "
                f"| {long_peak - short_peak:+.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
