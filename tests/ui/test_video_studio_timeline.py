"""The Video Studio page's frames, timeline and preview in the browser: start and end frames picked from
the gallery (a page at a time, by keyboard too) or taken from the selected clip's last frame, the end
frame turned off for a model without one; clips sized by duration under a ruler, dragged to reorder and
trimmed by their edges with the mouse, moved, stepped and deleted with keys, duplicated; the playhead
moved on the ruler; and the preview playing the sequence clip after clip, honouring trims, with Space
and the Loop toggle. Through the real app, with uploaded MP4s (cheaper than generating)."""

from __future__ import annotations

import json
from typing import Any

from playwright.async_api import Locator, Page, expect

from mmstudio.domain.media.types import Recipe
from tests.fakes.images import make_image
from tests.fakes.videos import make_mp4
from tests.gateway.conftest import LiveStudio, OpenLive
from tests.gateway.test_video_studio import BASE, FAST, _upload, env_for
from tests.ui.conftest import shot
from tests.ui.test_models_page import UNLABELLED

RUNWAY = "key_runway_0123456789"


async def _project_with_clips(studio: LiveStudio, seconds: list[float]) -> tuple[str, list[str]]:
    pid: str = (await studio.client.post(BASE, json={"name": "cut"})).json()["id"]
    clip_ids = []
    for i, length in enumerate(seconds):
        video = make_mp4(64, 36, seconds=length, fps=4, color=(70 * i, 90, 160))
        asset = await _upload(studio, video, f"c{i}.mp4", "video/mp4")
        added = await studio.client.post(f"{BASE}/{pid}/clips", json={"asset_id": asset})
        assert added.status_code == 201, added.text
        clip_ids.append(added.json()["id"])
    return pid, clip_ids


async def _view(studio: LiveStudio, pid: str) -> dict[str, Any]:
    answer = await studio.client.get(f"{BASE}/{pid}")
    assert answer.status_code == 200, answer.text
    view: dict[str, Any] = answer.json()
    return view


def _posted_playhead(post_data: str | None) -> float | None:
    """The playhead a view PATCH sets, to the tenth (None when it sets none)."""
    body = json.loads(post_data or "{}")
    return None if body.get("playhead_s") is None else round(float(body["playhead_s"]), 1)


async def _width(locator: Locator) -> float:
    box = await locator.bounding_box()
    assert box is not None
    return box["width"]


