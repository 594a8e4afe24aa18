"""Chat Studio's database work on an SQLite file: a long branch, the conversation list, one send.

    .venv/bin/python bench/chat_db.py [--repeats 20]

Builds two databases in a temp dir (migrated with the real migrations, rows bulk-inserted through
SQLAlchemy Core, so the FTS5 triggers index them as in production) and times `ChatRepository` on the
runner production gives it (`storage.runner.open_runner`: for an SQLite file, sync connections on the
runner's own threads):

(a) `active_branch` of one conversation holding 100,000 messages: a main branch of 1,000 messages
    where every main message also has an older sibling (an edit or a regenerate) that starts a side
    branch of 99 messages (1,000 + 1,000 x 99 = 100,000). Every message on the active path has two
    siblings, so the sibling ranking has real work to do. Target: median <= 50 ms.
(b) the first page (50) of `list_conversations` among 10,000 conversations of 10 messages each (5% of
    them pinned, 10% archived). Target: median <= 20 ms.
(c) the database work of one send, beyond the model call: exactly the store calls `ChatService.send`
    makes (tests/gateway/test_chat_studio.py checks it against `REPLY` and `FIRST_SEND` below), each
    committed as in production. A reply in a conversation of database (b): conversation_with_branch
    (the conversation, and the path to its current leaf: the parent to check and the history for the
    model, one read), add_turn (the user message and the pending answer, one transaction, committed
    before the model is called), 5 progress updates (streaming writes at most one per 0.25 s),
    finish_message (the final state and the chat_metrics row, one transaction).
    Target: median <= 3 ms.
(c') the first send, which creates the conversation: create_conversation, add_turn, 5 progress
    updates, finish_message, name_conversation (the title, set only over the default one).
    Target: median <= 3 ms.

Baseline: a `SELECT 1` round trip through the same runner, the floor every call pays.
Also shown, without targets: (c)'s own floor (as many units of work running `SELECT 1` as (c) makes
calls), and full-text search over database (b): message text is made-up words drawn by Zipf's law
from a 5,000-word vocabulary, so a query narrows the way it does on real text.
Prints one markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from made_up_words import vocabulary  # bench/ is on the path: the scripts run as files
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine
from timing import Timing, timed

from mmstudio.domain.chat.types import MessageMetric, MessageProgress, NewMessage, Part
from mmstudio.storage.chat_repo import ChatRepository
from mmstudio.storage.db import create_engine, migrate
from mmstudio.storage.runner import Runner, open_runner
from mmstudio.storage.tables import Base

MAIN = 1_000
SIDE = 99
CONVERSATIONS = 10_000
PER_CONVERSATION = 10
BATCH = 5_000
T0 = datetime(2026, 1, 1, tzinfo=UTC)
VOCABULARY = 5_000  # made-up words, drawn with Zipf's law (word n is 1/n as common as the first)

C = Base.metadata.tables["conversations"]
M = Base.metadata.tables["messages"]

PROGRESS = 5
# The store calls of one send, in order (consecutive progress updates shown once).
REPLY = ("conversation_with_branch", "add_turn", "update_message", "finish_message")
FIRST_SEND = ("create_conversation", "add_turn", "update_message", "finish_message", "name_conversation")
DEFAULT_TITLE = "New chat"


WORDS, CUMULATIVE = vocabulary(VOCABULARY)
# A common word (about 1 message in 16 has it) and a prefix of a rarer one: a typical narrowing search.
QUERY = f"{WORDS[40]} {WORDS[400][:4]}"


def sentence(rng: random.Random, n: int = 24) -> str:
    return " ".join(rng.choices(WORDS, cum_weights=CUMULATIVE, k=n)).capitalize() + "."


def message_row(
    rng: random.Random, conversation_id: str, parent_id: str | None, role: str, at: datetime
) -> dict[str, Any]:
    body = sentence(rng)
    return {
        "id": str(uuid.uuid4()),
        "conversation_id": conversation_id,
        "parent_id": parent_id,
        "role": role,
        "parts": [{"type": "text", "text": body}],
        "text": body,
        "status": "complete",
        "created_at": at,
        "updated_at": at,
    }


def conversation_row(conversation_id: str, title: str, at: datetime, **flags: Any) -> dict[str, Any]:
    return {
        "id": conversation_id,
        "title": title,
        "routing_profile": "direct",
        "pinned": flags.get("pinned", False),
        "archived": flags.get("archived", False),
        "current_leaf_id": flags.get("leaf"),
        "created_at": at,
        "updated_at": at,
    }


async def bulk(
    engine: AsyncEngine, conversations: list[dict[str, Any]], messages: list[dict[str, Any]]
) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(C), conversations)
        for start in range(0, len(messages), BATCH):
            await conn.execute(insert(M), messages[start : start + BATCH])


async def build_long_conversation(engine: AsyncEngine) -> str:
    """Shape (a): returns the conversation id; its current leaf is the main branch's last message."""
    rng = random.Random(1)
    cid = str(uuid.uuid4())
    rows: list[dict[str, Any]] = []
    parent: str | None = None
    tick = 0
    for i in range(MAIN):
        role = "user" if i % 2 == 0 else "assistant"
        # The side branch's first message is the older sibling of main message i.
        side_parent = parent
        for _ in range(SIDE):
            side = message_row(rng, cid, side_parent, role, T0 + timedelta(seconds=tick))
            rows.append(side)
            side_parent = side["id"]
            tick += 1
        main = message_row(rng, cid, parent, role, T0 + timedelta(seconds=tick))
        rows.append(main)
        parent = main["id"]
        tick += 1
    # Parents first (foreign keys): every row's parent was appended before it.
    await bulk(engine, [conversation_row(cid, "Long", T0, leaf=parent)], rows)
    return cid


