"""Story mode's tables: the stories of a tier, their scenes as a tree, and the tier's characters.

Every call names its tier and every statement filters by it, so an id of another tier is simply not
found (None, NotFound or nothing), never told apart from an id that does not exist.

Each write transaction starts with a write: adding a scene first bumps its story's `scene_count`, which
takes SQLite's write lock or the story row's lock in PostgreSQL before anything is read, so concurrent
adds to one story apply one after the other (the count stays right and a second first scene is refused
even when two race). A SQLite transaction that reads first could not take the write lock at all once
another writer had committed in between.

(Over 500 lines: one repository for the three tables, which share the tier rules and `media_in_use`.)
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, delete, func, or_, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mmstudio.domain.story.types import (
    SCENE_STATES,
    STORY_SORTS,
    Character,
    Scene,
    SceneState,
    Story,
    StoryPage,
    StoryTree,
)
from mmstudio.errors import InvalidRequest, NotFound
from mmstudio.storage._time import utc, utc_now
from mmstudio.storage.tables import StoryCharacterRow, StoryRow, StorySceneRow

# What update_story / update_scene / update_character may write (anything else is the caller's bug).
STORY_FIELDS = frozenset(
    {
        "title",
        "current_scene_id",
        "cover_asset_id",
        "has_video",
        "saved",
        "memory_mode",
        "video_mode",
        "text_model",
        "image_model",
        "video_model",
    }
)
SCENE_FIELDS = frozenset(
    {
        "title",
        "narrative",
        "image_prompt",
        "choices",
        "state",
        "error",
        "model_used",
        "attempts",
        "image_job_id",
        "video_job_id",
        "image_asset_id",
        "video_asset_id",
    }
)
CHARACTER_FIELDS = frozenset({"name", "description", "photo_ids"})
IN_CHUNK = 500  # ids per IN (...) list: far below SQLite's and asyncpg's bound-parameter limits


def new_id(prefix: str) -> str:
    return f"{prefix}_" + secrets.token_urlsafe(15)


def fold(text: str) -> str:
    """The form search and the A-Z sort compare (Unicode casefolding, done here, not by the database)."""
    return text.casefold()


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _story(row: StoryRow) -> Story:
    return Story(
        id=row.id,
        tier=row.tier,
        title=row.title,
        premise=row.premise,
        text_model=row.text_model,
        image_model=row.image_model,
        video_model=row.video_model,
        memory_mode=row.memory_mode,
        video_mode=row.video_mode,
        created_at=utc(row.created_at),
        updated_at=utc(row.updated_at),
        scene_count=row.scene_count,
        cover_asset_id=row.cover_asset_id,
        current_scene_id=row.current_scene_id,
        has_video=row.has_video,
        saved=row.saved,
        legacy_format=row.legacy_format,
    )


def _scene(row: StorySceneRow) -> Scene:
    return Scene(
        id=row.id,
        story_id=row.story_id,
        tier=row.tier,
        parent_id=row.parent_id,
        choice=row.choice,
        depth=row.depth,
        state=cast(SceneState, row.state),  # written only from SCENE_STATES
        created_at=utc(row.created_at),
        updated_at=utc(row.updated_at),
        title=row.title,
        narrative=row.narrative,
        image_prompt=row.image_prompt,
        choices=tuple(row.choices or ()),
        error=row.error,
        model_used=row.model_used,
        attempts=tuple(dict(a) for a in row.attempts or ()),
        image_job_id=row.image_job_id,
        video_job_id=row.video_job_id,
        image_asset_id=row.image_asset_id,
        video_asset_id=row.video_asset_id,
    )


def _character(row: StoryCharacterRow) -> Character:
    return Character(
        id=row.id,
        tier=row.tier,
        name=row.name,
        description=row.description,
        photo_ids=tuple(row.photo_ids or ()),
        created_at=utc(row.created_at),
        updated_at=utc(row.updated_at),
    )


class StoryRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    # -- stories -----------------------------------------------------------------------------------

    async def create_story(
        self,
        tier: str,
        *,
        premise: str,
        title: str,
        text_model: str,
        image_model: str,
        video_model: str | None,
        memory_mode: bool,
        video_mode: bool,
        saved: bool = False,
        legacy_format: int | None = None,
        created_at: datetime | None = None,
    ) -> Story:
        """A new story without scenes; `created_at` (an import's) is also its `updated_at`."""
        now = utc(created_at) if created_at is not None else utc_now()
        row = StoryRow(
            id=new_id("st"),
            tier=tier,
            title=title,
            title_key=fold(title),
            premise=premise,
            premise_key=fold(premise),
            text_model=text_model,
            image_model=image_model,
            video_model=video_model,
            memory_mode=memory_mode,
            video_mode=video_mode,
            scene_count=0,
            cover_asset_id=None,
            current_scene_id=None,
            has_video=False,
            saved=saved,
            legacy_format=legacy_format,
            created_at=now,
            updated_at=now,
        )
        async with self._sessions() as session, session.begin():
            session.add(row)
        return _story(row)

    async def get_story(self, tier: str, story_id: str) -> Story | None:
        async with self._sessions() as session:
            row = await session.scalar(select(StoryRow).where(*_story_is(tier, story_id)))
            return _story(row) if row is not None else None

    async def update_story(self, tier: str, story_id: str, fields: Mapping[str, Any]) -> Story:
        """Write exactly the given fields (see STORY_FIELDS) and bump `updated_at`."""
        values = _checked(fields, STORY_FIELDS, "story")
        if "title" in values:
            values["title_key"] = fold(values["title"])
        async with self._sessions() as session, session.begin():
            row = await session.scalar(
                update(StoryRow)
                .where(*_story_is(tier, story_id))
                .values(**values, updated_at=utc_now())
                .returning(StoryRow)
            )
            if row is None:
                raise _no_story(story_id)
        return _story(row)

    async def delete_story(self, tier: str, story_id: str) -> list[str]:
        """Delete the story and every scene; answer the media ids its cover and scenes referenced (each
        once), so the caller can delete the ones nothing else uses (`media_in_use`)."""
        async with self._sessions() as session, session.begin():
            # One statement removes the whole tree, so the scenes' own parent key never blocks it.
            scenes = await session.execute(
                delete(StorySceneRow)
                .where(StorySceneRow.story_id == story_id, StorySceneRow.tier == tier)
                .returning(StorySceneRow.image_asset_id, StorySceneRow.video_asset_id)
                .execution_options(synchronize_session=False)
            )
            referenced = [asset for pair in scenes.all() for asset in pair]
            story = await session.execute(
                delete(StoryRow)
                .where(*_story_is(tier, story_id))
                .returning(StoryRow.cover_asset_id)
                .execution_options(synchronize_session=False)
            )
            cover = story.first()
            if cover is None:
                raise _no_story(story_id)
        return list(dict.fromkeys(a for a in (cover[0], *referenced) if a is not None))

    async def list_stories(
        self,
        tier: str,
        *,
        q: str | None = None,
        sort: str = "updated",
        limit: int = 20,
        offset: int = 0,
        saved_only: bool = True,
    ) -> StoryPage:
        """One page of the tier's stories. `q` is a case-insensitive substring of the title or the
        premise (matched literally, `%` and `_` included); ties in `sort` are broken by id."""
        if sort not in STORY_SORTS:
            raise InvalidRequest(f"unknown sort {sort!r}; allowed: {', '.join(STORY_SORTS)}", field="sort")
        if limit < 1:
            raise InvalidRequest("limit must be at least 1", field="limit")
        if offset < 0:
            raise InvalidRequest("offset must not be negative", field="offset")
        conditions: list[ColumnElement[bool]] = [StoryRow.tier == tier]
        if saved_only:
            conditions.append(StoryRow.saved.is_(True))
        words = (q or "").strip()
        if words:
            pattern = _like(fold(words))
            conditions.append(
                or_(
                    StoryRow.title_key.like(pattern, escape="\\"),
                    StoryRow.premise_key.like(pattern, escape="\\"),
                )
            )
        async with self._sessions() as session:
            total = await session.scalar(select(func.count()).select_from(StoryRow).where(*conditions))
            rows = await session.scalars(
                select(StoryRow)
                .where(*conditions)
                .order_by(*_order(sort, session.get_bind().dialect.name))
                .limit(limit)
                .offset(offset)
            )
            items = tuple(_story(row) for row in rows)
        return StoryPage(items=items, total=total or 0, limit=limit, offset=offset)

    # -- scenes ------------------------------------------------------------------------------------

    async def add_scene(
        self, tier: str, story_id: str, *, parent_id: str | None, choice: str | None
    ) -> Scene:
        """A new scene in state "writing" under `parent_id` (None only for the story's first scene)."""
        now = utc_now()
        async with self._sessions() as session, session.begin():
            bumped = await session.execute(
                update(StoryRow)
                .where(*_story_is(tier, story_id))
                .values(scene_count=StoryRow.scene_count + 1, updated_at=now)
                .returning(StoryRow.id)
                .execution_options(synchronize_session=False)
            )
            if bumped.first() is None:
                raise _no_story(story_id)
            if parent_id is None:
                root = await session.scalar(
                    select(StorySceneRow.id)
                    .where(StorySceneRow.story_id == story_id, StorySceneRow.parent_id.is_(None))
                    .limit(1)
                )
                if root is not None:
                    raise InvalidRequest(
                        "this story has its first scene already; a new scene needs the parent_id of the "
                        "scene whose choice it follows",
                        field="parent_id",
                    )
                depth = 0
            else:
                parent_depth = await session.scalar(
                    select(StorySceneRow.depth).where(
                        StorySceneRow.id == parent_id,
                        StorySceneRow.story_id == story_id,
                        StorySceneRow.tier == tier,
                    )
                )
                if parent_depth is None:
                    raise NotFound(f"no scene {parent_id!r} in story {story_id!r}")
                depth = parent_depth + 1
            row = StorySceneRow(
                id=new_id("sc"),
                story_id=story_id,
                tier=tier,
                parent_id=parent_id,
                choice=choice,
                depth=depth,
                state="writing",
                title="",
                narrative="",
                image_prompt="",
                choices=[],
                error=None,
                model_used=None,
                attempts=[],
                created_at=now,
                updated_at=now,
            )
            session.add(row)
        return _scene(row)

    async def update_scene(self, tier: str, scene_id: str, fields: Mapping[str, Any]) -> Scene:
        """Write exactly the given fields (see SCENE_FIELDS); bumps the scene's and its story's
        `updated_at`."""
        values = _scene_values(fields)
        now = utc_now()
        async with self._sessions() as session, session.begin():
            # The story first: the lock order add_scene takes, so the two never wait on each other.
            of_scene = select(StorySceneRow.story_id).where(*_scene_is(tier, scene_id)).scalar_subquery()
            await session.execute(
                update(StoryRow)
                .where(StoryRow.id == of_scene, StoryRow.tier == tier)
                .values(updated_at=now)
                .execution_options(synchronize_session=False)
            )
            row = await session.scalar(
                update(StorySceneRow)
                .where(*_scene_is(tier, scene_id))
                .values(**values, updated_at=now)
                .returning(StorySceneRow)
            )
            if row is None:
                raise _no_scene(scene_id)
        return _scene(row)

    async def get_scene(self, tier: str, scene_id: str) -> Scene | None:
        async with self._sessions() as session:
            row = await session.scalar(select(StorySceneRow).where(*_scene_is(tier, scene_id)))
            return _scene(row) if row is not None else None

    async def tree(self, tier: str, story_id: str) -> StoryTree | None:
        """The story and every scene of every branch, parents before children."""
        async with self._sessions() as session:
            story = await session.scalar(select(StoryRow).where(*_story_is(tier, story_id)))
            if story is None:
                return None
            rows = await session.scalars(
                select(StorySceneRow)
                .where(StorySceneRow.story_id == story_id, StorySceneRow.tier == tier)
                .order_by(StorySceneRow.depth, StorySceneRow.created_at, StorySceneRow.id)
            )
            return StoryTree(story=_story(story), scenes=tuple(_scene(row) for row in rows))

    async def children(self, tier: str, scene_id: str) -> list[Scene]:
        """The scenes that follow `scene_id` (one per choice taken), oldest first."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(StorySceneRow)
                .where(StorySceneRow.parent_id == scene_id, StorySceneRow.tier == tier)
                .order_by(StorySceneRow.created_at, StorySceneRow.id)
            )
            return [_scene(row) for row in rows]

    async def scenes_by_job(self, job_id: str) -> list[Scene]:
        """The scenes whose image or video `job_id` makes, in any tier (the worker records outputs)."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(StorySceneRow)
                .where(or_(StorySceneRow.image_job_id == job_id, StorySceneRow.video_job_id == job_id))
                .order_by(StorySceneRow.created_at, StorySceneRow.id)
            )
            return [_scene(row) for row in rows]

    async def fail_unfinished(self, error: str) -> int:
        """Scenes left ``writing`` (a process stopped mid-scene) become ``failed`` with `error`, in
        every tier (at start-up, before any scene is written)."""
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(StorySceneRow)
                .where(StorySceneRow.state == "writing")
                .values(state="failed", error=error, updated_at=utc_now())
            )
        return int(getattr(result, "rowcount", 0) or 0)

    # -- characters --------------------------------------------------------------------------------

    async def create_character(
        self, tier: str, *, name: str, description: str, photo_ids: Sequence[str]
    ) -> Character:
        now = utc_now()
        row = StoryCharacterRow(
            id=new_id("ch"),
            tier=tier,
            name=name,
            description=description,
            photo_ids=_strings(photo_ids, "photo_ids"),
            created_at=now,
            updated_at=now,
        )
        async with self._sessions() as session, session.begin():
            session.add(row)
        return _character(row)

    async def get_character(self, tier: str, character_id: str) -> Character | None:
        async with self._sessions() as session:
            row = await session.scalar(select(StoryCharacterRow).where(*_character_is(tier, character_id)))
            return _character(row) if row is not None else None

    async def list_characters(self, tier: str) -> list[Character]:
        """The tier's characters by name, case-insensitively (folded here, the same on every database)."""
        async with self._sessions() as session:
            rows = await session.scalars(select(StoryCharacterRow).where(StoryCharacterRow.tier == tier))
            found = [_character(row) for row in rows]
        return sorted(found, key=lambda c: (fold(c.name), c.id))

    async def update_character(self, tier: str, character_id: str, fields: Mapping[str, Any]) -> Character:
        values = _checked(fields, CHARACTER_FIELDS, "character")
        if "photo_ids" in values:
            values["photo_ids"] = _strings(values["photo_ids"], "photo_ids")
        async with self._sessions() as session, session.begin():
            row = await session.scalar(
                update(StoryCharacterRow)
                .where(*_character_is(tier, character_id))
                .values(**values, updated_at=utc_now())
                .returning(StoryCharacterRow)
            )
            if row is None:
                raise _no_character(character_id)
        return _character(row)

    async def delete_character(self, tier: str, character_id: str) -> list[str]:
        """Delete the character; answer its photo ids (for the caller to check with `media_in_use`)."""
        async with self._sessions() as session, session.begin():
            deleted = await session.execute(
                delete(StoryCharacterRow)
                .where(*_character_is(tier, character_id))
                .returning(StoryCharacterRow.photo_ids)
                .execution_options(synchronize_session=False)
            )
            photos = deleted.first()
            if photos is None:
                raise _no_character(character_id)
        return list(photos[0] or ())

    # -- media -------------------------------------------------------------------------------------

    async def media_in_use(self, asset_ids: Iterable[str]) -> set[str]:
        """Which of `asset_ids` a story cover, a scene's image or video, or a character's photos still
        reference, in any tier."""
        wanted = {a for a in asset_ids if a}
        if not wanted:
            return set()
        used: set[str] = set()
        async with self._sessions() as session:
            for chunk in _chunks(sorted(wanted)):
                used.update(
                    await session.scalars(
                        union_all(
                            select(StoryRow.cover_asset_id).where(StoryRow.cover_asset_id.in_(chunk)),
                            select(StorySceneRow.image_asset_id).where(
                                StorySceneRow.image_asset_id.in_(chunk)
                            ),
                            select(StorySceneRow.video_asset_id).where(
                                StorySceneRow.video_asset_id.in_(chunk)
                            ),
                        )
                    )
                )
            # Photo lists are JSON: read them all (a tier has a handful of characters, not thousands).
            for photos in await session.scalars(select(StoryCharacterRow.photo_ids)):
                used.update(wanted.intersection(photos or ()))
        return used