async def test_frames_come_from_the_gallery_or_the_last_frame_and_the_end_frame_follows_the_model(
    page: Page, live: OpenLive
) -> None:
    studio = await live(env_for(None, RUNWAYML_API_SECRET=RUNWAY), config=FAST)
    pid, _ = await _project_with_clips(studio, [1])
    chosen = await studio.client.patch(
        f"{BASE}/{pid}", json={"model": "runway/gen3a_turbo"}
    )  # takes end frames
    assert chosen.json()["controls"]["endFrame"] != "not used by this model", chosen.json()["controls"]
    media = studio.studio.media  # the gallery lists made images (uploads are not in it)
    images = [
        (
            await media.save_generated(
                make_image(16, 9, color=(5 * i, 90, 90)),
                "image/png",
                recipe=Recipe(model_used="fake/pic", provider="fake", prompt=f"picture {i}"),
            )
        ).id
        for i in range(41)  # one more than a page: the oldest comes with More
    ]
    await page.goto(f"{studio.url}/video-studio?project={pid}")
    start_pick = page.get_by_role("button", name="Choose from gallery: start frame")
    end_pick = page.get_by_role("button", name="Choose from gallery: end frame")
    await expect(end_pick).to_be_enabled()

    # The gallery: a page of thumbnails, arrows move between them, Escape closes it.
    await start_pick.click()
    dialog = page.get_by_role("dialog", name="Choose the start frame")
    await expect(dialog).to_be_visible()
    picks = dialog.locator(".vs-pick")
    await expect(picks).to_have_count(40)
    await expect(picks.first).to_be_focused()
    await expect(picks.first.locator("img")).to_have_attribute("src", f"/api/media/{images[-1]}/thumb")
    await page.keyboard.press("ArrowRight")
    await expect(picks.nth(1)).to_be_focused()
    assert await page.evaluate(UNLABELLED) == []
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(start_pick).to_be_focused()
    assert (await _view(studio, pid))["nextShot"]["startFrame"] is None  # nothing chosen

    # More brings the next page; Enter on a thumbnail chooses it.
    await page.keyboard.press("Enter")
    await expect(picks).to_have_count(40)
    await dialog.get_by_role("button", name="More").click()
    await expect(picks).to_have_count(41)
    await expect(dialog.get_by_role("button", name="More")).to_be_hidden()
    await picks.last.focus()
    await page.keyboard.press("Enter")
    await expect(dialog).to_be_hidden()
    thumb = page.locator("#vs-start-thumb")
    await expect(thumb).to_have_attribute("src", f"/api/media/{images[0]}/thumb")
    await expect(thumb).to_be_visible()
    assert (await _view(studio, pid))["nextShot"]["startFrame"] == images[0]

    await end_pick.click()
    await page.get_by_role("dialog", name="Choose the end frame").locator(".vs-pick").nth(2).click()
    await expect(page.locator("#vs-end-thumb")).to_have_attribute("src", f"/api/media/{images[-3]}/thumb")
    assert (await _view(studio, pid))["nextShot"]["endFrame"] == images[-3]

    # The selected clip's last frame as the start frame.
    await page.get_by_role("button", name="Use last frame of selected clip").click()
    await expect(thumb).not_to_have_attribute("src", f"/api/media/{images[0]}/thumb")
    still = (await _view(studio, pid))["nextShot"]["startFrame"]
    assert still not in images
    await expect(thumb).to_have_attribute("src", f"/api/media/{still}/thumb")

    # A model without end frames: the picker is off with the API's words; the chosen one can be cleared.
    async with page.expect_response(lambda r: r.request.method == "PATCH" and r.url.endswith(pid)):
        await page.get_by_label("Model", exact=True).select_option("openai/sora-2")
    how = (await _view(studio, pid))["controls"]["endFrame"]
    assert how == "not used by this model"
    await expect(end_pick).to_be_disabled()
    await expect(page.get_by_label("Upload an end image")).to_be_disabled()
    await expect(page.locator("#vs-end-note")).to_contain_text(how)
    await expect(page.locator('.vs-how[data-control="endFrame"]')).to_have_text(how)
    await page.get_by_role("button", name="Clear end frame").click()
    await expect(page.locator("#vs-end-thumb")).to_be_hidden()
    assert (await _view(studio, pid))["nextShot"]["endFrame"] is None

    await page.set_viewport_size({"width": 390, "height": 800})
    await page.get_by_role("button", name="Switch to dark theme").click()
    await start_pick.click()
    await expect(dialog.locator(".vs-pick")).to_have_count(40)
    box = await dialog.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    await shot(page, "video-studio-gallery-narrow-dark", full_page=False)
    await dialog.get_by_role("button", name="Close").click()
    await expect(dialog).to_be_hidden()


