"""The Chat Studio repository on SQLite and PostgreSQL: trees, listing, search, profiles, metrics."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, insert, select, text

from mmstudio.domain.chat.store import ChatStore
from mmstudio.domain.chat.types import (
    ConversationUpdate,
    Message,
    MessageMetric,
    MessageProgress,
    NewMessage,
    Part,
)
from mmstudio.errors import InvalidRequest, NotFound
from mmstudio.storage.chat_repo import ChatRepository, fts5_query, search_words, tsquery
from mmstudio.storage.runner import open_runner
from mmstudio.storage.tables import Base

T0 = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)  # in the past: "now" is always later
HOSTILE = [
    '"',
    '""',
    "'",
    "''",
    "a'b",
    'say "hi',
    "*",
    "pyth*",
    "*pyth",
    "NEAR",
    "NEAR(python rust)",
    "python NEAR/2 rust",
    "AND",
    "python AND",
    "OR python",
    "NOT",
    "-python",
    "python -rust",
    "(python",
    "python)",
    "((()))",
    "title:python",
    "{title}: python",
    "^python",
    "python:*",
    "python & rust | !go",
    "<->",
    "\\",
    "\\'",
    "%_",
    "; DROP TABLE messages; --",
    "🐍",
    "🐍 python 🦀",
    "日本",
    "привет",
    "naïve café",
    "x" * 5000,
    " ".join(["word"] * 200),
    "\x00",
    "a\tb\nc",
    "x² Ⅻ ǅ ﬁ ٣ \u3007 e\u0301",  # \w characters the tokenizers may split or drop
    "_ __ a_",
]


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def parts(body: str) -> list[Part]:
    return [{"type": "text", "text": body}]


def msg(body: str, parent: str | None = None, minutes: float | None = None, **fields: Any) -> NewMessage:
    role = fields.pop("role", "user")
    created = at(minutes) if minutes is not None else None
    return NewMessage(role=role, parts=parts(body), parent_id=parent, created_at=created, **fields)


@pytest.fixture
async def repo(engine: Any) -> AsyncIterator[ChatRepository]:
    db = open_runner(engine)  # on SQLite its own threads and connections, as in production
    yield ChatRepository(db)
    await db.close()


def shape(branch: list[Message]) -> list[tuple[str, int, int]]:
    return [(m.text, m.sibling_index, m.sibling_count) for m in branch]


async def build_tree(repo: ChatRepository) -> tuple[str, dict[str, str]]:
    """A conversation with branches; returns its id and message ids by text.

    u1 ─┬─ a1 ─┬─ u2 ─┬─ a2          roots: u1, r2 (two roots: root siblings)
        │      │      └─ a2b         ties: t1 and t2 share created_at (seq decides)
        │      └─ u2b ── a3
        └─ a1b
    r2 ─┬─ t1
        └─ t2
    """
    conversation = await repo.create_conversation(title="Tree", created_at=at(-1))
    cid = conversation.id
    ids: dict[str, str] = {}

    async def add(name: str, parent: str | None, minutes: float, role: str = "user") -> None:
        message = msg(name, ids[parent] if parent else None, minutes, role=role)
        ids[name] = (await repo.add_message(cid, message)).id

    await add("u1", None, 0)
    await add("a1", "u1", 1, "assistant")
    await add("u2", "a1", 2)
    await add("a2", "u2", 3, "assistant")
    await add("a2b", "u2", 4, "assistant")
    await add("u2b", "a1", 5)
    await add("a3", "u2b", 6, "assistant")
    await add("a1b", "u1", 7, "assistant")
    await add("r2", None, 8)
    await add("t1", "r2", 9, "assistant")
    await add("t2", "r2", 9, "assistant")
    return cid, ids


# -- conversations --------------------------------------------------------------------------------


async def test_repository_implements_the_store_protocol(repo: ChatRepository) -> None:
    store: ChatStore = repo
    assert store is repo


async def test_create_and_get_conversation(repo: ChatRepository) -> None:
    created = await repo.create_conversation()
    assert uuid.UUID(created.id).version == 4
    assert created.title == "New chat"
    assert (created.model, created.prompt_profile_id, created.current_leaf_id) == (None, None, None)
    assert created.routing_profile == "direct"
    assert not created.pinned and not created.archived
    assert created.created_at.tzinfo is not None and created.created_at == created.updated_at
    got = await repo.get_conversation(created.id)
    assert got == created
    assert got.created_at.utcoffset() == timedelta(0)


async def test_create_conversation_with_id_and_time_in_another_zone(repo: ChatRepository) -> None:
    local = datetime(2026, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    created = await repo.create_conversation(
        id="imported-1", title="Imported", model="ollama/llama3.2", routing_profile="agent", created_at=local
    )
    got = await repo.get_conversation("imported-1")
    assert got.created_at == local == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert got.created_at.utcoffset() == timedelta(0)
    assert (got.title, got.model, got.routing_profile) == ("Imported", "ollama/llama3.2", "agent")
    assert got == created
    for taken_or_bad in ("imported-1", "x" * 37, ""):
        with pytest.raises(InvalidRequest) as error:
            await repo.create_conversation(id=taken_or_bad)
        assert error.value.field == "id"


async def test_create_conversation_rejects_bad_input(repo: ChatRepository) -> None:
    with pytest.raises(InvalidRequest) as error:
        await repo.create_conversation(routing_profile="sideways")  # type: ignore[arg-type]
    assert error.value.field == "routing_profile"
    with pytest.raises(NotFound, match="prompt profile nope not found"):
        await repo.create_conversation(prompt_profile_id="nope")


async def test_update_conversation_changes_only_given_fields(repo: ChatRepository) -> None:
    profile = await repo.create_prompt_profile(
        name="Terse", system_prompt="Be terse.", parameters={}, memory=False
    )
    conversation = await repo.create_conversation(model="openai/gpt-4o", created_at=at(0))
    updated = await repo.update_conversation(
        conversation.id, ConversationUpdate(title="Renamed", prompt_profile_id=profile.id, pinned=True)
    )
    assert (updated.title, updated.model, updated.prompt_profile_id) == (
        "Renamed",
        "openai/gpt-4o",
        profile.id,
    )
    assert updated.pinned and not updated.archived
    assert updated.updated_at > conversation.updated_at
    assert updated.created_at == conversation.created_at
    again = await repo.update_conversation(
        conversation.id,
        ConversationUpdate(
            clear_model=True, clear_prompt_profile=True, routing_profile="tools+data", archived=True
        ),
    )
    assert (again.title, again.model, again.prompt_profile_id) == ("Renamed", None, None)
    assert (again.routing_profile, again.pinned, again.archived) == ("tools+data", True, True)
    assert await repo.get_conversation(conversation.id) == again
    long = await repo.update_conversation(conversation.id, ConversationUpdate(title="x" * 400))
    assert long.title == "x" * 300


async def test_update_conversation_errors(repo: ChatRepository) -> None:
    conversation = await repo.create_conversation()
    with pytest.raises(NotFound, match="conversation nope not found"):
        await repo.update_conversation("nope", ConversationUpdate(title="x"))
    with pytest.raises(NotFound, match="prompt profile gone not found"):
        await repo.update_conversation(conversation.id, ConversationUpdate(prompt_profile_id="gone"))
    with pytest.raises(InvalidRequest) as error:
        await repo.update_conversation(conversation.id, ConversationUpdate(routing_profile="x"))  # type: ignore[arg-type]
    assert error.value.field == "routing_profile"
    assert (await repo.get_conversation(conversation.id)).title == "New chat"


async def test_unknown_conversation_is_not_found_everywhere(repo: ChatRepository) -> None:
    with pytest.raises(NotFound, match="conversation nope not found"):
        await repo.get_conversation("nope")
    with pytest.raises(NotFound, match="conversation nope not found"):
        await repo.delete_conversation("nope")
    with pytest.raises(NotFound, match="conversation nope not found"):
        await repo.active_branch("nope")
    with pytest.raises(NotFound, match="conversation nope not found"):
        await repo.all_messages("nope")
    with pytest.raises(NotFound, match="conversation nope not found"):
        await repo.add_message("nope", msg("hi"))
    with pytest.raises(NotFound, match="conversation nope not found"):
        await repo.set_current_leaf("nope", "whatever")
    with pytest.raises(NotFound, match="conversation nope not found"):
        await repo.conversation_with_branch("nope")


# -- messages and trees -----------------------------------------------------------------------------


async def test_add_message_stores_everything_and_bumps_the_conversation(repo: ChatRepository) -> None:
    conversation = await repo.create_conversation(created_at=at(0))
    attempts = [{"model": "openai/gpt-4o", "outcome": "error"}, {"model": "ollama/llama3.2", "outcome": "ok"}]
    content: list[Part] = [
        {"type": "text", "text": "Hello "},
        {"type": "image", "url": "https://example.test/cat.png"},
        {"type": "text", "text": "world"},
    ]
    added = await repo.add_message(
        conversation.id,
        NewMessage(
            role="assistant",
            parts=content,
            status="complete",
            model_requested="openai/gpt-4o",
            created_at=at(5),
            extra={
                "model": "ollama/llama3.2",
                "provider": "ollama",
                "input_tokens": 12,
                "output_tokens": 34,
                "latency_ms": 456.5,
                "ttft_ms": 78.25,
                "attempts": attempts,
                "error": None,
                "updated_at": at(6),
            },
        ),
    )
    got = await repo.get_message(added.id)
    assert got == added
    assert got.text == "Hello world" and got.parts == content
    assert (got.model_requested, got.model, got.provider) == ("openai/gpt-4o", "ollama/llama3.2", "ollama")
    assert (got.input_tokens, got.output_tokens, got.latency_ms, got.ttft_ms) == (12, 34, 456.5, 78.25)
    assert got.attempts == attempts
    assert (got.created_at, got.updated_at) == (at(5), at(6))
    assert got.created_at.tzinfo is not None
    after = await repo.get_conversation(conversation.id)
    assert after.current_leaf_id == added.id
    assert after.updated_at == at(6)


async def test_text_column_is_the_plain_text_of_the_parts(repo: ChatRepository, engine: Any) -> None:
    conversation = await repo.create_conversation()
    content: list[Part] = [
        {"type": "text", "text": "look: "},
        {"type": "tool_call", "id": "c1", "name": "calc", "arguments": {"x": "hidden"}},
        {"type": "text", "text": "done"},
    ]
    added = await repo.add_message(conversation.id, NewMessage(role="assistant", parts=content))
    messages = Base.metadata.tables["messages"]
    async with engine.connect() as conn:
        stored = await conn.scalar(select(messages.c.text).where(messages.c.id == added.id))
    assert stored == "look: done"


async def test_live_messages_get_now_and_imports_never_move_updated_at_back(repo: ChatRepository) -> None:
    conversation = await repo.create_conversation()
    before = datetime.now(UTC)
    live = await repo.add_message(conversation.id, msg("now"))
    assert before <= live.created_at == live.updated_at <= datetime.now(UTC)
    bumped = (await repo.get_conversation(conversation.id)).updated_at
    assert bumped == live.created_at
    old = await repo.add_message(conversation.id, msg("old", live.id, minutes=-60 * 24 * 365))
    assert old.created_at == at(-60 * 24 * 365)
    assert (await repo.get_conversation(conversation.id)).updated_at == bumped


async def test_make_current_false_keeps_the_active_branch(repo: ChatRepository) -> None:
    conversation = await repo.create_conversation(created_at=at(0))
    first = await repo.add_message(conversation.id, msg("first", minutes=1))
    await repo.add_message(conversation.id, msg("side", first.id, minutes=2), make_current=False)
    after = await repo.get_conversation(conversation.id)
    assert after.current_leaf_id == first.id
    assert after.updated_at == at(2)  # still bumped


async def test_add_message_validates_parent_role_status_and_extra(repo: ChatRepository) -> None:
    mine = await repo.create_conversation()
    other = await repo.create_conversation()
    foreign = await repo.add_message(other.id, msg("elsewhere"))
    with pytest.raises(NotFound, match="message missing not found"):
        await repo.add_message(mine.id, msg("x", "missing"))
    with pytest.raises(
        InvalidRequest, match=f"message {foreign.id} belongs to another conversation"
    ) as error:
        await repo.add_message(mine.id, msg("x", foreign.id))
    assert error.value.field == "parent_id"
    with pytest.raises(InvalidRequest) as error:
        await repo.add_message(mine.id, NewMessage(role="robot", parts=parts("x")))  # type: ignore[arg-type]
    assert error.value.field == "role"
    with pytest.raises(InvalidRequest) as error:
        await repo.add_message(mine.id, NewMessage(role="user", parts=parts("x"), status="done"))  # type: ignore[arg-type]
    assert error.value.field == "status"
    with pytest.raises(InvalidRequest, match="ttft") as error:
        await repo.add_message(mine.id, NewMessage(role="user", parts=parts("x"), extra={"ttft": 1}))
    assert error.value.field == "extra"
    with pytest.raises(InvalidRequest) as error:
        await repo.add_message(mine.id, NewMessage(role="user", parts=parts("x"), id="x" * 37))
    assert error.value.field == "id"
    assert await repo.all_messages(mine.id) == []
    assert (await repo.get_conversation(mine.id)).current_leaf_id is None


async def test_add_message_with_a_given_id_and_a_duplicate(repo: ChatRepository) -> None:
    conversation = await repo.create_conversation()
    added = await repo.add_message(conversation.id, NewMessage(role="user", parts=parts("a"), id="m-1"))
    assert added.id == "m-1"
    with pytest.raises(InvalidRequest, match="message m-1 already exists") as error:
        await repo.add_message(conversation.id, NewMessage(role="user", parts=parts("b"), id="m-1"))
    assert error.value.field == "id"
    assert [m.text for m in await repo.all_messages(conversation.id)] == ["a"]


async def test_add_message_reports_its_place_among_siblings(repo: ChatRepository) -> None:
    conversation = await repo.create_conversation()
    root = await repo.add_message(conversation.id, msg("root", minutes=0))
    assert (root.sibling_index, root.sibling_count) == (1, 1)
    first = await repo.add_message(conversation.id, msg("a", root.id, minutes=1))
    second = await repo.add_message(conversation.id, msg("b", root.id, minutes=2))
    same_time = await repo.add_message(conversation.id, msg("c", root.id, minutes=2))
    earlier = await repo.add_message(conversation.id, msg("d", root.id, minutes=0.5))  # an import
    assert [(m.sibling_index, m.sibling_count) for m in (first, second, same_time, earlier)] == [
        (1, 1),
        (2, 2),
        (3, 3),
        (1, 4),
    ]
    second_root = await repo.add_message(conversation.id, msg("root 2", minutes=3))
    assert (second_root.sibling_index, second_root.sibling_count) == (2, 2)
    listed = {m.text: (m.sibling_index, m.sibling_count) for m in await repo.all_messages(conversation.id)}
    assert listed == {"root": (1, 2), "root 2": (2, 2), "d": (1, 4), "a": (2, 4), "b": (3, 4), "c": (4, 4)}


async def test_add_turn_stores_the_question_and_its_pending_answer_at_once(repo: ChatRepository) -> None:
    conversation = await repo.create_conversation(created_at=at(0))
    first = await repo.add_message(conversation.id, msg("earlier question", minutes=1))
    question, answer = await repo.add_turn(
        conversation.id,
        msg("again", first.id),
        NewMessage(role="assistant", parts=[], status="pending", model_requested="openai/gpt-4o"),
    )
    assert (question.parent_id, answer.parent_id) == (first.id, question.id)
    assert (question.role, question.text, answer.role, answer.status) == (
        "user",
        "again",
        "assistant",
        "pending",
    )
    assert answer.model_requested == "openai/gpt-4o" and answer.created_at >= question.created_at
    assert await repo.get_message(question.id) == question
    assert await repo.get_message(answer.id) == answer
    after = await repo.get_conversation(conversation.id)
    assert after.current_leaf_id == answer.id and after.updated_at == answer.updated_at
    assert shape(await repo.active_branch(conversation.id)) == [
        ("earlier question", 1, 1),
        ("again", 1, 1),
        ("", 1, 1),
    ]
    # A second version of the question: its place among siblings, as add_message reports it.
    edited, _ = await repo.add_turn(
        conversation.id, msg("again, edited", first.id), NewMessage("assistant", [])
    )
    assert (edited.sibling_index, edited.sibling_count) == (2, 2)
    root, _ = await repo.add_turn(conversation.id, msg("a new root"), NewMessage("assistant", []))
    assert root.parent_id is None and (root.sibling_index, root.sibling_count) == (2, 2)


async def test_add_turn_stores_nothing_when_it_fails(repo: ChatRepository) -> None:
    conversation = await repo.create_conversation()
    other = await repo.create_conversation()
    foreign = await repo.add_message(other.id, msg("elsewhere"))
    taken = await repo.add_message(conversation.id, NewMessage(role="user", parts=parts("x"), id="m-1"))
    pending = NewMessage(role="assistant", parts=[], status="pending")
    with pytest.raises(NotFound, match="conversation nope not found"):
        await repo.add_turn("nope", msg("q"), pending)
    with pytest.raises(NotFound, match="message missing not found"):
        await repo.add_turn(conversation.id, msg("q", "missing"), pending)
    with pytest.raises(InvalidRequest, match="belongs to another conversation"):
        await repo.add_turn(conversation.id, msg("q", foreign.id), pending)
    with pytest.raises(InvalidRequest, match="message m-1 already exists"):  # the answer's id is taken
        await repo.add_turn(conversation.id, msg("q", taken.id), NewMessage("assistant", [], id="m-1"))
    with pytest.raises(InvalidRequest) as error:
        await repo.add_turn(conversation.id, msg("q"), NewMessage("assistant", [], status="done"))  # type: ignore[arg-type]
    assert error.value.field == "status"
    assert [m.text for m in await repo.all_messages(conversation.id)] == ["x"]
    assert (await repo.get_conversation(conversation.id)).current_leaf_id == taken.id


async def test_conversation_with_branch_reads_both_at_once(repo: ChatRepository) -> None:
    cid, ids = await build_tree(repo)
    conversation, path = await repo.conversation_with_branch(cid)
    assert conversation == await repo.get_conversation(cid)
    assert path == await repo.active_branch(cid)
    conversation, path = await repo.conversation_with_branch(cid, ids["a2b"])
    assert path == await repo.path_to(ids["a2b"]) and conversation.id == cid
    empty = await repo.create_conversation()
    assert await repo.conversation_with_branch(empty.id) == (empty, [])
    with pytest.raises(NotFound, match="conversation nope not found"):
        await repo.conversation_with_branch("nope")
    with pytest.raises(NotFound, match="message nope not found"):
        await repo.conversation_with_branch(cid, "nope")
    other = await repo.create_conversation()
    _, path = await repo.conversation_with_branch(other.id, ids["u1"])  # the caller checks where it is
    assert [m.conversation_id for m in path] == [cid]


async def test_name_conversation_replaces_only_the_title_it_is_told(repo: ChatRepository) -> None:
    conversation = await repo.create_conversation(created_at=at(0))
    assert await repo.name_conversation(conversation.id, "Rust lifetimes", replacing="New chat") is True
    named = await repo.get_conversation(conversation.id)
    assert named.title == "Rust lifetimes" and named.updated_at > conversation.updated_at
    # The user renamed it meanwhile: their title stays.
    assert await repo.name_conversation(conversation.id, "Something else", replacing="New chat") is False
    assert (await repo.get_conversation(conversation.id)).title == "Rust lifetimes"
    assert await repo.name_conversation("nope", "x", replacing="New chat") is False
    assert [c.id for c in (await repo.list_conversations(q="lifetim")).items] == [conversation.id]


async def test_path_to_gives_root_to_leaf_with_sibling_positions(repo: ChatRepository) -> None:
    _, ids = await build_tree(repo)
    assert shape(await repo.path_to(ids["a2b"])) == [("u1", 1, 2), ("a1", 1, 2), ("u2", 1, 2), ("a2b", 2, 2)]
    assert shape(await repo.path_to(ids["a2"])) == [("u1", 1, 2), ("a1", 1, 2), ("u2", 1, 2), ("a2", 1, 2)]
    assert shape(await repo.path_to(ids["a3"])) == [("u1", 1, 2), ("a1", 1, 2), ("u2b", 2, 2), ("a3", 1, 1)]
    assert shape(await repo.path_to(ids["a1b"])) == [("u1", 1, 2), ("a1b", 2, 2)]
    assert shape(await repo.path_to(ids["u1"])) == [("u1", 1, 2)]
    # Same created_at: the one inserted first (lower seq) comes first.
    assert shape(await repo.path_to(ids["t1"])) == [("r2", 2, 2), ("t1", 1, 2)]
    assert shape(await repo.path_to(ids["t2"])) == [("r2", 2, 2), ("t2", 2, 2)]
    path = await repo.path_to(ids["a3"])
    assert [m.parent_id for m in path] == [None, ids["u1"], ids["a1"], ids["u2b"]]
    assert [m.role for m in path] == ["user", "assistant", "user", "assistant"]
    assert all(m.created_at.tzinfo is not None for m in path)
    with pytest.raises(NotFound, match="message nope not found"):
        await repo.path_to("nope")


async def test_roots_of_other_conversations_are_not_siblings(repo: ChatRepository) -> None:
    _, ids = await build_tree(repo)
    other = await repo.create_conversation()
    lonely = await repo.add_message(other.id, msg("lonely", minutes=0))
    assert shape(await repo.path_to(lonely.id)) == [("lonely", 1, 1)]
    assert shape(await repo.path_to(ids["u1"])) == [("u1", 1, 2)]


async def test_active_branch_follows_the_current_leaf(repo: ChatRepository) -> None:
    cid, ids = await build_tree(repo)
    assert shape(await repo.active_branch(cid)) == [("r2", 2, 2), ("t2", 2, 2)]  # the last added
    await repo.set_current_leaf(cid, ids["a2"])
    assert shape(await repo.active_branch(cid)) == [("u1", 1, 2), ("a1", 1, 2), ("u2", 1, 2), ("a2", 1, 2)]
    # Any message may end the active branch, not only a leaf.
    await repo.set_current_leaf(cid, ids["u2b"])
    assert [m.text for m in await repo.active_branch(cid)] == ["u1", "a1", "u2b"]
    empty = await repo.create_conversation()
    assert await repo.active_branch(empty.id) == []


async def test_set_current_leaf_checks_the_message_and_bumps_updated_at(repo: ChatRepository) -> None:
    cid, ids = await build_tree(repo)
    other = await repo.create_conversation()
    foreign = await repo.add_message(other.id, msg("foreign"))
    before = (await repo.get_conversation(cid)).updated_at
    with pytest.raises(InvalidRequest, match="belongs to another conversation"):
        await repo.set_current_leaf(cid, foreign.id)
    with pytest.raises(NotFound, match="message nope not found"):
        await repo.set_current_leaf(cid, "nope")
    assert (await repo.get_conversation(cid)).current_leaf_id == ids["t2"]
    await repo.set_current_leaf(cid, ids["a3"])
    after = await repo.get_conversation(cid)
    assert after.current_leaf_id == ids["a3"]
    assert after.updated_at > before


async def test_all_messages_lists_every_branch_oldest_first(repo: ChatRepository) -> None:
    cid, _ = await build_tree(repo)
    listed = [(m.text, m.sibling_index, m.sibling_count) for m in await repo.all_messages(cid)]
    assert listed == [
        ("u1", 1, 2),
        ("a1", 1, 2),
        ("u2", 1, 2),
        ("a2", 1, 2),
        ("a2b", 2, 2),
        ("u2b", 2, 2),
        ("a3", 1, 1),
        ("a1b", 2, 2),
        ("r2", 2, 2),
        ("t1", 1, 2),
        ("t2", 2, 2),
    ]
    assert await repo.all_messages((await repo.create_conversation()).id) == []


async def test_path_and_all_messages_agree_on_every_message(repo: ChatRepository) -> None:
    cid, _ = await build_tree(repo)
    everything = {m.id: (m.sibling_index, m.sibling_count) for m in await repo.all_messages(cid)}
    for message_id, expected in everything.items():
        path = await repo.path_to(message_id)
        assert path[-1].id == message_id
        assert (path[-1].sibling_index, path[-1].sibling_count) == expected
        assert all((m.sibling_index, m.sibling_count) == everything[m.id] for m in path)


async def test_newest_leaf_under_takes_the_newest_child_each_step(repo: ChatRepository) -> None:
    _, ids = await build_tree(repo)
    assert await repo.newest_leaf_under(ids["u1"]) == ids["a1b"]  # a1b (t7) is newer than a1 (t1)
    assert await repo.newest_leaf_under(ids["a1"]) == ids["a3"]  # u2b (t5) newer than u2 (t2)
    assert await repo.newest_leaf_under(ids["u2"]) == ids["a2b"]
    assert await repo.newest_leaf_under(ids["r2"]) == ids["t2"]  # same time: the later insert
    assert await repo.newest_leaf_under(ids["a3"]) == ids["a3"]
    with pytest.raises(NotFound, match="message nope not found"):
        await repo.newest_leaf_under("nope")


async def test_a_deep_branch(repo: ChatRepository) -> None:
    conversation = await repo.create_conversation()
    parent: str | None = None
    for i in range(300):
        parent = (await repo.add_message(conversation.id, msg(f"m{i}", parent, minutes=i))).id
        if i == 150:
            fork = parent
    side = await repo.add_message(conversation.id, msg("side", fork, minutes=1000), make_current=False)
    branch = await repo.active_branch(conversation.id)
    assert [m.text for m in branch] == [f"m{i}" for i in range(300)]
    assert [(m.sibling_index, m.sibling_count) for m in branch if m.sibling_count > 1] == [(1, 2)]
    assert branch[151].text == "m151"
    assert await repo.newest_leaf_under(branch[0].id) == side.id  # the side branch is newer
    assert await repo.newest_leaf_under(branch[151].id) == branch[-1].id


# -- updates while streaming -------------------------------------------------------------------------


async def test_update_message_writes_only_the_given_fields(repo: ChatRepository) -> None:
    conversation = await repo.create_conversation()
    user = await repo.add_message(conversation.id, msg("question"))
    pending = await repo.add_message(
        conversation.id,
        NewMessage(
            role="assistant",
            parts=[],
            status="pending",
            parent_id=user.id,
            model_requested="openai/gpt-4o",
            extra={"model": "openai/gpt-4o", "input_tokens": 5},
        ),
    )
    await repo.update_message(pending.id, MessageProgress(parts=parts("Hel"), status="streaming"))
    got = await repo.get_message(pending.id)
    assert (got.text, got.status, got.model, got.input_tokens) == ("Hel", "streaming", "openai/gpt-4o", 5)
    assert got.updated_at > pending.updated_at
    await repo.update_message(pending.id, MessageProgress(output_tokens=3, ttft_ms=12.5))
    got = await repo.get_message(pending.id)
    assert (got.text, got.status, got.output_tokens, got.ttft_ms) == ("Hel", "streaming", 3, 12.5)
    attempts = [{"model": "openai/gpt-4o", "outcome": "ok"}]
    await repo.update_message(
        pending.id,
        MessageProgress(
            parts=parts("Hello"),
            status="complete",
            model="ollama/llama3.2",
            provider="ollama",
            latency_ms=99.0,
            attempts=attempts,
        ),
    )
    got = await repo.get_message(pending.id)
    assert (got.text, got.status, got.model, got.provider) == (
        "Hello",
        "complete",
        "ollama/llama3.2",
        "ollama",
    )
    assert (got.latency_ms, got.attempts, got.input_tokens, got.output_tokens) == (99.0, attempts, 5, 3)
    assert got.error is None and got.model_requested == "openai/gpt-4o"
    await repo.update_message(pending.id, MessageProgress(status="error", error="boom"))
    got = await repo.get_message(pending.id)
    assert (got.status, got.error, got.text) == ("error", "boom", "Hello")


async def test_update_message_errors(repo: ChatRepository) -> None:
    conversation = await repo.create_conversation()
    added = await repo.add_message(conversation.id, msg("x"))
    with pytest.raises(NotFound, match="message nope not found"):
        await repo.update_message("nope", MessageProgress(status="complete"))
    with pytest.raises(InvalidRequest) as error:
        await repo.update_message(added.id, MessageProgress(status="finished"))  # type: ignore[arg-type]
    assert error.value.field == "status"
    assert (await repo.get_message(added.id)).status == "complete"


async def test_interrupt_unfinished_marks_pending_and_streaming(repo: ChatRepository) -> None:
    conversation = await repo.create_conversation()
    done = await repo.add_message(conversation.id, msg("done"))
    pending = await repo.add_message(
        conversation.id, NewMessage(role="assistant", parts=[], status="pending")
    )
    streaming = await repo.add_message(
        conversation.id, NewMessage(role="assistant", parts=parts("partial ans"), status="streaming")
    )
    failed = await repo.add_message(
        conversation.id, NewMessage(role="assistant", parts=[], status="error", extra={"error": "earlier"})
    )
    assert await repo.interrupt_unfinished("server restarted") == 2
    assert await repo.interrupt_unfinished("again") == 0
    got = {m.id: m for m in await repo.all_messages(conversation.id)}
    assert (got[pending.id].status, got[pending.id].error) == ("interrupted", "server restarted")
    assert (got[streaming.id].status, got[streaming.id].error) == ("interrupted", "server restarted")
    assert got[streaming.id].text == "partial ans"
    assert (got[done.id].status, got[done.id].error) == ("complete", None)
    assert (got[failed.id].status, got[failed.id].error) == ("error", "earlier")
    assert [c.id for c in (await repo.list_conversations(q="partial")).items] == [conversation.id]


async def test_search_sees_an_answer_once_it_ends_not_while_it_streams(
    repo: ChatRepository, engine: Any
) -> None:
    conversation = await repo.create_conversation()
    pending = NewMessage(role="assistant", parts=[], status="pending")
    _, answer = await repo.add_turn(conversation.id, msg("question"), pending)
    await repo.update_message(answer.id, MessageProgress(parts=parts("zebras gallop"), status="streaming"))
    assert (await repo.get_message(answer.id)).text == "zebras gallop"
    assert (await repo.list_conversations(q="zebras")).items == []
    final = MessageProgress(parts=parts("zebras gallop fast"), status="complete")
    await repo.finish_message(answer.id, final, metric(answer, 0))
    assert [c.id for c in (await repo.list_conversations(q="zebras fast")).items] == [conversation.id]
    # Cut short by a crash: recovery makes what was streamed searchable.
    _, cut = await repo.add_turn(conversation.id, msg("another", answer.id), pending)
    await repo.update_message(cut.id, MessageProgress(parts=parts("okapis ar"), status="streaming"))
    assert (await repo.list_conversations(q="okapis")).items == []
    assert await repo.interrupt_unfinished("restarted") == 1
    assert [h.message_id for h in await repo.search("okapis")] == [cut.id]
    if engine.dialect.name == "sqlite":
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)")
            )


# -- listing ----------------------------------------------------------------------------------------


async def test_listing_order_pagination_total_and_counts(repo: ChatRepository) -> None:
    ids = [(await repo.create_conversation(title=f"c{i}", created_at=at(i))).id for i in range(7)]
    # c2 gets a message later than everything else; c5 is pinned; c6 is archived.
    await repo.add_message(ids[2], msg("hi", minutes=100))
    await repo.add_message(ids[2], msg("again", minutes=101))
    await repo.update_conversation(ids[5], ConversationUpdate(pinned=True))
    await repo.update_conversation(ids[6], ConversationUpdate(archived=True))
    page = await repo.list_conversations(limit=3)
    assert [c.title for c in page.items] == ["c5", "c2", "c4"]
    assert (page.total, page.limit, page.offset) == (6, 3, 0)
    assert [c.message_count for c in page.items] == [0, 2, 0]
    rest = await repo.list_conversations(limit=3, offset=3)
    assert [c.title for c in rest.items] == ["c3", "c1", "c0"]
    assert rest.total == 6
    beyond = await repo.list_conversations(limit=3, offset=30)
    assert (beyond.items, beyond.total) == ([], 6)
    archived = await repo.list_conversations(archived=True)
    assert [c.title for c in archived.items] == ["c6"] and archived.total == 1


async def test_listing_pinned_ones_sorted_by_updated_at_too(repo: ChatRepository) -> None:
    a = await repo.create_conversation(title="a", created_at=at(0))
    b = await repo.create_conversation(title="b", created_at=at(1))
    await repo.create_conversation(title="c", created_at=at(2))
    for conversation in (a, b):
        await repo.update_conversation(conversation.id, ConversationUpdate(pinned=True))
    assert [c.title for c in (await repo.list_conversations()).items] == ["b", "a", "c"]  # b pinned last
    await repo.add_message(a.id, msg("newest"))  # now: a is the most recently updated again
    assert [c.title for c in (await repo.list_conversations()).items] == ["a", "b", "c"]


async def test_listing_rejects_bad_paging(repo: ChatRepository) -> None:
    for kwargs in ({"limit": 0}, {"limit": 100_000}, {"offset": -1}):
        with pytest.raises(InvalidRequest):
            await repo.list_conversations(**kwargs)


# -- full-text search ----------------------------------------------------------------------------


async def seed_search(repo: ChatRepository) -> dict[str, str]:
    py = await repo.create_conversation(title="Python packaging", created_at=at(0))
    rust = await repo.create_conversation(title="Weekend plans", created_at=at(1))
    mixed = await repo.create_conversation(title="Misc", created_at=at(2))
    world = await repo.create_conversation(title="Travel", created_at=at(3))
    await repo.add_message(py.id, msg("How do I publish a wheel?", minutes=10))
    await repo.add_message(rust.id, msg("Learning Rust ownership and borrowing this weekend", minutes=11))
    await repo.add_message(mixed.id, msg("Rewriting the Python service in Rust", minutes=12))
    await repo.add_message(
        world.id, msg("Привет! A café in Köln; 日本語の本 and naïve questions", minutes=13)
    )
    return {"py": py.id, "rust": rust.id, "mixed": mixed.id, "world": world.id}


async def titles_for(repo: ChatRepository, q: str, archived: bool = False) -> set[str]:
    page = await repo.list_conversations(q=q, archived=archived)
    assert page.total == len(page.items)
    return {c.title for c in page.items}


async def test_list_search_titles_text_prefixes_and_every_word(repo: ChatRepository) -> None:
    await seed_search(repo)
    assert await titles_for(repo, "python") == {"Python packaging", "Misc"}  # a title, a message
    assert await titles_for(repo, "PYTH") == {"Python packaging", "Misc"}  # prefix, any case
    assert await titles_for(repo, "rust") == {"Weekend plans", "Misc"}
    assert await titles_for(repo, "python rust") == {"Misc"}  # every word, in one message
    assert await titles_for(repo, "rust python") == {"Misc"}
    assert await titles_for(repo, "borrow own") == {"Weekend plans"}
    assert await titles_for(repo, "wheel") == {"Python packaging"}
    assert await titles_for(repo, "weekend") == {"Weekend plans"}  # title and message: listed once
    assert await titles_for(repo, "ython") == set()  # prefixes, not infixes
    assert await titles_for(repo, "golang") == set()
    assert await titles_for(repo, "привет") == {"Travel"}
    assert await titles_for(repo, "ПРИВ") == {"Travel"}
    assert await titles_for(repo, "日本") == {"Travel"}
    assert await titles_for(repo, "köln café") == {"Travel"}


async def test_list_search_ignores_diacritics_only_on_sqlite(repo: ChatRepository, engine: Any) -> None:
    await seed_search(repo)
    # SQLite's tokenizer folds diacritics (remove_diacritics 2); PostgreSQL's 'simple' configuration
    # does not (that would need the unaccent extension), so there only the exact letters match.
    expected = {"Travel"} if engine.dialect.name == "sqlite" else set()
    assert await titles_for(repo, "cafe koln naive") == expected
    assert await titles_for(repo, "café köln naïve") == {"Travel"}


async def test_list_search_with_hostile_input_never_fails(repo: ChatRepository) -> None:
    ids = await seed_search(repo)
    everything = await titles_for(repo, "")
    assert len(everything) == 4
    for q in HOSTILE:
        page = await repo.list_conversations(q=q)
        assert page.total == len(page.items), q
        if not search_words(q):
            assert {c.title for c in page.items} == everything, q
    assert await titles_for(repo, '"python"') == {"Python packaging", "Misc"}
    assert await titles_for(repo, "pyth*") == {"Python packaging", "Misc"}
    assert await titles_for(repo, "-python") == {"Python packaging", "Misc"}  # no NOT operator
    assert await titles_for(repo, "python AND rust") == set()  # "and" is a word here
    assert await titles_for(repo, "python) (rust") == {"Misc"}
    assert await titles_for(repo, "🐍 python 🦀") == {"Python packaging", "Misc"}
    assert await titles_for(repo, "🐍") == everything  # no words: no filter
    assert ids


async def test_list_search_combines_with_archived(repo: ChatRepository) -> None:
    ids = await seed_search(repo)
    await repo.update_conversation(ids["py"], ConversationUpdate(archived=True))
    assert await titles_for(repo, "python") == {"Misc"}
    assert await titles_for(repo, "python", archived=True) == {"Python packaging"}


async def test_search_follows_edits_renames_and_deletes(repo: ChatRepository, engine: Any) -> None:
    ids = await seed_search(repo)
    (message,) = await repo.all_messages(ids["py"])
    await repo.update_message(message.id, MessageProgress(parts=parts("How do I publish an egg?")))
    assert await titles_for(repo, "wheel") == set()
    assert await titles_for(repo, "egg") == {"Python packaging"}
    await repo.update_conversation(ids["rust"], ConversationUpdate(title="Holiday"))
    assert await titles_for(repo, "weekend") == {"Holiday"}  # still in the message
    assert await titles_for(repo, "plans") == set()
    assert await titles_for(repo, "holi") == {"Holiday"}
    await repo.delete_conversation(ids["mixed"])
    assert await titles_for(repo, "rust") == {"Holiday"}
    if engine.dialect.name == "sqlite":
        async with engine.begin() as conn:  # raises if an index no longer matches its table
            for table in ("messages_fts", "conversations_fts", "document_chunks_fts"):
                await conn.execute(text(f"INSERT INTO {table}({table}, rank) VALUES ('integrity-check', 1)"))
            mapped = await conn.scalar(text("SELECT count(*) FROM conversations_fts_map"))
            indexed = await conn.scalar(text("SELECT count(*) FROM conversations_fts"))
        assert mapped == indexed == 3


async def test_search_returns_message_hits_best_first_with_snippets(repo: ChatRepository) -> None:
    ids = await seed_search(repo)
    long_text = ("filler words here " * 30) + "the zebra crossing is here " + ("more filler text " * 30)
    zebra = await repo.create_conversation(title="Animals", created_at=at(20))
    once = await repo.add_message(zebra.id, msg(long_text, minutes=21))
    many = await repo.add_message(zebra.id, msg("zebra zebra zebra, a zebra herd", once.id, minutes=22))
    hits = await repo.search("zebra")
    assert [h.message_id for h in hits] == [many.id, once.id]
    assert all(h.conversation_id == zebra.id and h.title == "Animals" for h in hits)
    snippet = hits[1].snippet
    assert "zebra" in snippet and len(snippet) <= 220, snippet
    assert snippet.startswith("…") and snippet.endswith("…")
    assert "zebra" in hits[0].snippet
    # A title-only hit: the conversation has no message with the words.
    title_hits = await repo.search("packaging")
    assert [(h.conversation_id, h.message_id, h.snippet) for h in title_hits] == [
        (ids["py"], None, "Python packaging")
    ]
    python = await repo.search("python")
    assert [(h.conversation_id, h.message_id is None) for h in python] == [
        (ids["mixed"], False),
        (ids["py"], True),
    ]
    assert len(await repo.search("zebra", limit=1)) == 1
    assert await repo.search("") == []


async def test_search_with_hostile_input_never_fails(repo: ChatRepository) -> None:
    await seed_search(repo)
    for q in HOSTILE:
        hits = await repo.search(q)
        assert isinstance(hits, list), q
    assert await repo.search("🐍") == []
    assert {h.title for h in await repo.search("(python) AND NEAR(rust")} == set()
    assert {h.title for h in await repo.search('python" OR "rust')} == set()  # "or" is a word


def test_query_builders_quote_every_word() -> None:
    assert search_words('foo_bar "baz*" -x') == ["foo", "bar", "baz", "x"]
    assert search_words(None) == [] and search_words("🐍 *") == []
    assert search_words("y" * 500) == ["y" * 64]
    assert len(search_words("w " * 100)) == 32
    assert fts5_query(["near", "and"]) == '"near"* AND "and"*'
    assert tsquery(["a", "b"]) == "'a':* & 'b':*"


# -- prompt profiles ------------------------------------------------------------------------------


async def test_prompt_profile_crud(repo: ChatRepository) -> None:
    coder = await repo.create_prompt_profile(
        name="Coder", system_prompt="You write code.", parameters={"temperature": 0.2}, memory=True
    )
    assert (coder.name, coder.system_prompt, coder.parameters, coder.memory) == (
        "Coder",
        "You write code.",
        {"temperature": 0.2},
        True,
    )
    assert coder.created_at.tzinfo is not None
    await repo.create_prompt_profile(name="assistant", system_prompt="", parameters={}, memory=False)
    assert [p.name for p in await repo.list_prompt_profiles()] == ["assistant", "Coder"]
    assert await repo.get_prompt_profile(coder.id) == coder
    updated = await repo.update_prompt_profile(
        coder.id, name="Senior coder", system_prompt="Review.", parameters={"top_p": 0.9}, memory=False
    )
    assert (updated.name, updated.system_prompt, updated.parameters, updated.memory) == (
        "Senior coder",
        "Review.",
        {"top_p": 0.9},
        False,
    )
    assert updated.created_at == coder.created_at and updated.updated_at > coder.updated_at
    assert await repo.get_prompt_profile(coder.id) == updated
    await repo.delete_prompt_profile(coder.id)
    assert [p.name for p in await repo.list_prompt_profiles()] == ["assistant"]


async def test_prompt_profile_names_are_unique_ignoring_case(repo: ChatRepository) -> None:
    coder = await repo.create_prompt_profile(name="Coder", system_prompt="", parameters={}, memory=False)
    other = await repo.create_prompt_profile(name="Writer", system_prompt="", parameters={}, memory=False)
    for name in ("Coder", "coder", " CODER "):
        with pytest.raises(InvalidRequest, match="'Coder' already exists") as error:
            await repo.create_prompt_profile(name=name, system_prompt="", parameters={}, memory=False)
        assert error.value.field == "name"
    with pytest.raises(InvalidRequest, match="'Coder' already exists"):
        await repo.update_prompt_profile(
            other.id, name="CODER", system_prompt="", parameters={}, memory=False
        )
    renamed = await repo.update_prompt_profile(
        coder.id, name="coder", system_prompt="", parameters={}, memory=False
    )
    assert renamed.name == "coder"
    for bad in ("", "   ", "n" * 101):
        with pytest.raises(InvalidRequest) as error:
            await repo.create_prompt_profile(name=bad, system_prompt="", parameters={}, memory=False)
        assert error.value.field == "name"


async def test_unknown_prompt_profile_is_not_found(repo: ChatRepository) -> None:
    with pytest.raises(NotFound, match="prompt profile nope not found"):
        await repo.get_prompt_profile("nope")
    with pytest.raises(NotFound, match="prompt profile nope not found"):
        await repo.update_prompt_profile("nope", name="x", system_prompt="", parameters={}, memory=False)
    with pytest.raises(NotFound, match="prompt profile nope not found"):
        await repo.delete_prompt_profile("nope")


async def test_deleting_a_profile_leaves_its_conversations_without_one(repo: ChatRepository) -> None:
    profile = await repo.create_prompt_profile(name="Terse", system_prompt="", parameters={}, memory=False)
    keep = await repo.create_prompt_profile(name="Keep", system_prompt="", parameters={}, memory=False)
    using = await repo.create_conversation(prompt_profile_id=profile.id)
    other = await repo.create_conversation(prompt_profile_id=keep.id)
    await repo.delete_prompt_profile(profile.id)
    assert (await repo.get_conversation(using.id)).prompt_profile_id is None
    assert (await repo.get_conversation(other.id)).prompt_profile_id == keep.id


# -- metrics ------------------------------------------------------------------------------------------


def metric(message: Message, minutes: float, **fields: Any) -> MessageMetric:
    values: dict[str, Any] = {
        "message_id": message.id,
        "conversation_id": message.conversation_id,
        "model": "openai/gpt-4o",
        "provider": "openai",
        "outcome": "complete",
        "fallback": False,
        "attempts": 1,
        "latency_ms": 100.0,
        "ttft_ms": 10.0,
        "input_tokens": 10,
        "output_tokens": 20,
        "tokens_per_second": 50.0,
        "created_at": at(minutes),
    }
    values.update(fields)
    return MessageMetric(**values)


async def test_metrics_by_model(repo: ChatRepository) -> None:
    conversation = await repo.create_conversation()
    answers = [await repo.add_message(conversation.id, msg(f"a{i}", role="assistant")) for i in range(8)]
    gpt = [(100.0, 10.0, 40.0), (400.0, 30.0, 60.0), (200.0, 20.0, 50.0), (300.0, None, None)]
    for i, (latency, ttft, tps) in enumerate(gpt):
        await repo.add_metric(
            metric(answers[i], i, latency_ms=latency, ttft_ms=ttft, tokens_per_second=tps, fallback=i == 3)
        )
    # An error: its latency is not a completed answer's, its tokens still count.
    await repo.add_metric(
        metric(answers[4], 4, outcome="error", latency_ms=9000.0, input_tokens=7, output_tokens=0)
    )
    await repo.add_metric(
        metric(
            answers[5],
            5,
            model="ollama/llama3.2",
            provider="ollama",
            latency_ms=1000.0,
            tokens_per_second=5.0,
        )
    )
    await repo.add_metric(
        metric(answers[6], 6, model=None, outcome="interrupted", latency_ms=None, ttft_ms=None)
    )
    stats = {s.model: s for s in await repo.metrics_by_model()}
    assert list(stats) == ["openai/gpt-4o", "ollama/llama3.2", "unknown"]
    g = stats["openai/gpt-4o"]
    assert (g.messages, g.errors, g.fallbacks) == (5, 1, 1)
    assert g.avg_latency_ms == pytest.approx(250.0)
    assert g.p50_latency_ms == pytest.approx(250.0)
    assert g.avg_ttft_ms == pytest.approx(20.0)
    assert g.avg_tokens_per_second == pytest.approx(50.0)
    assert (g.input_tokens, g.output_tokens) == (47, 80)
    o = stats["ollama/llama3.2"]
    assert (o.messages, o.errors, o.p50_latency_ms, o.avg_latency_ms) == (1, 0, 1000.0, 1000.0)
    u = stats["unknown"]
    assert (u.messages, u.errors, u.avg_latency_ms, u.p50_latency_ms, u.avg_ttft_ms) == (
        1,
        1,
        None,
        None,
        None,
    )
    recent = await repo.metrics_by_model(since=at(2))
    assert {s.model: s.messages for s in recent} == {"openai/gpt-4o": 3, "ollama/llama3.2": 1, "unknown": 1}
    assert {s.model: s.p50_latency_ms for s in recent}["openai/gpt-4o"] == pytest.approx(250.0)
    assert await repo.metrics_by_model(since=at(100)) == []


async def test_recent_metrics_and_metric_errors(repo: ChatRepository) -> None:
    conversation = await repo.create_conversation()
    answers = [await repo.add_message(conversation.id, msg(f"a{i}", role="assistant")) for i in range(3)]
    stored = [metric(a, i) for i, a in enumerate(answers)]
    for m in stored:
        await repo.add_metric(m)
    recent = list(await repo.recent_metrics(limit=2))
    assert recent == [stored[2], stored[1]]
    assert recent[0].created_at.tzinfo is not None
    with pytest.raises(NotFound, match="message nope not found"):
        await repo.add_metric(metric(answers[0], 9, message_id="nope"))
    with pytest.raises(InvalidRequest, match="already has a metric"):
        await repo.add_metric(metric(answers[0], 9))
    assert len(await repo.recent_metrics()) == 3


async def test_finish_message_writes_the_final_state_and_the_metric_at_once(repo: ChatRepository) -> None:
    conversation = await repo.create_conversation()
    user, answer = await repo.add_turn(
        conversation.id, msg("question"), NewMessage(role="assistant", parts=[], status="pending")
    )
    await repo.update_message(answer.id, MessageProgress(parts=parts("Hel"), status="streaming"))
    final = MessageProgress(parts=parts("Hello"), status="complete", model="openai/gpt-4o", latency_ms=100.0)
    await repo.finish_message(answer.id, final, metric(answer, 1))
    got = await repo.get_message(answer.id)
    assert (got.text, got.status, got.model, got.latency_ms) == ("Hello", "complete", "openai/gpt-4o", 100.0)
    assert list(await repo.recent_metrics()) == [metric(answer, 1)]
    # A second finish is refused whole: the message keeps its first final state.
    with pytest.raises(InvalidRequest, match="already has a metric"):
        await repo.finish_message(answer.id, MessageProgress(status="error", error="late"), metric(answer, 2))
    got = await repo.get_message(answer.id)
    assert (got.status, got.error) == ("complete", None)
    with pytest.raises(NotFound, match="message nope not found"):
        await repo.finish_message("nope", final, metric(answer, 3, message_id="nope"))
    with pytest.raises(InvalidRequest) as error:
        await repo.finish_message(user.id, MessageProgress(status="finished"), metric(user, 4))  # type: ignore[arg-type]
    assert error.value.field == "status"
    assert len(await repo.recent_metrics()) == 1


# -- deleting ----------------------------------------------------------------------------------------


async def test_delete_conversation_cascades(repo: ChatRepository, engine: Any) -> None:
    cid, ids = await build_tree(repo)
    keep = await repo.create_conversation(title="keep")
    kept = await repo.add_message(keep.id, msg("kept"))
    await repo.add_metric(metric(await repo.get_message(ids["a3"]), 0))
    await repo.add_metric(metric(kept, 1))
    documents = Base.metadata.tables["documents"]
    chunks = Base.metadata.tables["document_chunks"]
    async with engine.begin() as conn:
        for document_id, conversation_id in (("doc-1", cid), ("doc-2", keep.id)):
            await conn.execute(
                insert(documents).values(
                    id=document_id,
                    conversation_id=conversation_id,
                    filename="notes.md",
                    media_type="text/markdown",
                    kind="text",
                    size_bytes=10,
                    pages=1,
                    chunk_count=1,
                    created_at=T0,
                )
            )
            await conn.execute(
                insert(chunks).values(
                    document_id=document_id, idx=0, page=1, start=0, end=10, text="chunk text"
                )
            )
    await repo.delete_conversation(cid)
    with pytest.raises(NotFound):
        await repo.get_conversation(cid)
    for message_id in ids.values():
        with pytest.raises(NotFound):
            await repo.get_message(message_id)
    assert [m.message_id for m in await repo.recent_metrics()] == [kept.id]
    async with engine.connect() as conn:
        assert (await conn.execute(select(documents.c.id))).scalars().all() == ["doc-2"]
        assert (await conn.scalar(select(func.count()).select_from(chunks))) == 1
        if engine.dialect.name == "sqlite":
            chunk_hits = await conn.scalar(
                text("SELECT count(*) FROM document_chunks_fts WHERE document_chunks_fts MATCH 'chunk'")
            )
            assert chunk_hits == 1
    assert [m.text for m in await repo.active_branch(keep.id)] == ["kept"]
    with pytest.raises(NotFound):
        await repo.delete_conversation(cid)