# -- helpers ---------------------------------------------------------------------------------------


def _story_is(tier: str, story_id: str) -> tuple[ColumnElement[bool], ...]:
    return StoryRow.id == story_id, StoryRow.tier == tier


def _scene_is(tier: str, scene_id: str) -> tuple[ColumnElement[bool], ...]:
    return StorySceneRow.id == scene_id, StorySceneRow.tier == tier


def _character_is(tier: str, character_id: str) -> tuple[ColumnElement[bool], ...]:
    return StoryCharacterRow.id == character_id, StoryCharacterRow.tier == tier


def _order(sort: str, dialect: str) -> tuple[Any, ...]:
    # Code-point order for the text keys, as SQLite compares them: PostgreSQL's default collation follows
    # the server's locale (en_US ignores spaces and punctuation, for one), so pages would differ.
    def binary(column: Any) -> Any:
        return column.collate("C") if dialect == "postgresql" else column

    if sort == "title":
        return binary(StoryRow.title_key), binary(StoryRow.id)
    column = {
        "updated": StoryRow.updated_at,
        "created": StoryRow.created_at,
        "scenes": StoryRow.scene_count,
    }[sort]
    return column.desc(), binary(StoryRow.id)


def _checked(fields: Mapping[str, Any], allowed: frozenset[str], what: str) -> dict[str, Any]:
    """`fields` as column values; a name outside `allowed` is the caller's bug, not the user's input."""
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise ValueError(f"not a {what} field: {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
    return dict(fields)


def _scene_values(fields: Mapping[str, Any]) -> dict[str, Any]:
    values = _checked(fields, SCENE_FIELDS, "scene")
    if "state" in values and values["state"] not in SCENE_STATES:
        raise ValueError(f"not a scene state: {values['state']!r} (allowed: {', '.join(SCENE_STATES)})")
    if "choices" in values:
        values["choices"] = _strings(values["choices"], "choices")
    if "attempts" in values:
        attempts = values["attempts"]
        if (
            isinstance(attempts, str | Mapping)
            or not isinstance(attempts, Sequence)
            or not all(isinstance(a, Mapping) for a in attempts)
        ):
            raise ValueError("attempts must be a list of dicts")
        values["attempts"] = [dict(a) for a in attempts]
    return values


def _strings(value: Any, name: str) -> list[str]:
    """A sequence of strings as a JSON list (a bare string is refused: it would become its letters)."""
    if (
        isinstance(value, str)
        or not isinstance(value, Sequence)
        or not all(isinstance(v, str) for v in value)
    ):
        raise ValueError(f"{name} must be a list of strings")
    return list(value)


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), IN_CHUNK):
        yield items[start : start + IN_CHUNK]


def _no_story(story_id: str) -> NotFound:
    return NotFound(f"no story {story_id!r}")


def _no_scene(scene_id: str) -> NotFound:
    return NotFound(f"no scene {scene_id!r}")


def _no_character(character_id: str) -> NotFound:
    return NotFound(f"no character {character_id!r}")