async def test_the_timeline_drags_trims_steps_and_duplicates_with_the_mouse_and_keys(
    page: Page, live: OpenLive
) -> None:
    studio = await live(env_for(None), config=FAST)
    pid, (a, b, c) = await _project_with_clips(studio, [2, 1, 1])

    async def order() -> list[str]:
        return [x["id"] for x in (await _view(studio, pid))["clips"]]

    await page.goto(f"{studio.url}/video-studio?project={pid}")
    items = page.locator("#vs-timeline > li")
    await expect(items).to_have_count(3)
    await expect(items.nth(2).locator(".vs-thumb img")).to_be_visible()
    ruler = page.get_by_role("slider", name="Playhead")
    await expect(ruler.locator(".vs-tick").first).to_have_text("0 s")
    await expect(ruler).to_contain_text("3 s")
    await expect(ruler).to_have_attribute("aria-valuemax", "4.0")
    widths = [await _width(items.nth(i)) for i in range(3)]
    assert abs(widths[0] - 2 * widths[1]) < 2 and abs(widths[1] - widths[2]) < 1, widths  # by duration
    px_per_s = widths[1]

    # Drag clip 1 past the middle of clip 2 with the mouse.
    await page.locator("#vs-clip-panel").scroll_into_view_if_needed()  # the track and the panel on screen
    first = await items.nth(0).locator(".vs-thumb").bounding_box()
    second = await items.nth(1).bounding_box()
    assert first is not None and second is not None
    y = first["y"] + first["height"] / 2
    await page.mouse.move(first["x"] + first["width"] / 2, y)
    await page.mouse.down()
    async with page.expect_response(lambda r: r.request.method == "PUT" and r.url.endswith("/order")):
        await page.mouse.move(second["x"] + second["width"] * 0.8, y, steps=8)
        await expect(page.locator("#vs-drop")).to_be_visible()
        await page.mouse.up()
    await expect(items.nth(0)).to_have_attribute("data-clip", b)
    assert await order() == [b, a, c]

    # Drag clip a's left edge half a second in: trimmed to a tenth, saved on release.
    handle = await items.nth(1).locator(".vs-handle-in").bounding_box()
    assert handle is not None
    hx, hy = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
    await page.mouse.move(hx, hy)
    await page.mouse.down()
    await page.mouse.move(hx + 0.52 * px_per_s, hy, steps=6)
    await expect(items.nth(1).locator(".vs-trim-ghost")).to_contain_text("in 0.5 s")  # shown live
    async with page.expect_response(lambda r: r.request.method == "PATCH" and f"/clips/{a}" in r.url):
        await page.mouse.up()
    await expect(items.nth(1).locator(".vs-len")).to_have_text("1.5 s")
    clip_a = (await _view(studio, pid))["clips"][1]
    assert (clip_a["id"], clip_a["trimInS"], clip_a["trimOutS"]) == (a, 0.5, None)
    await expect(items.nth(1)).to_have_attribute("aria-current", "true")  # a trimmed clip is selected
    await expect(page.get_by_label("Trim in (s) of clip 2")).to_have_value("0.5")

    # Keys: Alt+arrow moves the selected clip, arrows step the selection (PATCHed), Backspace deletes.
    await page.get_by_role("button", name="Select clip 1").click()
    await expect(items.nth(0)).to_have_attribute("aria-current", "true")
    async with page.expect_response(lambda r: r.request.method == "PUT" and r.url.endswith("/order")):
        await page.keyboard.press("Alt+ArrowRight")
    await expect(items.nth(1)).to_have_attribute("data-clip", b)
    await expect(page.get_by_role("button", name="Select clip 2")).to_be_focused()
    assert await order() == [a, b, c]
    async with page.expect_response(
        lambda r: r.request.method == "PATCH" and c in (r.request.post_data or "")
    ):
        await page.keyboard.press("ArrowRight")
    await expect(items.nth(2)).to_have_attribute("aria-current", "true")
    assert (await _view(studio, pid))["selectedClipId"] == c
    await page.keyboard.press("Backspace")
    await expect(items).to_have_count(2)
    assert await order() == [a, b]
    await page.get_by_role("button", name="Undo delete").click()
    await expect(items).to_have_count(3)

    # Duplicate: the copy keeps the trim, right after the original.
    await page.get_by_role("button", name="Select clip 1").click()
    await page.get_by_role("button", name="Duplicate clip 1").click()
    await expect(items).to_have_count(4)
    clips = (await _view(studio, pid))["clips"]
    assert [x["id"] for x in clips][::2] == [a, b] and clips[1]["assetId"] == clips[0]["assetId"]
    assert clips[1]["trimInS"] == 0.5
    await expect(items.nth(1)).to_have_attribute("aria-current", "true")  # the copy, selected

    # The ruler moves the playhead, and the playhead is stored.
    px_per_s = await _width(items.nth(2))  # b: one second
    timeline = await page.locator("#vs-timeline").bounding_box()
    rbox = await ruler.bounding_box()
    assert timeline is not None and rbox is not None
    async with page.expect_response(  # not the copy's selection (its playhead 1.5 s), still in flight
        lambda r: r.request.method == "PATCH" and _posted_playhead(r.request.post_data) == 2.0
    ):
        await page.mouse.click(timeline["x"] + 2.0 * px_per_s, rbox["y"] + rbox["height"] / 2)
    await expect(ruler).to_have_attribute("aria-valuenow", "2.0")
    assert abs((await _view(studio, pid))["playheadS"] - 2.0) < 0.11
    await expect(page.locator("#vs-now-playing")).to_have_text("Clip 2 of 4")  # 1.5 s + the copy's 1.5 s
    assert await page.evaluate(UNLABELLED) == []
    await shot(page, "video-studio-timeline")


