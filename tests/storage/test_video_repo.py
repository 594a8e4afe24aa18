"""The Video Studio's tables on SQLite and a real PostgreSQL: projects with per-field settings writes,
clips added, reordered, duplicated, deleted and restored, and concurrent edits that never corrupt the
order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mmstudio.domain.video.projects import ShotSettings
from mmstudio.errors import InvalidRequest, NotFound
from mmstudio.storage.db import create_engine, session_factory
from mmstudio.storage.video_repo import VideoProjectRepository


def _repo(engine: Any) -> VideoProjectRepository:
    return VideoProjectRepository(session_factory(engine))


async def _project_with(repo: VideoProjectRepository, n: int) -> tuple[str, list[str]]:
    project = await repo.create("trip", "16:9", "720p", ShotSettings())
    ids = [(await repo.add_clip(project.id, settings=ShotSettings(prompt=f"shot {i}"))).id for i in range(n)]
    return project.id, ids


async def test_a_project_keeps_its_next_shot_and_lists_last_changed_first(engine: Any) -> None:
    repo = _repo(engine)
    first = await repo.create("one", "16:9", "720p", ShotSettings(model="runway/gen3a_turbo"))
    second = await repo.create("two", "9:16", "1080p", ShotSettings())
    assert first.id.startswith("vp_") and len(first.id) > 20 and first.next_shot.duration_s == 4.0
    changed = await repo.update(first.id, {"zoom": 0.5, "seed": 7, "prompt": "a fox", "name": "one!"})
    assert changed.next_shot == ShotSettings(model="runway/gen3a_turbo", zoom=0.5, seed=7, prompt="a fox")
    assert changed.name == "one!" and changed.updated_at >= first.updated_at
    assert [p.id for p in await repo.list()] == [first.id, second.id]
    await repo.delete(second.id)
    assert await repo.get(second.id) is None and [p.id for p in await repo.list()] == [first.id]
    with pytest.raises(NotFound):
        await repo.update(second.id, {"zoom": 0.1})


async def test_two_tabs_changing_different_fields_both_keep_their_change(engine: Any) -> None:
    url = engine.url.render_as_string(hide_password=False)
    tabs = [create_engine(url) for _ in range(2)]
    try:
        project = await _repo(engine).create("p", "16:9", "720p", ShotSettings())
        fields = [{"pan_x": 0.25 * (i % 4), "zoom": 0.1} if i % 2 else {"prompt": f"p{i}"} for i in range(20)]
        await asyncio.gather(*(_repo(tabs[i % 2]).update(project.id, f) for i, f in enumerate(fields)))
        got = await _repo(engine).get(project.id)
        assert got is not None and got.next_shot.zoom == 0.1 and got.next_shot.prompt.startswith("p")
        assert got.next_shot.pan_x in (0.0, 0.25, 0.5, 0.75)
    finally:
        for tab in tabs:
            await tab.dispose()


async def test_clips_are_added_reordered_duplicated_deleted_and_restored(engine: Any) -> None:
    repo = _repo(engine)
    project_id, (a, b, c) = await _project_with(repo, 3)
    got = await repo.get(project_id)
    assert got is not None and [x.id for x in got.clips] == [a, b, c] and got.selected_clip_id == c
    after = await repo.reorder(project_id, [c, a, b])
    assert [x.id for x in after.clips] == [c, a, b]
    copy = await repo.duplicate_clip(project_id, a)
    order = [x.id for x in (await repo.get(project_id)).clips]  # type: ignore[union-attr]
    assert order == [c, a, copy.id, b] and copy.settings.prompt == "shot 0"
    await repo.delete_clip(project_id, a)
    assert [x.id for x in (await repo.get(project_id)).clips] == [c, copy.id, b]  # type: ignore[union-attr]
    assert [x.id for x in await repo.deleted_clips(project_id)] == [a]
    await repo.restore_clip(project_id, a)  # undo: back in its place
    assert [x.id for x in (await repo.get(project_id)).clips] == [c, a, copy.id, b]  # type: ignore[union-attr]
    trimmed = await repo.update_clip(project_id, b, {"trim_in_s": 0.5, "trim_out_s": 3.0})
    assert (trimmed.trim_in_s, trimmed.trim_out_s) == (0.5, 3.0)
    with pytest.raises(NotFound):
        await repo.restore_clip(project_id, b)  # not deleted
    with pytest.raises(NotFound):
        await repo.delete_clip(project_id, "clip_nope")


async def test_a_reorder_must_name_every_clip_once_and_changes_nothing_otherwise(engine: Any) -> None:
    repo = _repo(engine)
    project_id, (a, b, c) = await _project_with(repo, 3)
    for wrong, says in (
        ([a, b, "clip_nope"], "unknown clip id(s): clip_nope"),
        ([a, b], f"missing: {c}"),
        ([a, a, b, c], "repeated"),
    ):
        with pytest.raises((InvalidRequest, NotFound)) as refused:  # an id that names nothing: NotFound
            await repo.reorder(project_id, wrong)
        assert says in refused.value.message and refused.value.field == "clip_ids"  # type: ignore[union-attr]
        assert isinstance(refused.value, NotFound) == ("unknown" in says)
    assert [x.id for x in (await repo.get(project_id)).clips] == [a, b, c]  # type: ignore[union-attr]


async def test_concurrent_adds_and_reorders_never_corrupt_the_order(engine: Any) -> None:
    url = engine.url.render_as_string(hide_password=False)
    tabs = [create_engine(url) for _ in range(3)]
    try:
        repo = _repo(engine)
        project_id, ids = await _project_with(repo, 4)

        async def tab_adds(tab: Any) -> None:
            for i in range(4):
                await _repo(tab).add_clip(project_id, settings=ShotSettings(prompt=f"added {i}"))

        async def tab_reverses(tab: Any) -> None:
            for _ in range(4):
                current = await _repo(tab).get(project_id)
                assert current is not None
                with _maybe_stale():
                    await _repo(tab).reorder(project_id, [x.id for x in reversed(current.clips)])

        await asyncio.gather(tab_adds(tabs[0]), tab_adds(tabs[1]), tab_reverses(tabs[2]))
        final = await repo.get(project_id)
        assert final is not None and len(final.clips) == 12
        assert len({x.id for x in final.clips}) == 12 and set(ids) <= {x.id for x in final.clips}
        assert [x.position for x in final.clips] == sorted({x.position for x in final.clips})  # no ties
    finally:
        for tab in tabs:
            await tab.dispose()


class _maybe_stale:
    """A reorder built from a read that another tab's add has since made stale is refused (it does not
    name the new clip) rather than applied: either outcome is fine here, a corrupted order is not."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, value: Any, tb: Any) -> bool:
        return kind is None or (issubclass(kind, InvalidRequest) and "missing" in value.message)
