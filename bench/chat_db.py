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
(c) the database work of one send, in a conversation of database (b): add the user message, add a
    pending assistant message, 5 progress updates, the final update, add_metric, set the title.
    Target: median <= 3 ms.

Baseline: a `SELECT 1` round trip through the same runner, the floor every call pays.
Also shown, without targets: (c)'s own floor (ten units of work running `SELECT 1`: what ten separate
repository calls cost before any real work), and
full-text search over database (b): message text is made-up words drawn by Zipf's law from a
5,000-word vocabulary, so a query narrows the way it does on real text.
Prints one markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import platform
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from mmstudio.domain.chat.types import ConversationUpdate, MessageMetric, MessageProgress, NewMessage
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
SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "ner",
    "to",
    "sa",
    "vi",
    "ru",
    "den",
    "pa",
    "el",
    "or",
    "qu",
    "tin",
    "ba",
    "ze",
]

C = Base.metadata.tables["conversations"]
M = Base.metadata.tables["messages"]


def vocabulary() -> tuple[list[str], list[float]]:
    rng = random.Random(0)
    words: set[str] = set()
    while len(words) < VOCABULARY:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    ordered = sorted(words)
    rng.shuffle(ordered)
    cumulative = list(itertools.accumulate(1 / (n + 1) for n in range(VOCABULARY)))
    return ordered, cumulative


WORDS, CUMULATIVE = vocabulary()
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


async def timed(call: Callable[[], Awaitable[Any]], repeats: int, warmup: int = 3) -> float:
    """Median wall time in ms."""
    for _ in range(warmup):
        await call()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def select_one(db: Runner) -> Callable[[], Awaitable[Any]]:
    async def call() -> None:
        await db.read(lambda conn: conn.execute(text("SELECT 1")).scalar())

    return call


async def one_send(repo: ChatRepository, conversation_id: str, parent: str | None) -> None:
    user = await repo.add_message(
        conversation_id,
        NewMessage(
            role="user", parts=[{"type": "text", "text": "Explain a rust lifetime"}], parent_id=parent
        ),
    )
    answer = await repo.add_message(
        conversation_id,
        NewMessage(
            role="assistant", parts=[], status="pending", parent_id=user.id, model_requested="bench/model"
        ),
    )
    body = ""
    for i in range(5):
        body += f"A lifetime names the scope a reference is valid for (part {i}). "
        await repo.update_message(
            answer.id, MessageProgress(parts=[{"type": "text", "text": body}], status="streaming")
        )
    await repo.update_message(
        answer.id,
        MessageProgress(
            parts=[{"type": "text", "text": body}],
            status="complete",
            model="bench/model",
            provider="bench",
            input_tokens=12,
            output_tokens=80,
            latency_ms=900.0,
            ttft_ms=120.0,
        ),
    )
    await repo.add_metric(
        MessageMetric(
            message_id=answer.id,
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
    )
    await repo.update_conversation(conversation_id, ConversationUpdate(title="Rust lifetimes"))


def empty_transactions(db: Runner, count: int) -> Callable[[], Awaitable[Any]]:
    async def call() -> None:
        for _ in range(count):
            await db.write(lambda conn: conn.execute(text("SELECT 1")).scalar())

    return call


async def main(repeats: int) -> None:
    rows: list[tuple[str, float, float, str, float | None]] = []

    def row(name: str, ms: float, floor: float, target: str = "-", limit: float | None = None) -> None:
        rows.append((name, ms, floor, target, limit))

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

            runners.append(db := open_runner(long_engine))
            repo = ChatRepository(db)
            branch = await repo.active_branch(long_id)
            assert len(branch) == MAIN and all(m.sibling_count == 2 for m in branch[1:]), "unexpected shape"
            floor = await timed(select_one(db), repeats * 5)
            branch_ms = await timed(lambda: repo.active_branch(long_id), repeats)
            row("(a) active_branch: 1,000 of 100,000 messages", branch_ms, floor, "≤ 50 ms", 50.0)

            runners.append(db := open_runner(many_engine))
            repo = ChatRepository(db)
            floor = await timed(select_one(db), repeats * 5)
            page = await repo.list_conversations(limit=50)
            assert len(page.items) == 50 and page.total == CONVERSATIONS - CONVERSATIONS // 10
            list_ms = await timed(lambda: repo.list_conversations(limit=50), repeats)
            row("(b) list_conversations: first 50 of 10,000", list_ms, floor, "≤ 20 ms", 20.0)

            samples: list[float] = []
            for cid in ids[1 : repeats * 3 + 4]:  # a fresh conversation each time
                leaf = (await repo.get_conversation(cid)).current_leaf_id
                start = time.perf_counter()
                await one_send(repo, cid, leaf)
                samples.append((time.perf_counter() - start) * 1000)
            send_ms = statistics.median(samples[3:])
            row("(c) one send: 2 inserts, 6 updates, metric, title", send_ms, floor, "≤ 3 ms", 3.0)
            floor_ms = await timed(empty_transactions(db, 10), repeats)
            row("(c)'s floor: 10 units of work running SELECT 1", floor_ms, floor)

            matches = (await repo.list_conversations(q=QUERY, limit=50)).total
            search_ms = await timed(lambda: repo.list_conversations(q=QUERY, limit=50), repeats)
            row(f"list_conversations(q={QUERY!r}): {matches} of 10,000 match", search_ms, floor)
            hits_ms = await timed(lambda: repo.search(QUERY), repeats)
            row(f"search({QUERY!r}): best 10 of 100,000 messages", hits_ms, floor)
        finally:
            for runner in runners:
                await runner.close()
            await long_engine.dispose()
            await many_engine.dispose()

    print()
    print(
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; "
        f"median of {repeats} ({repeats * 3} sends); baseline: one SELECT 1 through the same runner"
    )
    print()
    print("| measure | mmstudio ms | baseline ms | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    for name, value, floor, target, limit in rows:
        met = "" if limit is None else ("yes" if value <= limit else "**NO**")
        print(f"| {name} | {value:.2f} | {floor:.3f} | {value / floor:.1f}x | {target} | {met} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=20)
    asyncio.run(main(parser.parse_args().repeats))