async def test_the_preview_plays_the_sequence_with_space_honours_trims_and_loops(
    page: Page, live: OpenLive
) -> None:
    studio = await live(env_for(None), config=FAST)
    pid, (_, second) = await _project_with_clips(studio, [1, 1])
    trimmed = await studio.client.patch(f"{BASE}/{pid}/clips/{second}", json={"trim_in_s": 0.5})
    assert trimmed.status_code == 200, trimmed.text
    await page.goto(f"{studio.url}/video-studio?project={pid}")
    await expect(page.locator("#vs-timeline > li")).to_have_count(2)
    await expect(page.locator("#vs-now-playing")).to_have_text("Clip 1 of 2")  # the one at the playhead
    # What the preview shows, change by change, and where each clip starts playing.
    await page.evaluate(
        """() => {
          const np = document.getElementById('vs-now-playing');
          const video = document.getElementById('vs-video');
          window.vsSeen = [];
          window.vsStarts = [];
          new MutationObserver(() => {
            const seen = window.vsSeen;
            if (seen[seen.length - 1] !== np.textContent) seen.push(np.textContent);
          }).observe(np, { childList: true, characterData: true, subtree: true });
          video.addEventListener('playing', () => window.vsStarts.push([np.textContent, video.currentTime]));
        }"""
    )
    playing = (
        "() => { const v = document.getElementById('vs-video'); return !v.paused && v.currentTime > 0; }"
    )
    paused = "() => document.getElementById('vs-video').paused"

    await page.get_by_role("button", name="Select clip 1").click()
    await expect(page.locator("#vs-now-playing")).to_have_text("Clip 1 of 2")
    await page.keyboard.press("Space")  # on the timeline: plays the sequence
    await page.wait_for_function(playing)
    await expect(page.get_by_role("button", name="Pause")).to_be_visible()
    await expect(page.locator("#vs-now-playing")).to_have_text("Clip 2 of 2")  # moved on by itself
    await page.wait_for_function(paused)  # the end of the sequence, no loop
    await expect(page.get_by_role("button", name="Play timeline")).to_be_visible()
    starts = await page.evaluate("window.vsStarts")
    assert [s[0] for s in starts] == ["Clip 1 of 2", "Clip 2 of 2"], starts
    assert starts[0][1] < 0.2 and starts[1][1] >= 0.45, starts  # clip 2 from its trim in
    await expect(page.get_by_role("slider", name="Playhead")).to_have_attribute("aria-valuenow", "1.5")

    loop = page.get_by_role("button", name="Loop preview")
    await loop.click()
    await expect(loop).to_have_attribute("aria-pressed", "true")
    await page.get_by_role("button", name="Select clip 1").click()
    await page.evaluate("window.vsSeen = []")
    await page.keyboard.press("Space")
    await page.wait_for_function("window.vsSeen.join('|').includes('Clip 2 of 2|Clip 1 of 2')")
    await page.wait_for_function(playing)  # started again at clip 1
    await page.keyboard.press("Space")
    await page.wait_for_function(paused)
    await expect(page.get_by_role("button", name="Play timeline")).to_be_visible()
    await expect(page.locator("#vs-now-playing")).to_have_text("Clip 1 of 2")
