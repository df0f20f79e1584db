"""The page's still preview at 720p: latency of ``GET /sessions/<id>/composite/<frame>``, first
(computed) and cached, next to the browser's own composite of the same frame.

    .venv/bin/python benchmarks/bench_preview.py                # 6 frames, 720p
    .venv/bin/python benchmarks/bench_preview.py --no-browser   # without Chromium

The service is the real app in process (the tiny random model: the model is not on this path;
the route decodes the frame, estimates the foreground and encodes a PNG), driven by Flask's
test client, so the figures are the route's own time without the network. The video is a
known-truth clip (``sam2_matting.metrics.known_truth``, held-out, hair / motion / sheer kinds,
1280x720) encoded as H.264, and each frame's matte is that clip's coarse α (SAM 2's output as
it reaches a session, simulated), put into the session as propagation would.

Per frame: ``first`` the first request (decode + estimate + composite + PNG), ``cached`` the
same request again (the service's cache), ``source`` the same frame with
``foreground=source`` (composite + PNG; the frame is in the session's frame cache by then).
The stages of a first request are then timed apart on the same frames: decoding (a fresh
reader, frames in reverse order: a seek and a decode from the keyframe each),
``estimate_foreground``, ``composite_over`` + the PNG encoding.
Median over the frames, wall milliseconds. ``browser`` (with Chromium and Playwright): the
page's ``MatteRenderer.drawComposite`` (render.js itself) on a 1280x720 canvas from a decoded
matte, median of 20 calls; it is what the page draws at once, before the answer comes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sam2_matting.metrics.alpha import quantize  # noqa: E402
from sam2_matting.metrics.known_truth import truth_clips  # noqa: E402
from sam2_matting.session import FrameMattes  # noqa: E402

START = "mutation($i: StartSessionInput!) { startSession(input: $i) { sessionId } }"


def _write_video(frames: np.ndarray, path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream: Any = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))


def _ms(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1000, out


def service_figures(frames: int) -> dict[str, list[float]]:
    from sam2_matting.predictor import build_matting_predictor
    from sam2_matting.tiny import make_tiny_model
    from tests.service import build_app, close_app

    root = Path(tempfile.mkdtemp(prefix="bench-preview-"))
    try:
        tiny = make_tiny_model(root / "model")
        predictor = build_matting_predictor(tiny.config, tiny.checkpoint, device="cpu")
        clip = next(truth_clips("heldout", size=(720, 1280), frames=frames, count=1))
        _write_video(clip.frames, root / "clip.mp4")
        app = build_app(predictor, root / "app", {"clip.mp4": root / "clip.mp4"})
        try:
            http = app.test_client()
            body = http.post("/graphql", json={"query": START, "variables": {"i": {
                "path": "gallery/clip.mp4"}}}).get_json()  # fmt: skip
            sid = body["data"]["startSession"]["sessionId"]
            entry = app.extensions["sam2_matting"].store.get(sid)
            entry.add_points(0, 1, [[0.5, 0.5]], [1])  # object 1 exists
            for t in range(frames):
                alpha = quantize(clip.coarse[t])
                entry.encode_and_cache(FrameMattes(t, (1,), alpha[None]))
            soft = np.mean([(quantize(a) > 0) & (quantize(a) < 255) for a in clip.coarse])
            print(f"clip {clip.name} ({clip.kind}), {frames} frames, soft pixels {soft:.1%}")
            out: dict[str, list[float]] = {"first": [], "cached": [], "source": []}
            for t in range(frames):
                url = f"/sessions/{sid}/composite/{t}?bg=00ff00&objects=1"
                for name, query in (("first", url), ("cached", url),
                                    ("source", url + "&foreground=source")):  # fmt: skip
                    ms, r = _ms(lambda q=query: http.get(q))
                    assert r.status_code == 200, r.get_data()[:200]
                    out[name].append(ms)
            # the stages of a first request, on the same frames
            from sam2_matting.export.foreground import estimate_foreground
            from sam2_matting.video import open_video
            from server.preview import encode_png, preview_image

            for name in ("decode", "estimate", "composite+png"):
                out[name] = []

            def stages(rgb: np.ndarray, alpha: np.ndarray) -> None:
                out["estimate"].append(_ms(lambda: estimate_foreground(rgb, alpha))[0])
                image = lambda: encode_png(preview_image(rgb, alpha, (0, 255, 0), "source"))  # noqa: E731
                out["composite+png"].append(_ms(image)[0])

            with open_video(root / "clip.mp4", cache_size=1) as video:
                for t in reversed(range(frames)):  # each a seek back and a decode forward
                    ms, rgb = _ms(lambda t=t: video.get_frame(t))
                    out["decode"].append(ms)
                    stages(rgb, quantize(clip.coarse[t]))
            return out
        finally:
            close_app(app)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def browser_figure(calls: int = 20) -> float | None:
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not Path(chromium).is_file():
        return None
    code = (REPO / "server" / "static" / "render.js").read_text()
    code = "\n".join(
        line.replace("export ", "", 1)
        for line in code.splitlines()
        if not line.startswith("import ")
    )
    timing = f"""(() => {{ const w = 1280, h = 720, data = new Uint8ClampedArray(w * h);
      for (let i = 0; i < data.length; i++) data[i] = (i * 7919) % 256;
      const video = document.createElement('canvas'); video.width = w; video.height = h;
      const v = video.getContext('2d'); v.fillStyle = '#a86'; v.fillRect(0, 0, w, h);
      const canvas = document.createElement('canvas'), r = new MatteRenderer(), times = [];
      const bg = {{kind: 'colour', colour: '#00ff00'}}, matte = {{width: w, height: h, data}};
      for (let i = 0; i < {calls}; i++) {{ const t0 = performance.now();
        r.drawComposite(canvas, video, [matte], w, h, bg);
        canvas.getContext('2d').getImageData(0, 0, 1, 1);  // wait for the drawing
        times.push(performance.now() - t0); }}
      times.sort((a, b) => a - b); return times[times.length >> 1]; }})()"""
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page()
        page.set_content("<html><body></body></html>")
        page.add_script_tag(content=code)
        result = float(page.evaluate(timing))
        browser.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    figures = service_figures(args.frames)
    browser = None if args.no_browser else browser_figure()
    print("\n| path, 1280x720 | median ms | min | max |")
    print("|---|---:|---:|---:|")
    for name, label in (("first", "service, first request (estimate)"),
                        ("cached", "service, same request again (cached)"),
                        ("source", "service, foreground=source (frame decoded already)"),
                        ("decode", "stage: seek + decode the frame"),
                        ("estimate", "stage: estimate_foreground"),
                        ("composite+png", "stage: composite_over + PNG encode")):  # fmt: skip
        v = figures[name]
        print(f"| {label} | {statistics.median(v):.1f} | {min(v):.1f} | {max(v):.1f} |")
    if browser is not None:
        print(f"| browser drawComposite (source colour) | {browser:.1f} | | |")
    else:
        print("| browser drawComposite | not measured (no Chromium/Playwright) | | |")


if __name__ == "__main__":
    main()
