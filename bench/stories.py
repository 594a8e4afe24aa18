"""Story mode's gallery on an SQLite file: the first page of `list_stories` among 1,000 stories of a tier.

    ./scripts/bench stories        (or .venv/bin/python bench/stories.py [--repeats 200] [--stories 1000])

Builds a fresh SQLite file in a temp dir, migrated with the real migrations, and bulk-inserts through
SQLAlchemy Core exactly the rows `StoryRepository` writes (ids, casefolded search keys, scene counts):
1,000 stories in the tier `kids` and 1,000 more in `nsfw`, so the tier filter has as many rows to pass
over as it returns. Each story has 1 to 6 scenes, each a child of a random earlier one (so some stories
branch), about 3.5 per story; 90% of the stories are saved (the gallery lists only those). Titles and
premises are made-up words drawn by Zipf's law from a 2,000-word vocabulary, so a search narrows the
way it does on real text.

Times `StoryRepository` on `session_factory(create_engine(url))`, as the app opens it, in this process
(the database work of one gallery request, what the server spends beyond HTTP):

- `list_stories(tier, sort=..., limit=20)`, the first page, for each sort (updated, created, title,
  scenes); each call also counts every match (`total`).
- `list_stories(tier, q=...)` with a common word (in about 5% of the stories), and with a word that is in
  none (the search reads every story of the tier).
- a deep page (offset 480) of the default sort, for scale.

Baseline: `get_story` of one story by its primary key through the same repository, the floor every
call pays (a session, one SELECT, one domain object). Target: a first page within 50 ms (median).
Prints one markdown table (median of `--repeats` calls after a warm-up; CPU is the process's).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import platform
import random
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from made_up_words import vocabulary  # bench/ is on the path: the scripts run as files
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from timing import Timing, timed

from mmstudio.storage.db import create_engine, migrate, session_factory
from mmstudio.storage.story_repo import StoryRepository, fold, new_id
from mmstudio.storage.tables import Base

TIER, OTHER = "kids", "nsfw"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
VOCABULARY = 2_000
TARGET_MS = 50.0
BATCH = 2_000

STORIES = Base.metadata.tables["stories"]
SCENES = Base.metadata.tables["story_scenes"]


WORDS, CUMULATIVE = vocabulary(VOCABULARY)
COMMON = WORDS[30]  # in about 5% of the stories' titles or premises
ABSENT = "zzqx"  # no word has a "zz" or an "x" in it


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choices(WORDS, cum_weights=CUMULATIVE, k=n))


def story_rows(
    rng: random.Random, tier: str, count: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    stories: list[dict[str, Any]] = []
    scenes: list[dict[str, Any]] = []
    for n in range(count):
        story_id = new_id("st")
        created = T0 + timedelta(minutes=rng.randrange(0, 60 * 24 * 300))
        title, premise = words(rng, 3).capitalize(), words(rng, 12).capitalize() + "."
        chain: list[dict[str, Any]] = []
        for k in range(rng.randint(1, 6)):
            parent = rng.choice(chain) if chain else None
            at = created + timedelta(minutes=5 * k)
            chain.append(
                {
                    "id": new_id("sc"),
                    "story_id": story_id,
                    "tier": tier,
                    "parent_id": parent["id"] if parent else None,
                    "choice": words(rng, 4) if parent else None,
                    "depth": parent["depth"] + 1 if parent else 0,
                    "state": "written",
                    "title": words(rng, 3).capitalize(),
                    "narrative": words(rng, 120).capitalize() + ".",
                    "image_prompt": words(rng, 20),
                    "choices": [words(rng, 4) for _ in range(3)],
                    "error": None,
                    "model_used": "ollama/llama3.2",
                    "attempts": [{"model": "ollama/llama3.2", "outcome": "complete", "latency_ms": 900.0}],
                    "image_job_id": new_id("job"),
                    "video_job_id": None,
                    "image_asset_id": new_id("img"),
                    "video_asset_id": None,
                    "created_at": at,
                    "updated_at": at,
                }
            )
        scenes.extend(chain)
        stories.append(
            {
                "id": story_id,
                "tier": tier,
                "title": title,
                "title_key": fold(title),
                "premise": premise,
                "premise_key": fold(premise),
                "text_model": "ollama/llama3.2",
                "image_model": "openai/gpt-image-1",
                "video_model": None,
                "memory_mode": n % 3 == 0,
                "video_mode": False,
                "scene_count": len(chain),
                "cover_asset_id": chain[0]["image_asset_id"],
                "current_scene_id": chain[-1]["id"],
                "has_video": False,
                "saved": n % 10 != 0,
                "legacy_format": None,
                "created_at": created,
                "updated_at": chain[-1]["updated_at"],
            }
        )
    return stories, scenes


async def build(engine: AsyncEngine, count: int) -> tuple[int, int]:
    rng = random.Random(1)
    total_scenes = 0
    async with engine.begin() as conn:
        for tier in (TIER, OTHER):
            stories, scenes = story_rows(rng, tier, count)
            await conn.execute(insert(STORIES), stories)
            for start in range(0, len(scenes), BATCH):  # parents first: each chain is in order
                await conn.execute(insert(SCENES), scenes[start : start + BATCH])
            total_scenes += len(scenes)
    return count * 2, total_scenes


async def main(repeats: int, count: int) -> None:
    rows: list[tuple[str, Timing, float | None]] = []
    with tempfile.TemporaryDirectory(prefix="mmstudio-stories-bench-") as tmp:
        engine = create_engine(f"sqlite:///{Path(tmp) / 'db.sqlite'}")
        try:
            await migrate(engine)
            started = time.perf_counter()
            stories, scenes = await build(engine, count)
            print(
                f"built {stories:,} stories with {scenes:,} scenes in {time.perf_counter() - started:.1f} s"
            )
            repo = StoryRepository(session_factory(engine))

            first = await repo.list_stories(TIER, limit=20)
            saved = first.total
            assert len(first.items) == 20 and saved == count - count // 10, "unexpected shape"
            assert all(s.tier == TIER for s in first.items)
            tree = await repo.tree(TIER, first.items[0].id)
            assert tree is not None and len(tree.scenes) == tree.story.scene_count, "unexpected tree"
            probe = first.items[0].id

            baseline = await timed(lambda: repo.get_story(TIER, probe), repeats * 2)
            for sort in ("updated", "created", "title", "scenes"):
                page = await repo.list_stories(TIER, sort=sort, limit=20)
                assert len(page.items) == 20 and page.total == saved
                ms = await timed(functools.partial(repo.list_stories, TIER, sort=sort, limit=20), repeats)
                rows.append((f"first page (20 of {saved:,} saved), sort={sort}", ms, TARGET_MS))
            hits = (await repo.list_stories(TIER, q=COMMON, limit=20)).total
            ms = await timed(lambda: repo.list_stories(TIER, q=COMMON, limit=20), repeats)
            rows.append((f"search q={COMMON!r}: first page, {hits} of {saved:,} match", ms, TARGET_MS))
            assert (await repo.list_stories(TIER, q=ABSENT)).total == 0
            ms = await timed(lambda: repo.list_stories(TIER, q=ABSENT, limit=20), repeats)
            rows.append((f"search q={ABSENT!r}: nothing matches (reads the whole tier)", ms, TARGET_MS))
            ms = await timed(lambda: repo.list_stories(TIER, limit=20, offset=480), repeats)
            rows.append(("page 25 (offset 480), sort=updated", ms, None))
        finally:
            await engine.dispose()

    print()
    print(
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; {count:,} stories in tier "
        f"{TIER!r} and {count:,} in {OTHER!r}; median of {repeats} calls; baseline: get_story by primary key "
        f"(median of {repeats * 2}); CPU: the process's"
    )
    print()
    print("| measure | mmstudio ms | CPU ms | baseline ms | ratio | target | met |")
    print("|---|---|---|---|---|---|---|")
    base = baseline[0]
    print(
        f"| baseline: get_story by primary key | {base:.2f} | {baseline[1]:.2f} | {base:.3f} | 1.0x | - |  |"
    )
    for name, (wall, cpu), limit in rows:
        target = "-" if limit is None else f"≤ {limit:g} ms"
        met = "" if limit is None else ("yes" if wall <= limit else "**NO**")
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {base:.3f} | {wall / base:.1f}x | {target} | {met} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--stories", type=int, default=1_000, help="stories per tier")
    options = parser.parse_args()
    asyncio.run(main(options.repeats, options.stories))
