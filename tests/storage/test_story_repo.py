"""Story mode's tables on SQLite and a real PostgreSQL: stories, their scene trees with branches, the
tier's characters, search, sorts and paging, the media a deleted story frees, and tier isolation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from mmstudio.domain.story.types import Scene, Story
from mmstudio.errors import InvalidRequest, NotFound
from mmstudio.storage.db import alembic_config, create_engine, migrate, session_factory
from mmstudio.storage.story_repo import StoryRepository

KIDS, OTHER = "kids", "nsfw"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _repo(engine: Any) -> StoryRepository:
    return StoryRepository(session_factory(engine))


async def _story(repo: StoryRepository, tier: str = KIDS, **overrides: Any) -> Story:
    values: dict[str, Any] = {
        "premise": "A fox finds a door in a tree.",
        "title": "The fox",
        "text_model": "ollama/llama3.2",
        "image_model": "openai/gpt-image-1",
        "video_model": None,
        "memory_mode": False,
        "video_mode": False,
        "saved": True,
    }
    values.update(overrides)
    return await repo.create_story(tier, **values)


async def _ids(repo: StoryRepository, **kwargs: Any) -> list[str]:
    return [s.id for s in (await repo.list_stories(KIDS, limit=100, **kwargs)).items]


async def test_a_story_is_created_read_updated_and_deleted(engine: Any) -> None:
    repo = _repo(engine)
    story = await _story(repo, video_model="runway/gen4", video_mode=True, saved=False)
    assert story.id.startswith("st_") and len(story.id) == 23
    assert (story.tier, story.title, story.scene_count, story.saved, story.has_video) == (
        KIDS,
        "The fox",
        0,
        False,
        False,
    )
    assert story.created_at == story.updated_at and story.created_at.tzinfo is not None
    assert await repo.get_story(KIDS, story.id) == story

    changed = await repo.update_story(
        KIDS, story.id, {"title": "Fox and door", "saved": True, "has_video": True, "cover_asset_id": "img_1"}
    )
    assert (changed.title, changed.saved, changed.has_video, changed.cover_asset_id) == (
        "Fox and door",
        True,
        True,
        "img_1",
    )
    assert changed.premise == story.premise and changed.video_model == "runway/gen4"
    assert changed.updated_at > story.updated_at and changed.created_at == story.created_at
    assert await repo.get_story(KIDS, story.id) == changed
    with pytest.raises(ValueError, match="not a story field: premise, scene_count"):
        await repo.update_story(KIDS, story.id, {"premise": "x", "scene_count": 9})
    with pytest.raises(NotFound):
        await repo.update_story(KIDS, "st_nope", {"title": "x"})

    assert await repo.delete_story(KIDS, story.id) == ["img_1"]
    assert await repo.get_story(KIDS, story.id) is None
    with pytest.raises(NotFound):
        await repo.delete_story(KIDS, story.id)


async def test_an_imported_story_keeps_its_date_in_utc_and_its_format(engine: Any) -> None:
    repo = _repo(engine)
    at = datetime(2025, 3, 4, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    story = await _story(repo, legacy_format=2, created_at=at)
    got = await repo.get_story(KIDS, story.id)
    assert got is not None and got.legacy_format == 2
    assert got.created_at == got.updated_at == at and got.created_at.utcoffset() == timedelta(0)


async def test_another_tiers_ids_are_not_found_by_any_call(engine: Any) -> None:
    repo = _repo(engine)
    story = await _story(repo)
    root = await repo.add_scene(KIDS, story.id, parent_id=None, choice=None)
    character = await repo.create_character(KIDS, name="Fox", description="red", photo_ids=["img_f"])
    own = await _story(repo, OTHER)  # the other tier's own story, to try a parent from KIDS under it

    assert await repo.get_story(OTHER, story.id) is None
    assert await repo.tree(OTHER, story.id) is None
    assert await repo.get_scene(OTHER, root.id) is None
    assert await repo.children(OTHER, root.id) == []
    assert await repo.get_character(OTHER, character.id) is None
    assert [s.id for s in (await repo.list_stories(OTHER, saved_only=False)).items] == [own.id]
    assert (await repo.list_stories(OTHER, q="fox")).total == 1  # its own only
    assert await repo.list_characters(OTHER) == []
    for refused in (
        lambda: repo.update_story(OTHER, story.id, {"title": "taken"}),
        lambda: repo.delete_story(OTHER, story.id),
        lambda: repo.add_scene(OTHER, story.id, parent_id=root.id, choice="go"),
        lambda: repo.add_scene(OTHER, story.id, parent_id=None, choice=None),
        lambda: repo.add_scene(OTHER, own.id, parent_id=root.id, choice="go"),  # a parent of another tier
        lambda: repo.update_scene(OTHER, root.id, {"title": "taken"}),
        lambda: repo.update_character(OTHER, character.id, {"name": "taken"}),
        lambda: repo.delete_character(OTHER, character.id),
    ):
        with pytest.raises(NotFound):
            await refused()

    # Nothing of KIDS changed, and the refused add left no scene and no count behind.
    after = await repo.tree(KIDS, story.id)
    assert after is not None and after.story.title == "The fox" and after.story.scene_count == 1
    assert [s.id for s in after.scenes] == [root.id] and after.scenes[0].title == ""
    assert (await repo.get_story(OTHER, own.id)).scene_count == 0  # type: ignore[union-attr]
    assert (await repo.get_character(KIDS, character.id)).name == "Fox"  # type: ignore[union-attr]


async def test_a_branch_keeps_both_children_and_path_to_follows_one(engine: Any) -> None:
    repo = _repo(engine)
    story = await _story(repo)
    root = await repo.add_scene(KIDS, story.id, parent_id=None, choice=None)
    left = await repo.add_scene(KIDS, story.id, parent_id=root.id, choice="Open the door")
    right = await repo.add_scene(KIDS, story.id, parent_id=root.id, choice="Knock first")
    deeper = await repo.add_scene(KIDS, story.id, parent_id=left.id, choice="Step inside")
    assert root.id.startswith("sc_") and len(root.id) == 23
    assert (root.depth, left.depth, right.depth, deeper.depth) == (0, 1, 1, 2)
    assert (left.parent_id, right.parent_id, deeper.parent_id) == (root.id, root.id, left.id)
    assert (deeper.state, deeper.choice, deeper.story_id, deeper.tier) == (
        "writing",
        "Step inside",
        story.id,
        KIDS,
    )

    tree = await repo.tree(KIDS, story.id)
    assert tree is not None and tree.story.scene_count == 4
    assert [s.id for s in tree.scenes] == [root.id, left.id, right.id, deeper.id]  # parents first
    assert [s.id for s in tree.path_to(deeper.id)] == [root.id, left.id, deeper.id]
    assert [s.id for s in tree.path_to(right.id)] == [root.id, right.id]
    assert [s.id for s in await repo.children(KIDS, root.id)] == [left.id, right.id]
    assert await repo.children(KIDS, deeper.id) == []
    assert await repo.get_scene(KIDS, right.id) == right


async def test_a_second_first_scene_and_a_parent_of_another_story_are_refused(engine: Any) -> None:
    repo = _repo(engine)
    story, elsewhere = await _story(repo), await _story(repo)
    await repo.add_scene(KIDS, story.id, parent_id=None, choice=None)
    foreign = await repo.add_scene(KIDS, elsewhere.id, parent_id=None, choice=None)
    with pytest.raises(InvalidRequest) as refused:
        await repo.add_scene(KIDS, story.id, parent_id=None, choice="again")
    assert refused.value.field == "parent_id"
    with pytest.raises(NotFound):
        await repo.add_scene(KIDS, story.id, parent_id=foreign.id, choice="jump")
    with pytest.raises(NotFound):
        await repo.add_scene(KIDS, story.id, parent_id="sc_nope", choice="jump")
    tree = await repo.tree(KIDS, story.id)
    assert tree is not None and tree.story.scene_count == 1 and len(tree.scenes) == 1


async def test_two_first_scenes_racing_make_exactly_one(engine: Any) -> None:
    # Five engines, like five server processes: one engine's pool lines SQLite's connections up too neatly.
    url = engine.url.render_as_string(hide_password=False)
    tabs = [create_engine(url) for _ in range(5)]
    try:
        story = await _story(_repo(engine))
        results = await asyncio.gather(
            *(_repo(tab).add_scene(KIDS, story.id, parent_id=None, choice=None) for tab in tabs),
            return_exceptions=True,
        )
    finally:
        for tab in tabs:
            await tab.dispose()
    made = [r for r in results if isinstance(r, Scene)]
    assert len(made) == 1 and all(isinstance(r, InvalidRequest) for r in results if r not in made)
    tree = await _repo(engine).tree(KIDS, story.id)
    assert tree is not None and tree.story.scene_count == 1 and [s.id for s in tree.scenes] == [made[0].id]


async def test_ten_concurrent_adds_keep_the_scene_count_right(engine: Any) -> None:
    repo = _repo(engine)
    story = await _story(repo)
    root = await repo.add_scene(KIDS, story.id, parent_id=None, choice=None)
    before = await repo.get_story(KIDS, story.id)
    added = await asyncio.gather(
        *(repo.add_scene(KIDS, story.id, parent_id=root.id, choice=f"choice {i}") for i in range(10))
    )
    tree = await repo.tree(KIDS, story.id)
    assert tree is not None and tree.story.scene_count == 11 and len(tree.scenes) == 11
    assert before is not None and tree.story.updated_at > before.updated_at
    assert {s.id for s in tree.scenes[1:]} == {s.id for s in added} and len({s.id for s in added}) == 10
    assert {s.choice for s in await repo.children(KIDS, root.id)} == {f"choice {i}" for i in range(10)}


async def test_a_scene_is_written_and_found_by_its_jobs(engine: Any) -> None:
    repo = _repo(engine)
    story = await _story(repo)
    scene = await repo.add_scene(KIDS, story.id, parent_id=None, choice=None)
    attempts = [
        {"model": "ollama/llama3.2", "outcome": "error", "latency_ms": 12.5},
        {"model": "b", "ok": True},
    ]
    written = await repo.update_scene(
        KIDS,
        scene.id,
        {
            "title": "The door",
            "narrative": "It creaks.",
            "image_prompt": "a door in an oak",
            "choices": ("Open it", "Walk away"),
            "state": "written",
            "model_used": "ollama/llama3.2",
            "attempts": attempts,
            "image_job_id": "job_img",
            "video_job_id": "job_vid",
        },
    )
    assert (written.title, written.narrative, written.state) == ("The door", "It creaks.", "written")
    assert written.choices == ("Open it", "Walk away") and written.attempts == tuple(attempts)
    assert written.updated_at > scene.updated_at and written.created_at == scene.created_at
    assert await repo.get_scene(KIDS, scene.id) == written
    story_after = await repo.get_story(KIDS, story.id)
    assert story_after is not None and story_after.updated_at == written.updated_at

    other = await _story(repo, OTHER)
    theirs = await repo.add_scene(OTHER, other.id, parent_id=None, choice=None)
    await repo.update_scene(OTHER, theirs.id, {"image_job_id": "job_vid"})
    assert {s.id for s in await repo.scenes_by_job("job_vid")} == {scene.id, theirs.id}  # any tier
    assert [s.id for s in await repo.scenes_by_job("job_img")] == [scene.id]
    assert await repo.scenes_by_job("job_none") == []

    failed = await repo.update_scene(KIDS, scene.id, {"state": "failed", "error": "all models failed"})
    assert (failed.state, failed.error, failed.title) == ("failed", "all models failed", "The door")
    for wrong in ({"state": "done"}, {"depth": 3}, {"choices": "Open it"}, {"attempts": [1, 2]}):
        with pytest.raises(ValueError):
            await repo.update_scene(KIDS, scene.id, wrong)
    with pytest.raises(NotFound):
        await repo.update_scene(KIDS, "sc_nope", {"title": "x"})


async def test_search_matches_title_or_premise_case_insensitively_and_literally(engine: Any) -> None:
    repo = _repo(engine)
    titles = {
        "percent": ("100% Dragon", "A dragon counts."),
        "near_percent": ("100 dragons", "Many more."),
        "underscore": ("snake_case", "A python story."),
        "near_underscore": ("snakeXcase", "Not the same."),
        "premise": ("Untitled", "The DRAGON sleeps under Ärger hill."),
        "backslash": ("C:\\path", "a folder"),
    }
    ids = {key: (await _story(repo, title=t, premise=p)).id for key, (t, p) in titles.items()}

    async def found(q: str) -> set[str]:
        page = await repo.list_stories(KIDS, q=q, limit=100)
        assert page.total == len(page.items)
        return {key for key, story_id in ids.items() if story_id in {s.id for s in page.items}}

    assert await found("dragon") == {"percent", "near_percent", "premise"}
    assert await found("DrAgOn") == {"percent", "near_percent", "premise"}
    assert await found("0%") == {"percent"}
    assert await found("%") == {"percent"}
    assert await found("_") == {"underscore"}
    assert await found("e_c") == {"underscore"}
    assert await found("\\") == {"backslash"}
    assert await found("ärger") == {"premise"}  # folded here, so non-ASCII letters match on SQLite too
    assert await found("ÄRGER") == {"premise"}
    assert await found("  python ") == {"underscore"}
    assert await found("unicorn") == set()
    assert len(await found("")) == len(titles)


async def test_each_sort_orders_the_stories_and_breaks_ties_by_id(engine: Any) -> None:
    repo = _repo(engine)
    made = {}
    for day, title in enumerate(["beta", "Alpha", "gamma", "Delta"]):
        made[title] = await _story(repo, title=title, created_at=T0 + timedelta(days=day))
    for title, scenes in (("beta", 2), ("gamma", 3), ("Delta", 2)):
        parent = None
        for _ in range(scenes):
            parent = (await repo.add_scene(KIDS, made[title].id, parent_id=parent, choice=None)).id
    await repo.update_story(KIDS, made["Alpha"].id, {"saved": True})  # the last one changed
    by = {t: s.id for t, s in made.items()}

    assert await _ids(repo, sort="created") == [by["Delta"], by["gamma"], by["Alpha"], by["beta"]]
    # Each add bumped its story, and the update came last.
    assert await _ids(repo, sort="updated") == [by["Alpha"], by["Delta"], by["gamma"], by["beta"]]
    assert await _ids(repo, sort="title") == [by["Alpha"], by["beta"], by["Delta"], by["gamma"]]
    two = sorted([by["beta"], by["Delta"]])
    assert await _ids(repo, sort="scenes") == [by["gamma"], *two, by["Alpha"]]
    with pytest.raises(InvalidRequest) as refused:
        await repo.list_stories(KIDS, sort="random")
    assert refused.value.field == "sort"


async def test_pages_are_stable_and_only_saved_stories_are_listed_by_default(engine: Any) -> None:
    repo = _repo(engine)
    at = T0 + timedelta(days=3)
    saved = [(await _story(repo, title="same", created_at=at)).id for _ in range(7)]  # every sort ties
    draft = (await _story(repo, title="same", saved=False, created_at=at)).id
    for sort in ("updated", "created", "title", "scenes"):
        pages = [await repo.list_stories(KIDS, sort=sort, limit=3, offset=offset) for offset in (0, 3, 6)]
        assert [p.total for p in pages] == [7, 7, 7] and [len(p.items) for p in pages] == [3, 3, 1]
        assert [s.id for p in pages for s in p.items] == sorted(saved)  # ties by id, no repeats
        assert (pages[1].limit, pages[1].offset) == (3, 3)
    beyond = await repo.list_stories(KIDS, offset=50)
    assert beyond.items == () and beyond.total == 7
    everything = await repo.list_stories(KIDS, saved_only=False, limit=100)
    assert everything.total == 8 and draft in {s.id for s in everything.items}
    with pytest.raises(InvalidRequest):
        await repo.list_stories(KIDS, limit=0)
    with pytest.raises(InvalidRequest):
        await repo.list_stories(KIDS, offset=-1)


async def test_deleting_a_story_removes_its_scenes_and_answers_their_media_once(engine: Any) -> None:
    repo = _repo(engine)
    story, kept = await _story(repo), await _story(repo)
    root = await repo.add_scene(KIDS, story.id, parent_id=None, choice=None)
    left = await repo.add_scene(KIDS, story.id, parent_id=root.id, choice="a")
    right = await repo.add_scene(KIDS, story.id, parent_id=root.id, choice="b")
    await repo.add_scene(KIDS, story.id, parent_id=left.id, choice="c")  # no media
    await repo.update_scene(KIDS, root.id, {"image_asset_id": "img_root", "video_asset_id": "vid_root"})
    await repo.update_scene(KIDS, left.id, {"image_asset_id": "img_left"})
    await repo.update_scene(KIDS, right.id, {"image_asset_id": "img_left", "video_asset_id": "vid_right"})
    await repo.update_story(KIDS, story.id, {"cover_asset_id": "img_root"})
    kept_root = await repo.add_scene(KIDS, kept.id, parent_id=None, choice=None)
    await repo.update_scene(KIDS, kept_root.id, {"image_asset_id": "img_left"})

    freed = await repo.delete_story(KIDS, story.id)
    assert sorted(freed) == ["img_left", "img_root", "vid_right", "vid_root"] and freed[0] == "img_root"
    assert await repo.tree(KIDS, story.id) is None
    assert all([await repo.get_scene(KIDS, s.id) is None for s in (root, left, right)])
    assert await repo.media_in_use(freed) == {"img_left"}  # the kept story's scene still shows it
    kept_tree = await repo.tree(KIDS, kept.id)
    assert kept_tree is not None and [s.id for s in kept_tree.scenes] == [kept_root.id]


async def test_media_in_use_sees_covers_scenes_and_photos_in_every_tier(engine: Any) -> None:
    repo = _repo(engine)
    story = await _story(repo, OTHER)
    scene = await repo.add_scene(OTHER, story.id, parent_id=None, choice=None)
    await repo.update_story(OTHER, story.id, {"cover_asset_id": "img_cover"})
    await repo.update_scene(OTHER, scene.id, {"image_asset_id": "img_scene", "video_asset_id": "vid_scene"})
    await repo.create_character(KIDS, name="Fox", description="", photo_ids=["img_photo", "img_photo2"])
    asked = ["img_cover", "img_scene", "vid_scene", "img_photo", "img_free", "vid_free"]
    assert await repo.media_in_use(asked) == {"img_cover", "img_scene", "vid_scene", "img_photo"}
    assert await repo.media_in_use(iter(["img_free"])) == set()
    assert await repo.media_in_use([]) == set()
    many = [f"img_{i}" for i in range(1_200)] + ["img_scene"]  # more than one IN list
    assert await repo.media_in_use(many) == {"img_scene"}


async def test_characters_are_created_listed_by_name_updated_and_deleted(engine: Any) -> None:
    repo = _repo(engine)
    zed = await repo.create_character(KIDS, name="zed", description="a zebra", photo_ids=("img_z1", "img_z2"))
    amy = await repo.create_character(KIDS, name="Amy", description="an owl", photo_ids=[])
    bob = await repo.create_character(KIDS, name="bob", description="a bear", photo_ids=["img_b"])
    await repo.create_character(OTHER, name="Aaron", description="", photo_ids=[])
    assert zed.id.startswith("ch_") and len(zed.id) == 23 and zed.photo_ids == ("img_z1", "img_z2")
    assert await repo.get_character(KIDS, zed.id) == zed
    assert [c.name for c in await repo.list_characters(KIDS)] == ["Amy", "bob", "zed"]

    renamed = await repo.update_character(KIDS, zed.id, {"name": "Abe", "photo_ids": ["img_z2"]})
    assert (renamed.name, renamed.description, renamed.photo_ids) == ("Abe", "a zebra", ("img_z2",))
    assert renamed.updated_at > zed.updated_at and renamed.created_at == zed.created_at
    assert [c.id for c in await repo.list_characters(KIDS)] == [renamed.id, amy.id, bob.id]
    with pytest.raises(ValueError, match="not a character field: tier"):
        await repo.update_character(KIDS, zed.id, {"tier": OTHER})
    with pytest.raises(ValueError, match="photo_ids"):
        await repo.update_character(KIDS, zed.id, {"photo_ids": "img_z2"})

    assert await repo.delete_character(KIDS, zed.id) == ["img_z2"]
    assert await repo.get_character(KIDS, zed.id) is None
    assert [c.name for c in await repo.list_characters(KIDS)] == ["Amy", "bob"]
    with pytest.raises(NotFound):
        await repo.delete_character(KIDS, zed.id)
    with pytest.raises(NotFound):
        await repo.update_character(KIDS, zed.id, {"name": "x"})


def _story_schema(conn: Connection) -> dict[str, Any]:
    insp = inspect(conn)
    return {
        "tables": set(insp.get_table_names()),
        "fks": {
            (fk["constrained_columns"][0], fk["referred_table"], fk["options"].get("ondelete"))
            for fk in insp.get_foreign_keys("story_scenes")
        },
        "indexes": {
            (table, tuple(index["column_names"]))
            for table in ("stories", "story_scenes", "story_characters")
            for index in insp.get_indexes(table)
        },
    }


def _downgrade_to_0009(conn: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = conn
    command.downgrade(config, "0009")


async def test_the_migration_builds_the_keys_and_indexes_and_downgrades(engine: Any) -> None:
    async with engine.connect() as conn:
        schema = await conn.run_sync(_story_schema)
    assert schema["fks"] == {("story_id", "stories", "CASCADE"), ("parent_id", "story_scenes", None)}
    assert schema["indexes"] >= {
        ("stories", ("tier", "updated_at")),
        ("stories", ("tier", "created_at")),
        ("story_scenes", ("story_id",)),
        ("story_scenes", ("image_job_id",)),
        ("story_scenes", ("video_job_id",)),
        ("story_characters", ("tier",)),
    }
    async with engine.begin() as conn:
        await conn.run_sync(_downgrade_to_0009)
    async with engine.connect() as conn:
        left = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert not left & {"stories", "story_scenes", "story_characters"} and "video_projects" in left
    await migrate(engine)
    story = await _story(_repo(engine))
    assert (await _repo(engine).get_story(KIDS, story.id)) == story