async def build_many_conversations(engine: AsyncEngine) -> list[str]:
    """Shape (b): 10,000 conversations of 10 messages; returns their ids."""
    rng = random.Random(2)
    conversations: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    ids: list[str] = []
    for n in range(CONVERSATIONS):
        cid = str(uuid.uuid4())
        ids.append(cid)
        at = T0 + timedelta(minutes=rng.randrange(0, 60 * 24 * 365))
        parent: str | None = None
        for k in range(PER_CONVERSATION):
            row = message_row(
                rng, cid, parent, "user" if k % 2 == 0 else "assistant", at + timedelta(seconds=k)
            )
            messages.append(row)
            parent = row["id"]
        title = " ".join(rng.choices(WORDS, cum_weights=CUMULATIVE, k=4)).capitalize()
        conversations.append(
            conversation_row(
                cid,
                title,
                at + timedelta(seconds=PER_CONVERSATION),
                pinned=n % 20 == 0,
                archived=n % 10 == 5,
                leaf=parent,
            )
        )
    await bulk(engine, conversations, messages)
    return ids


def select_one(db: Runner) -> Callable[[], Awaitable[Any]]:
    async def call() -> None:
        await db.read(lambda conn: conn.execute(text("SELECT 1")).scalar())

    return call


def empty_units(db: Runner, count: int) -> Callable[[], Awaitable[Any]]:
    async def call() -> None:
        for _ in range(count - 1):
            await db.read(lambda conn: conn.execute(text("SELECT 1")).scalar())
        await db.write(lambda conn: conn.execute(text("SELECT 1")).scalar())

    return call


def question(parent: str | None) -> NewMessage:
    parts: list[Part] = [{"type": "text", "text": "Explain a rust lifetime"}]
    return NewMessage(role="user", parts=parts, parent_id=parent)


def pending() -> NewMessage:
    return NewMessage(role="assistant", parts=[], status="pending", model_requested="bench/model")


async def answer(repo: ChatRepository, conversation_id: str, message_id: str) -> None:
    """What `AnswerRun` writes: progress while streaming, then the final state and its metric."""
    body = ""
    for i in range(PROGRESS):
        body += f"A lifetime names the scope a reference is valid for (part {i}). "
        await repo.update_message(
            message_id, MessageProgress(parts=[{"type": "text", "text": body}], status="streaming")
        )
    final = MessageProgress(
        parts=[{"type": "text", "text": body}],
        status="complete",
        model="bench/model",
        provider="bench",
        input_tokens=12,
        output_tokens=80,
        latency_ms=900.0,
        ttft_ms=120.0,
    )
    metric = MessageMetric(
        message_id=message_id,
        conversation_id=conversation_id,
        model="bench/model",
        provider="bench",
        outcome="complete",
        fallback=False,
        attempts=1,
        latency_ms=900.0,
        ttft_ms=120.0,
        input_tokens=12,
        output_tokens=80,
        tokens_per_second=88.9,
        created_at=datetime.now(UTC),
    )
    await repo.finish_message(message_id, final, metric)


