"""The page's still preview in headless Chromium, against the real service: a frame shown still
in the composite view is the service's composite (the exports' colours), drawn in place of the
browser's; while playing, and with "Preview colour: Source", the browser composites.

The page, the service and Chromium are those of ``tests/test_page.py`` (its fixtures)."""

from __future__ import annotations

import base64
import io

import numpy as np
import requests
from PIL import Image

from tests.test_page import CLIP_H, CLIP_W, Page, Service, browser, page, service

__all__ = ["browser", "page", "service"]  # the fixtures, used by name

PIXELS = "document.getElementById('view-canvas').toDataURL('image/png')"  # lossless
STATE = "document.getElementById('view-canvas').dataset"


def _canvas(p: Page) -> np.ndarray:
    data = base64.b64decode(str(p.js(PIXELS)).split(",", 1)[1])
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert rgb.shape == (CLIP_H, CLIP_W, 3)
    return rgb


def test_still_frame_in_composite_view_shows_the_estimated_composite(
    page: Page, service: Service
) -> None:
    p = page
    sid = p.open_video("gallery/clip.mp4")
    p.click_stage(0.5, 0.55)
    p.settled()
    p.page.click("label[for=bg-colour]")
    p.page.locator("#bg-colour-input").evaluate(
        "el => { el.value = '#10c828'; el.dispatchEvent(new Event('input')); }"
    )
    assert p.js("document.getElementById('preview-colour-estimate').checked")  # the default
    p.page.keyboard.press("v")
    p.wait(f"{STATE}.preview === 'estimated' && {STATE}.previewFrame === '0'")
    shown = _canvas(p)
    objects = ",".join(str(i) for i in p.js("matting.mattes.objectIds(0)"))
    answer = requests.get(
        f"{service.url}/sessions/{sid}/composite/0",
        params={"bg": "10c828", "objects": objects},
        timeout=60,
    )
    assert answer.status_code == 200
    served = np.asarray(Image.open(io.BytesIO(answer.content)).convert("RGB"))
    assert np.abs(shown.astype(np.int16) - served.astype(np.int16)).max() <= 1

    # The source colour: the browser's own composite, which differs on the soft matte.
    p.page.click("label[for=preview-colour-source]")
    p.wait(f"{STATE}.preview === 'browser'")
    p.js("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    browser_made = _canvas(p)
    assert np.abs(browser_made.astype(np.int16) - served.astype(np.int16)).mean() > 1.0
    p.page.click("label[for=preview-colour-estimate]")
    p.wait(f"{STATE}.preview === 'estimated'")  # from the page's cache, at once

    # Playing: the browser composites; paused on a frame, its estimated composite comes.
    p.page.click("#play")
    p.wait(f"matting.player.playing && {STATE}.preview === 'browser'")
    p.page.click("#play")
    p.wait("!matting.player.playing && !matting.player.busy")
    frame = p.js("stage.dataset.frame")
    assert frame != "0"
    # no mattes on that frame yet: the browser composite is the answer (background only)
    assert p.js(f"{STATE}.preview") == "browser"
    p.page.keyboard.press("Home")
    p.wait(f"{STATE}.preview === 'estimated' && {STATE}.previewFrame === '0'")
    assert np.abs(_canvas(p).astype(np.int16) - served.astype(np.int16)).max() <= 1


def test_mattes_the_service_dropped_keep_the_browser_composite(page: Page) -> None:
    p = page
    p.open_video("gallery/clip.mp4")
    p.click_stage(0.5, 0.55)
    p.settled()
    p.page.click("label[for=dir-forward]")
    p.page.click("#propagate")
    p.wait("document.getElementById('propagate-status').dataset.state === 'done'", timeout=90)
    p.page.keyboard.press("v")
    p.page.locator("#scrubber").evaluate(
        "el => { el.value = '9'; el.dispatchEvent(new Event('input')); }"
    )
    p.wait(f"{STATE}.preview === 'estimated' && {STATE}.previewFrame === '9'")
    # A new click on frame 0: the service drops the propagated mattes, the page keeps them
    # (marked stale), so frame 9 stays the browser's composite, without an error.
    p.page.keyboard.press("Home")
    p.wait("stage.dataset.frame === '0'")
    p.click_stage(0.3, 0.3)
    p.settled()
    p.wait("matting.mattes.stale")
    p.page.locator("#scrubber").evaluate(
        "el => { el.value = '8'; el.dispatchEvent(new Event('input')); }"
    )
    p.wait(f"stage.dataset.frame === '8' && {STATE}.preview === 'browser'")
    p.wait("!matting.still.still.pending")
    assert p.js(f"{STATE}.preview") == "browser"
    assert p.js("document.querySelectorAll('#messages .message').length") == 0
