"""A lost session rebuilt by the page from its prompts file, in headless Chromium.

The page keeps the latest prompts file the service gave for its session; when the session is
gone (closed here behind the page's back, as an expiry would), "Restart session" starts a new
one from that file, so mask prompts and the order of prompts and propagations survive, then
sends the click the lost session did not take. The mattes after it are compared with a session
that was never lost and got the same calls. The tiny model's mattes are noise: only equality
is checked. Fixtures and helpers are test_page's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import requests
from test_page import (  # noqa: F401  (fixtures)
    MATTES,
    PROMPTS,
    Page,
    Service,
    browser,
    page,
    service,
)

from sam2_matting.codec import encode_matte

W, H, FRAMES = 480, 270, 60
START = "mutation S($input: StartSessionInput!) { startSession(input: $input) { sessionId } }"
ADD = """mutation A($input: AddPointsInput!) { addPoints(input: $input) { frameIndex } }"""


def _seek(p: Page, frame: int) -> None:
    p.page.locator("#scrubber").evaluate(
        f"el => {{ el.value = '{frame}'; el.dispatchEvent(new Event('input')); }}"
    )
    p.wait(f"stage.dataset.frame === '{frame}' && !video.seeking")


def _propagate(p: Page) -> None:
    p.page.click("label[for=dir-forward]")
    p.page.click("#propagate")
    p.wait("document.getElementById('propagate-status').dataset.state === 'done'", timeout=90)


def _events(svc: Service, sid: str) -> list[dict[str, Any]]:
    return list(json.loads(svc.gql(PROMPTS, {"id": sid})["data"]["sessionPrompts"])["events"])


def _mattes(svc: Service, sid: str) -> Any:
    return svc.gql(MATTES, {"id": sid, "f": list(range(50, FRAMES))})["data"]["mattes"]


def _stream(svc: Service, sid: str, start: int) -> None:
    body = {"session_id": sid, "start_frame_index": start, "direction": "forward"}
    r = requests.post(
        f"{svc.url}/propagate_in_video",
        json=body,
        headers={"Accept": "application/x-ndjson"},
        timeout=120,
    )
    assert r.status_code == 200 and '"type": "end"' in r.text


def test_a_lost_session_is_rebuilt_from_its_prompts_file(
    page: Page,  # noqa: F811
    service: Service,  # noqa: F811
    tmp_path: Path,
) -> None:
    p = page
    p.open_video("gallery/clip.mp4")
    _seek(p, 50)
    p.click_stage(0.5, 0.55)
    p.settled()

    # A file with a mask prompt for a second object (the page has no mask tool: open one).
    sid = str(p.js("document.body.dataset.session"))
    doc = json.loads(service.gql(PROMPTS, {"id": sid})["data"]["sessionPrompts"])
    mask = np.zeros((H, W), np.uint8)
    mask[60:200, 40:160] = 255
    doc["events"].append({"op": "add_mask", "frame": 52, "object": 1, "mask": encode_matte(mask)})
    crafted = tmp_path / "clip.prompts.json"
    crafted.write_text(json.dumps(doc))
    p.page.set_input_files("#prompts-input", str(crafted))
    p.wait(f"document.body.dataset.state === 'ready' && document.body.dataset.session !== '{sid}'")
    first = str(p.js("document.body.dataset.session"))

    # The mask prompt is marked on its frame and counted in the object list.
    _seek(p, 52)
    p.wait("markers.querySelectorAll('.mask-prompt').length === 1")
    assert "mask prompt" in p.js("markers.querySelector('.mask-prompt').textContent")
    assert "(1 mask)" in p.js("document.getElementById('objects').textContent")
    p.shot("08-mask-prompt-marked")

    _seek(p, 50)
    _propagate(p)
    _seek(p, 55)
    p.click_stage(0.3, 0.4)  # a correction on a tracked frame: read against the memory
    p.settled()
    p.wait(f"(matting.promptsFile.fileOf('{first}') ?? '').includes('\"frame\": 55')")
    lost = _events(service, first)
    assert [e["op"] for e in lost] == ["add_points", "add_mask", "propagate", "add_points"]
    assert json.loads(p.js(f"matting.promptsFile.fileOf('{first}')"))["events"] == lost

    # Gone behind the page's back; the next click is kept; Restart rebuilds from the file.
    assert service.close(first)
    p.click_stage(0.35, 0.45)
    gone = p.message("NOT_FOUND")
    gone.get_by_role("button", name="Restart session").click()
    p.wait(
        f"document.body.dataset.state === 'ready' && document.body.dataset.session !== '{first}'"
        " && matting.editor.pending === 0"
    )
    second = str(p.js("document.body.dataset.session"))
    p.wait(
        "[...document.querySelectorAll('#messages .message')]"
        ".some(m => m.textContent.includes('rebuilt from its prompts file'))"
    )
    rebuilt = _events(service, second)
    assert rebuilt[: len(lost)] == lost  # every event, in order, the mask prompt too
    assert [e["op"] for e in rebuilt[len(lost) :]] == ["add_points"]
    assert len(rebuilt[-1]["points"]) == 2 and rebuilt[-1]["frame"] == 55
    assert p.js("markers.querySelectorAll('.positive').length") == 2
    _propagate(p)

    # A session never lost, given the same calls, has the same mattes.
    opened = {"path": "gallery/clip.mp4", "prompts": crafted.read_text()}
    ref = service.gql(START, {"input": opened})
    ref_id = ref["data"]["startSession"]["sessionId"]
    try:
        _stream(service, ref_id, 50)
        for e in (lost[3], rebuilt[-1]):
            change = {"sessionId": ref_id, "frameIndex": 55, "objectId": 0, "clearOldPoints": True}
            change.update(points=e["points"], labels=e["labels"])
            assert "errors" not in service.gql(ADD, {"input": change})
        _stream(service, ref_id, 55)
        assert _events(service, ref_id) == _events(service, second)
        page_mattes = _mattes(service, second)
        # the frames the last propagation streamed (the service keeps those)
        assert [f["frameIndex"] for f in page_mattes] == list(range(55, FRAMES))
        assert page_mattes == _mattes(service, ref_id)
    finally:
        service.close(ref_id)

    # Object 2 has only its mask prompt (frame 52): its click elsewhere, cleared, clears that
    # frame; the object and its mask stay.
    p.page.keyboard.press("2")
    _seek(p, 57)
    p.click_stage(0.7, 0.3)
    p.settled()
    p.page.keyboard.press("c")
    p.settled()
    after = _events(service, second)[len(rebuilt) + 1 :]
    assert [e["op"] for e in after] == ["add_points", "clear_frame"]
    assert after[1] == {"op": "clear_frame", "frame": 57, "object": 1}
    assert p.js("matting.editor.objects.map(o => o.id)") == [0, 1]
    _seek(p, 52)
    p.wait("markers.querySelectorAll('.mask-prompt').length === 1")