async def reply(repo: ChatRepository, conversation_id: str) -> None:
    """(c): `ChatService.send(content, conversation_id=...)` answering after the current leaf."""
    _, path = await repo.conversation_with_branch(conversation_id)
    _, assistant = await repo.add_turn(conversation_id, question(path[-1].id), pending())
    await answer(repo, conversation_id, assistant.id)


async def first_send(repo: ChatRepository) -> None:
    """(c'): `ChatService.send(content)` without a conversation: it is created, answered and named."""
    conversation = await repo.create_conversation(title=DEFAULT_TITLE)
    _, assistant = await repo.add_turn(conversation.id, question(None), pending())
    await answer(repo, conversation.id, assistant.id)
    await repo.name_conversation(conversation.id, "Rust lifetimes", replacing=DEFAULT_TITLE)


async def main(repeats: int) -> None:
    rows: list[tuple[str, Timing, float, str, float | None]] = []

    def row(name: str, ms: Timing, floor: Timing, target: str = "-", limit: float | None = None) -> None:
        rows.append((name, ms, floor[0], target, limit))

    with tempfile.TemporaryDirectory(prefix="mmstudio-chat-bench-") as tmp:
        long_engine = create_engine(f"sqlite:///{Path(tmp) / 'long.sqlite'}")
        many_engine = create_engine(f"sqlite:///{Path(tmp) / 'many.sqlite'}")
        runners: list[Runner] = []
        try:
            await migrate(long_engine)
            await migrate(many_engine)
            started = time.perf_counter()
            long_id = await build_long_conversation(long_engine)
            ids = await build_many_conversations(many_engine)
            print(f"built both databases in {time.perf_counter() - started:.1f} s")

            db = open_runner(long_engine)
            runners.append(db)
            repo = ChatRepository(db)
            branch = await repo.active_branch(long_id)
            assert len(branch) == MAIN and all(m.sibling_count == 2 for m in branch[1:]), "unexpected shape"
            floor = await timed(select_one(db), repeats * 5)
            branch_ms = await timed(lambda: repo.active_branch(long_id), repeats)
            row("(a) active_branch: 1,000 of 100,000 messages", branch_ms, floor, "≤ 50 ms", 50.0)

            db = open_runner(many_engine)
            runners.append(db)
            repo = ChatRepository(db)
            floor = await timed(select_one(db), repeats * 5)
            page = await repo.list_conversations(limit=50)
            assert len(page.items) == 50 and page.total == CONVERSATIONS - CONVERSATIONS // 10
            list_ms = await timed(lambda: repo.list_conversations(limit=50), repeats)
            row("(b) list_conversations: first 50 of 10,000", list_ms, floor, "≤ 20 ms", 20.0)

            fresh = iter(ids[1:])  # a reply each time in another conversation
            calls = len(REPLY) + PROGRESS - 1
            reply_ms = await timed(lambda: reply(repo, next(fresh)), repeats * 3)
            row(f"(c) one send, a reply: {calls} store calls", reply_ms, floor, "≤ 3 ms", 3.0)
            floor_ms = await timed(empty_units(db, calls), repeats * 3)
            row(f"(c)'s floor: {calls} units of work running SELECT 1", floor_ms, floor)
            first_ms = await timed(lambda: first_send(repo), repeats * 3)
            calls = len(FIRST_SEND) + PROGRESS - 1
            row(f"(c') the first send, new conversation: {calls} store calls", first_ms, floor, "≤ 3 ms", 3.0)

            matches = (await repo.list_conversations(q=QUERY, limit=50)).total
            search_ms = await timed(lambda: repo.list_conversations(q=QUERY, limit=50), repeats)
            row(f"list_conversations(q={QUERY!r}): {matches} of 10,000 match", search_ms, floor)
            hits_ms = await timed(lambda: repo.search(QUERY), repeats)
            row(f"search({QUERY!r}): best 10 of 100,000 messages", hits_ms, floor)
        finally:
            for db in runners:
                await db.close()
            await long_engine.dispose()
            await many_engine.dispose()

    print()
    print(
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; median of {repeats} "
        f"({repeats * 3} sends); baseline: one SELECT 1 through the same runner; CPU: the process's"
    )
    print()
    print("| measure | mmstudio ms | CPU ms | baseline ms | ratio | target | met |")
    print("|---|---|---|---|---|---|---|")
    for name, (wall, cpu), base, target, limit in rows:
        met = "" if limit is None else ("yes" if wall <= limit else "**NO**")
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {base:.3f} | {wall / base:.1f}x | {target} | {met} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=20)
    asyncio.run(main(parser.parse_args().repeats))
