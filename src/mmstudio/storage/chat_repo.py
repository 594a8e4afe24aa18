"""Chat Studio's storage (`ChatStore`): conversations, message trees, search, prompt profiles, chat metrics.

Over 500 lines because it is one contract (`domain.chat.store.ChatStore`) whose parts share the row
mappers and the search query builder; splitting it would spread one table's SQL over several modules.

Trees: every message is a row with `parent_id`. A branch is read with one recursive CTE from its leaf
up to the root, carrying whole rows; each path message's sibling count and position (same parent, or
for roots the same conversation; oldest first by `created_at`, then `seq`) are correlated counts on the
parent_id index in the same statement, so the cost follows the path, not the conversation's size.
The same SQL runs on SQLite and PostgreSQL.

Search differs by dialect: SQLite uses the FTS5 tables of migration 0003 (kept in sync by triggers,
`unicode61 remove_diacritics 2`, ranked by bm25); PostgreSQL matches `to_tsvector('simple', …)` through
the GIN expression indexes of the same migration, ranked by `ts_rank` ('simple' keeps diacritics).
Both get the same query: the words of the input (letters and digits), each a prefix, all required.
Input never reaches either query syntax unquoted, so no input can make a query fail.
"""

from __future__ import annotations

import dataclasses
import re
import statistics
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    Column,
    ColumnElement,
    String,
    Table,
    and_,
    bindparam,
    case,
    column,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from mmstudio.domain.chat.types import (
    ROLES,
    ROUTING_PROFILES,
    STATUSES,
    Conversation,
    ConversationPage,
    ConversationUpdate,
    Message,
    MessageMetric,
    MessageProgress,
    ModelChatStats,
    NewMessage,
    PromptProfile,
    RoutingProfileName,
    SearchHit,
    text_of,
)
from mmstudio.errors import Conflict, InvalidRequest, NotFound, StudioError
from mmstudio.storage._time import utc, utc_now
from mmstudio.storage.runner import Runner
from mmstudio.storage.tables import Base

T = TypeVar("T")

C = Base.metadata.tables["conversations"]
M = Base.metadata.tables["messages"]
P = Base.metadata.tables["prompt_profiles"]
X = Base.metadata.tables["chat_metrics"]

UNFINISHED = ("pending", "streaming")
# What a progress update may set besides parts and status; an imported message's `extra` takes the same.
PROGRESS_FIELDS = tuple(
    f.name for f in dataclasses.fields(MessageProgress) if f.name not in ("parts", "status")
)
EXTRA_FIELDS = frozenset({*PROGRESS_FIELDS, "updated_at"})
UNKNOWN_MODEL = "unknown"  # metrics of messages that failed before any model answered
MAX_PAGE = 1000
MAX_WORDS = 32  # of a search query; more words only narrow the result further
MAX_WORD = 64  # characters kept of each word: a prefix of a prefix still matches (and fits tsquery)
SNIPPET_CHARS = 160
SNIPPET_TOKENS = 24  # SQLite's snippet() counts tokens: 24 is about 160 characters of prose


def _columns(table: Table, cls: type[Any]) -> tuple[Column[Any], ...]:
    """The table's columns that are fields of the domain class (rows then map onto it by name)."""
    return tuple(table.c[f.name] for f in dataclasses.fields(cls) if f.name in table.c)


MESSAGE_COLUMNS = _columns(M, Message)
MESSAGE_FIELDS = tuple(c.name for c in MESSAGE_COLUMNS)  # what a new message's row says of it
CONVERSATION_COLUMNS = _columns(C, Conversation)
PROFILE_COLUMNS = _columns(P, PromptProfile)
METRIC_COLUMNS = _columns(X, MessageMetric)

# The newest child (latest created_at, then highest seq) at each step, until a message has none.
NEWEST_LEAF = text(
    """
    WITH RECURSIVE walk(id, depth) AS (
        SELECT id, 0 FROM messages WHERE id = :message_id
        UNION ALL
        SELECT (SELECT c.id FROM messages c WHERE c.parent_id = walk.id
                ORDER BY c.created_at DESC, c.seq DESC LIMIT 1),
               walk.depth + 1
        FROM walk WHERE walk.id IS NOT NULL
    )
    SELECT id FROM walk WHERE id IS NOT NULL ORDER BY depth DESC LIMIT 1
    """
)


def _probe(root: bool) -> Any:
    """Checks before adding a message, in one round trip: the conversation exists, which conversation
    the parent is in, and where the new message falls among its siblings (it gets the highest seq,
    so it follows those created at the same time)."""
    if root:
        siblings = and_(M.c.parent_id.is_(None), M.c.conversation_id == bindparam("cid"))
        owner: Any = literal_column("NULL")
    else:
        siblings = M.c.parent_id == bindparam("parent")
        owner = select(M.c.conversation_id).where(M.c.id == bindparam("parent")).scalar_subquery()
    return select(
        C.c.id,
        owner,
        select(func.count()).where(siblings).scalar_subquery(),
        select(func.count()).where(siblings, M.c.created_at <= bindparam("created")).scalar_subquery(),
    ).where(C.c.id == bindparam("cid"))


# Built once: these run on every send, where building and cache-keying statements showed in profiles.
ROOT_PROBE, CHILD_PROBE = _probe(True), _probe(False)
INSERT_MESSAGE = insert(M)
GET_MESSAGE = select(*MESSAGE_COLUMNS).where(M.c.id == bindparam("message_id"))
GET_CONVERSATION = select(*CONVERSATION_COLUMNS).where(C.c.id == bindparam("cid"))
INSERT_CONVERSATION = insert(C).returning(*CONVERSATION_COLUMNS)
# A generated title replaces only the one the conversation was created with, never the user's.
NAME_CONVERSATION = (
    update(C)
    .where(C.c.id == bindparam("cid"), C.c.title == bindparam("replacing"))
    .values(title=bindparam("new_title"), updated_at=bindparam("now"))
)
_changed = bindparam("changed", type_=M.c.updated_at.type)
# Imports add old messages: a conversation's updated_at only ever moves forward.
BUMP = (
    update(C)
    .where(C.c.id == bindparam("cid"))
    .values(updated_at=case((C.c.updated_at < _changed, _changed), else_=C.c.updated_at))
)
BUMP_AND_MAKE_CURRENT = BUMP.values(current_leaf_id=bindparam("leaf"))
UPDATE_MESSAGE = update(M).where(M.c.id == bindparam("message_id_"))  # SET: the parameters given
UPDATE_CONVERSATION = (
    update(C).where(C.c.id == bindparam("conversation_id_")).returning(*CONVERSATION_COLUMNS)
)
INSERT_METRIC = insert(X)


def _domain(cls: Callable[..., T], row: Row[Any], **extra: Any) -> T:
    """`cls` from a row of `_columns(table, cls)` (+ any later fields), with UTC on its timestamps."""
    item = cls(*row, **extra)  # positional: the columns are in field order (and this is the hot path)
    for name in ("created_at", "updated_at"):
        value = getattr(item, name, None)
        if value is not None and value.tzinfo is None:
            setattr(item, name, value.replace(tzinfo=UTC))
    return item


def search_words(q: str | None) -> list[str]:
    """The words of a query as both search engines see them: runs of letters and digits (`_` splits
    words, as both tokenizers do), at most MAX_WORDS, each cut to MAX_WORD characters."""
    if not q:
        return []
    words = [part for word in re.findall(r"\w+", q) for part in word.split("_") if part]
    return [word[:MAX_WORD] for word in words[:MAX_WORDS]]


def fts5_query(words: Sequence[str]) -> str:
    """`"w1"* AND "w2"*`: every word a quoted prefix term, so FTS5 operators in the input are words."""
    return " AND ".join('"' + word.replace('"', '""') + '"*' for word in words)


def tsquery(words: Sequence[str]) -> str:
    """`'w1':* & 'w2':*` for `to_tsquery`; the words hold only letters and digits, so quoting is exact."""
    return " & ".join("'" + word.replace("'", "''").replace("\\", "\\\\") + "':*" for word in words)


_SIMPLE: ColumnElement[Any] = literal_column("'simple'")


def _pg_matches(document: ColumnElement[Any], query: str) -> ColumnElement[bool]:
    return func.to_tsvector(_SIMPLE, document).bool_op("@@")(func.to_tsquery(_SIMPLE, query))


def _sqlite_condition(words: Sequence[str]) -> ColumnElement[bool]:
    matching = text(
        "SELECT m.conversation_id FROM messages_fts JOIN messages m ON m.seq = messages_fts.rowid "
        "WHERE messages_fts MATCH :fts "
        "UNION SELECT conversation_id FROM conversations_fts WHERE conversations_fts MATCH :fts"
    ).columns(column("conversation_id", String))
    return C.c.id.in_(matching.bindparams(fts=fts5_query(words)))


def _pg_condition(words: Sequence[str]) -> ColumnElement[bool]:
    # A UNION (not OR) so each side can use its GIN index (migration 0003: ix_messages_fts and
    # ix_conversations_fts, built on exactly these to_tsvector('simple', …) expressions).
    query = tsquery(words)
    in_messages = select(M.c.conversation_id).where(_pg_matches(M.c.text, query))
    in_titles = select(C.c.id).where(_pg_matches(C.c.title, query))
    return C.c.id.in_(in_messages.union(in_titles))


def _snippet(body: str, words: Sequence[str]) -> str:
    """About SNIPPET_CHARS characters of `body` around the first word that starts with a query word."""
    flat = " ".join(body.split())
    pattern = re.compile(r"(?<![^\W_])(?:" + "|".join(re.escape(w) for w in words) + ")", re.IGNORECASE)
    found = pattern.search(flat)
    start = max(0, found.start() - SNIPPET_CHARS // 4) if found else 0
    if start > 0:
        space = flat.rfind(" ", 0, start)
        start = space + 1 if space >= 0 and start - space < 20 else start
    end = min(len(flat), start + SNIPPET_CHARS)
    if end < len(flat):
        space = flat.rfind(" ", start, end)
        end = space if space > start + SNIPPET_CHARS // 2 else end
    return ("…" if start > 0 else "") + flat[start:end] + ("…" if end < len(flat) else "")


def _branch_statement(leaf: ColumnElement[Any]) -> Any:
    """Root → `leaf` (a message id expression) with each message's sibling count and position."""
    # The CTE carries whole rows, so the walk reads each message once (no join back by seq).
    names = [c.name for c in MESSAGE_COLUMNS] + ["seq"]
    up = M.alias("up")
    anchor = select(*MESSAGE_COLUMNS, M.c.seq, literal_column("0").label("depth")).where(M.c.id == leaf)
    path = anchor.cte("path", recursive=True)
    path = path.union_all(
        select(*(up.c[n] for n in names), path.c.depth + 1).where(up.c.id == path.c.parent_id)
    )
    # Counted per message of the path with the parent_id index, so the cost follows the path's
    # length and its messages' sibling counts, never the size of the conversation.
    s = M.alias("s")

    def siblings(*condition: ColumnElement[bool]) -> Any:
        roots = select(func.count()).select_from(s)
        roots = roots.where(
            s.c.parent_id.is_(None), s.c.conversation_id == path.c.conversation_id, *condition
        )
        children = select(func.count()).select_from(s).where(s.c.parent_id == path.c.parent_id, *condition)
        return case((path.c.parent_id.is_(None), roots.scalar_subquery()), else_=children.scalar_subquery())

    up_to_here = or_(
        s.c.created_at < path.c.created_at, and_(s.c.created_at == path.c.created_at, s.c.seq <= path.c.seq)
    )
    return select(
        *(path.c[c.name] for c in MESSAGE_COLUMNS),
        siblings().label("sibling_count"),
        siblings(up_to_here).label("sibling_index"),
    ).order_by(path.c.depth.desc())


BRANCH_TO = _branch_statement(bindparam("leaf", type_=String))
ACTIVE_BRANCH = _branch_statement(
    select(C.c.current_leaf_id).where(C.c.id == bindparam("cid")).scalar_subquery()
)


def _check_choice(value: str, allowed: Sequence[str], field: str) -> None:
    if value not in allowed:
        raise InvalidRequest(f"{field} must be one of {', '.join(allowed)}; got {value!r}", field=field)


class ChatRepository:
    """Implements `mmstudio.domain.chat.store.ChatStore` on SQLite (with FTS5) or PostgreSQL.

    Each method's SQL is one unit of work, a sync function of a `Connection`, run by `db` (see
    `storage.runner`): on SQLite files on the runner's threads, on PostgreSQL on the async engine."""

    def __init__(self, db: Runner) -> None:
        if db.dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported dialect {db.dialect!r}: sqlite or postgresql")
        self._db = db
        self._postgres = db.dialect == "postgresql"

    # -- conversations ---------------------------------------------------------------------------

    async def create_conversation(
        self,
        *,
        title: str = "New chat",
        model: str | None = None,
        prompt_profile_id: str | None = None,
        routing_profile: RoutingProfileName = "direct",
        id: str | None = None,
        created_at: datetime | None = None,
    ) -> Conversation:
        _check_choice(routing_profile, ROUTING_PROFILES, "routing_profile")
        when = utc(created_at) if created_at is not None else utc_now()
        if id is not None and not 0 < len(id) <= 36:
            raise InvalidRequest("a conversation id has 1 to 36 characters", field="id")
        values = {
            "id": id or str(uuid.uuid4()),
            "title": title[:300],
            "model": model,
            "prompt_profile_id": prompt_profile_id,
            "routing_profile": routing_profile,
            "pinned": False,
            "archived": False,
            "current_leaf_id": None,
            "created_at": when,
            "updated_at": when,
        }

        def work(conn: Connection) -> Row[Any]:
            if prompt_profile_id is not None:
                _require_profile(conn, prompt_profile_id)
            return conn.execute(INSERT_CONVERSATION, values).one()

        try:
            row = await self._db.write(work)
        except IntegrityError as exc:
            raise Conflict(f"conversation {values['id']} already exists", field="id") from exc
        return _domain(Conversation, row)

    async def get_conversation(self, conversation_id: str) -> Conversation:
        row = await self._db.read(
            lambda conn: conn.execute(GET_CONVERSATION, {"cid": conversation_id}).first()
        )
        if row is None:
            raise NotFound(f"conversation {conversation_id} not found")
        return _domain(Conversation, row)

    async def conversation_with_branch(
        self, conversation_id: str, leaf_id: str | None = None
    ) -> tuple[Conversation, list[Message]]:
        def work(conn: Connection) -> tuple[Row[Any] | None, Sequence[Row[Any]]]:
            row = conn.execute(GET_CONVERSATION, {"cid": conversation_id}).first()
            leaf = leaf_id if leaf_id is not None else row.current_leaf_id if row is not None else None
            return row, conn.execute(BRANCH_TO, {"leaf": leaf}).all() if leaf is not None else []

        row, rows = await self._db.read(work)
        if row is None:
            raise NotFound(f"conversation {conversation_id} not found")
        if leaf_id is not None and not rows:
            raise NotFound(f"message {leaf_id} not found")
        return _domain(Conversation, row), [_domain(Message, r) for r in rows]

    async def list_conversations(
        self, *, q: str | None = None, limit: int = 50, offset: int = 0, archived: bool = False
    ) -> ConversationPage:
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}; got {limit}", field="limit")
        if offset < 0:
            raise InvalidRequest(f"offset must be 0 or more; got {offset}", field="offset")
        where: list[ColumnElement[bool]] = [C.c.archived == archived]
        words = search_words(q)
        if words:
            where.append(_pg_condition(words) if self._postgres else _sqlite_condition(words))
        page = (
            select(*CONVERSATION_COLUMNS)
            .where(*where)
            .order_by(C.c.pinned.desc(), C.c.updated_at.desc(), C.c.id)
            .limit(limit)
            .offset(offset)
        )

        def work(conn: Connection) -> tuple[int, Sequence[Row[Any]], dict[str, int]]:
            total = conn.execute(select(func.count()).select_from(C).where(*where)).scalar_one()
            rows = conn.execute(page).all()
            counts: dict[str, int] = {}
            if rows:
                grouped = (
                    select(M.c.conversation_id, func.count())
                    .where(M.c.conversation_id.in_([r.id for r in rows]))
                    .group_by(M.c.conversation_id)
                )
                counts = {cid: n for cid, n in conn.execute(grouped).all()}
            return int(total), rows, counts

        total, rows, counts = await self._db.read(work)
        items = [_domain(Conversation, r, message_count=counts.get(r.id, 0)) for r in rows]
        return ConversationPage(items=items, total=total, limit=limit, offset=offset)

    async def update_conversation(self, conversation_id: str, update: ConversationUpdate) -> Conversation:
        values: dict[str, Any] = {"conversation_id_": conversation_id, "updated_at": utc_now()}
        if update.title is not None:
            values["title"] = update.title[:300]
        if update.clear_model:
            values["model"] = None
        elif update.model is not None:
            values["model"] = update.model
        if update.clear_prompt_profile:
            values["prompt_profile_id"] = None
        elif update.prompt_profile_id is not None:
            values["prompt_profile_id"] = update.prompt_profile_id
        if update.routing_profile is not None:
            _check_choice(update.routing_profile, ROUTING_PROFILES, "routing_profile")
            values["routing_profile"] = update.routing_profile
        if update.pinned is not None:
            values["pinned"] = update.pinned
        if update.archived is not None:
            values["archived"] = update.archived

        def work(conn: Connection) -> Row[Any] | None:
            if values.get("prompt_profile_id") is not None:
                _require_profile(conn, values["prompt_profile_id"])
            return conn.execute(UPDATE_CONVERSATION, values).first()

        row = await self._db.write(work)
        if row is None:
            raise NotFound(f"conversation {conversation_id} not found")
        return _domain(Conversation, row)

    async def name_conversation(self, conversation_id: str, title: str, *, replacing: str) -> bool:
        values = {"cid": conversation_id, "new_title": title[:300], "replacing": replacing, "now": utc_now()}
        return bool(await self._db.write(lambda conn: conn.execute(NAME_CONVERSATION, values).rowcount))

    async def delete_conversation(self, conversation_id: str) -> None:
        # Messages, their metrics and the conversation's documents go with it (ON DELETE CASCADE).
        statement = delete(C).where(C.c.id == conversation_id)
        if not await self._db.write(lambda conn: conn.execute(statement).rowcount):
            raise NotFound(f"conversation {conversation_id} not found")

    async def set_current_leaf(self, conversation_id: str, message_id: str) -> None:
        belongs = select(M.c.seq).where(M.c.id == message_id, M.c.conversation_id == conversation_id).exists()
        statement = (
            update(C)
            .where(C.c.id == conversation_id, belongs)
            .values(current_leaf_id=message_id, updated_at=utc_now())
        )

        def work(conn: Connection) -> None:
            if conn.execute(statement).rowcount:
                return
            _require_conversation(conn, conversation_id)
            owner = conn.scalar(select(M.c.conversation_id).where(M.c.id == message_id))
            if owner is None:
                raise NotFound(f"message {message_id} not found")
            raise InvalidRequest(f"message {message_id} belongs to another conversation", field="message_id")

        await self._db.write(work)

    # -- messages --------------------------------------------------------------------------------

    async def add_message(
        self, conversation_id: str, message: NewMessage, *, make_current: bool = True
    ) -> Message:
        (added,) = await self._add(conversation_id, [_message_values(conversation_id, message)], make_current)
        return added

    async def add_turn(
        self, conversation_id: str, question: NewMessage, answer: NewMessage
    ) -> tuple[Message, Message]:
        first = _message_values(conversation_id, question)
        second = _message_values(conversation_id, dataclasses.replace(answer, parent_id=first["id"]))
        added, answering = await self._add(conversation_id, [first, second], True)
        return added, answering

    async def _add(
        self, conversation_id: str, rows: list[dict[str, Any]], make_current: bool
    ) -> list[Message]:
        """Insert `rows` in one transaction: the first under its parent (checked), each next one under
        the one before it (new, so it has no siblings), bumping the conversation once."""
        first = rows[0]
        parent = first["parent_id"]
        changed = max(row["updated_at"] for row in rows)

        def work(conn: Connection) -> tuple[int, int]:
            probe = ROOT_PROBE if parent is None else CHILD_PROBE
            params = {"cid": conversation_id, "parent": parent, "created": first["created_at"]}
            found = conn.execute(probe, params).first()
            if found is None:
                raise NotFound(f"conversation {conversation_id} not found")
            _, owner, sibling_count, before = found
            if parent is not None and owner is None:
                raise NotFound(f"message {parent} not found")
            if parent is not None and owner != conversation_id:
                raise InvalidRequest(f"message {parent} belongs to another conversation", field="parent_id")
            for row in rows:
                conn.execute(INSERT_MESSAGE, row)
            bump = BUMP_AND_MAKE_CURRENT if make_current else BUMP
            conn.execute(bump, {"cid": conversation_id, "changed": changed, "leaf": rows[-1]["id"]})
            return sibling_count, before

        try:
            sibling_count, before = await self._db.write(work)
        except IntegrityError as exc:
            # A duplicate id, or the conversation or parent was deleted after the probe.
            ids = [row["id"] for row in rows]
            taken = await self._db.read(lambda conn: conn.scalar(select(M.c.id).where(M.c.id.in_(ids))))
            if taken is not None:
                raise Conflict(f"message {taken} already exists", field="id") from exc
            raise NotFound(f"conversation {conversation_id} or message {parent} no longer exists") from exc
        added = [_message_of(first, sibling_count + 1, before + 1)]
        return added + [_message_of(row, 1, 1) for row in rows[1:]]

    async def get_message(self, message_id: str) -> Message:
        row = await self._db.read(lambda conn: conn.execute(GET_MESSAGE, {"message_id": message_id}).first())
        if row is None:
            raise NotFound(f"message {message_id} not found")
        return _domain(Message, row)

    async def update_message(self, message_id: str, progress: MessageProgress) -> None:
        values = _progress_values(message_id, progress)
        if not await self._db.write(lambda conn: conn.execute(UPDATE_MESSAGE, values).rowcount):
            raise NotFound(f"message {message_id} not found")

    async def finish_message(self, message_id: str, progress: MessageProgress, metric: MessageMetric) -> None:
        values = _progress_values(message_id, progress)
        measured = _metric_values(metric)

        def work(conn: Connection) -> None:
            if not conn.execute(UPDATE_MESSAGE, values).rowcount:
                raise NotFound(f"message {message_id} not found")
            conn.execute(INSERT_METRIC, measured)

        try:
            await self._db.write(work)
        except IntegrityError as exc:
            raise await self._metric_refused(metric) from exc

    async def path_to(self, message_id: str) -> list[Message]:
        rows = await self._db.read(lambda conn: conn.execute(BRANCH_TO, {"leaf": message_id}).all())
        if not rows:
            raise NotFound(f"message {message_id} not found")
        return [_domain(Message, r) for r in rows]

    async def active_branch(self, conversation_id: str) -> list[Message]:
        def work(conn: Connection) -> Sequence[Row[Any]]:
            rows = conn.execute(ACTIVE_BRANCH, {"cid": conversation_id}).all()
            if not rows:
                _require_conversation(conn, conversation_id)
            return rows

        return [_domain(Message, r) for r in await self._db.read(work)]

    async def all_messages(self, conversation_id: str) -> list[Message]:
        statement = (
            select(*MESSAGE_COLUMNS)
            .where(M.c.conversation_id == conversation_id)
            .order_by(M.c.created_at, M.c.seq)
        )

        def work(conn: Connection) -> Sequence[Row[Any]]:
            rows = conn.execute(statement).all()
            if not rows:
                _require_conversation(conn, conversation_id)
            return rows

        rows = await self._db.read(work)
        # Rows come oldest first, so a message's position among its siblings is its arrival order.
        counts: dict[str | None, int] = {}
        positions: list[int] = []
        for row in rows:
            counts[row.parent_id] = counts.get(row.parent_id, 0) + 1
            positions.append(counts[row.parent_id])
        return [
            _domain(Message, r, sibling_count=counts[r.parent_id], sibling_index=i)
            for r, i in zip(rows, positions, strict=True)
        ]

    async def newest_leaf_under(self, message_id: str) -> str:
        leaf = await self._db.read(lambda conn: conn.scalar(NEWEST_LEAF, {"message_id": message_id}))
        if leaf is None:
            raise NotFound(f"message {message_id} not found")
        return str(leaf)

    async def sibling_ids(self, message_id: str) -> list[str]:
        """The ids of `message_id` and its siblings (same parent), oldest first."""
        s = M.alias("s")
        target = select(M.c.conversation_id, M.c.parent_id).where(M.c.id == message_id).subquery()
        same_parent = or_(
            s.c.parent_id == target.c.parent_id,
            and_(s.c.parent_id.is_(None), target.c.parent_id.is_(None)),
        )
        statement = (
            select(s.c.id)
            .select_from(s.join(target, s.c.conversation_id == target.c.conversation_id))
            .where(same_parent)
            .order_by(s.c.created_at, s.c.seq)
        )
        ids: list[str] = await self._db.read(lambda conn: list(conn.scalars(statement).all()))
        if not ids:
            raise NotFound(f"message {message_id} not found")
        return ids

    async def interrupt_unfinished(self, reason: str) -> int:
        unfinished = select(M.c.id, M.c.parts).where(M.c.status.in_(UNFINISHED))
        # Streaming writes left `text` (what search indexes) behind the parts: catch it up here.
        end = (
            update(M)
            .where(M.c.id == bindparam("mid"), M.c.status.in_(UNFINISHED))
            .values(status="interrupted", error=reason, updated_at=utc_now(), text=bindparam("body"))
        )

        def work(conn: Connection) -> int:
            rows = conn.execute(unfinished).all()
            ended = [conn.execute(end, {"mid": mid, "body": text_of(p)}).rowcount for mid, p in rows]
            return sum(ended)

        return await self._db.write(work)

    async def search(self, q: str, *, limit: int = 10) -> list[SearchHit]:
        """Message hits best first, then conversations whose title matches but none of whose messages
        are among those hits (`message_id` None, the title as snippet); at most `limit` in all."""
        words = search_words(q)
        if not words or limit < 1:
            return []
        find = _search_pg if self._postgres else _search_sqlite
        messages, titles = await self._db.read(lambda conn: find(conn, words, limit))
        seen = {hit.conversation_id for hit in messages}
        title_hits = [
            SearchHit(conversation_id=cid, message_id=None, title=title, snippet=title)
            for cid, title in titles
            if cid not in seen
        ]
        return (messages + title_hits)[:limit]

    # -- prompt profiles -------------------------------------------------------------------------

    async def create_prompt_profile(
        self, *, name: str, system_prompt: str, parameters: dict[str, Any], memory: bool
    ) -> PromptProfile:
        name = _profile_name(name)
        now = utc_now()
        values = {
            "id": str(uuid.uuid4()),
            "name": name,
            "system_prompt": system_prompt,
            "parameters": parameters,
            "memory": memory,
            "created_at": now,
            "updated_at": now,
        }

        def work(conn: Connection) -> Row[Any]:
            _name_free(conn, name, None)
            return conn.execute(insert(P).values(values).returning(*PROFILE_COLUMNS)).one()

        try:
            row = await self._db.write(work)
        except IntegrityError as exc:  # created concurrently since the check
            raise Conflict(f"a prompt profile named {name!r} already exists", field="name") from exc
        return _domain(PromptProfile, row)

    async def list_prompt_profiles(self) -> list[PromptProfile]:
        statement = select(*PROFILE_COLUMNS).order_by(func.lower(P.c.name), P.c.id)
        rows = await self._db.read(lambda conn: conn.execute(statement).all())
        return [_domain(PromptProfile, r) for r in rows]

    async def get_prompt_profile(self, profile_id: str) -> PromptProfile:
        statement = select(*PROFILE_COLUMNS).where(P.c.id == profile_id)
        row = await self._db.read(lambda conn: conn.execute(statement).first())
        if row is None:
            raise NotFound(f"prompt profile {profile_id} not found")
        return _domain(PromptProfile, row)

    async def update_prompt_profile(
        self, profile_id: str, *, name: str, system_prompt: str, parameters: dict[str, Any], memory: bool
    ) -> PromptProfile:
        name = _profile_name(name)
        values = {
            "name": name,
            "system_prompt": system_prompt,
            "parameters": parameters,
            "memory": memory,
            "updated_at": utc_now(),
        }
        statement = update(P).where(P.c.id == profile_id).values(values).returning(*PROFILE_COLUMNS)

        def work(conn: Connection) -> Row[Any] | None:
            _name_free(conn, name, profile_id)
            return conn.execute(statement).first()

        try:
            row = await self._db.write(work)
        except IntegrityError as exc:  # renamed concurrently since the check
            raise Conflict(f"a prompt profile named {name!r} already exists", field="name") from exc
        if row is None:
            raise NotFound(f"prompt profile {profile_id} not found")
        return _domain(PromptProfile, row)

    async def delete_prompt_profile(self, profile_id: str) -> None:
        # Conversations using it keep going without one (ON DELETE SET NULL).
        statement = delete(P).where(P.c.id == profile_id)
        if not await self._db.write(lambda conn: conn.execute(statement).rowcount):
            raise NotFound(f"prompt profile {profile_id} not found")

    # -- metrics ---------------------------------------------------------------------------------

    async def add_metric(self, metric: MessageMetric) -> None:
        values = _metric_values(metric)
        try:
            await self._db.write(lambda conn: conn.execute(INSERT_METRIC, values))
        except IntegrityError as exc:
            raise await self._metric_refused(metric) from exc

    async def _metric_refused(self, metric: MessageMetric) -> StudioError:
        """Why the database refused `metric`: its message is gone, or it already has one."""
        message_id = metric.message_id
        known = await self._db.read(lambda conn: conn.scalar(select(M.c.id).where(M.c.id == message_id)))
        if known is None:
            return NotFound(f"message {message_id} not found")
        return InvalidRequest(f"message {message_id} already has a metric", field="message_id")

    async def metrics_by_model(self, *, since: datetime | None = None) -> list[ModelChatStats]:
        """Per model (NULL models as "unknown"), busiest first. Latency, TTFT and tokens/s averages and
        the p50 are over completed messages only (an error's latency is how long it took to fail);
        token sums count every message."""
        model = func.coalesce(X.c.model, UNKNOWN_MODEL).label("model_name")
        done = X.c.outcome == "complete"

        def when_done(value: Any) -> Any:
            return case((done, value))  # NULL otherwise: avg and percentile_cont skip it

        columns: list[Any] = [
            model,
            func.count(),
            func.sum(case((done, 0), else_=1)),
            func.sum(case((X.c.fallback, 1), else_=0)),
            func.avg(when_done(X.c.latency_ms)),
            func.avg(when_done(X.c.ttft_ms)),
            func.avg(when_done(X.c.tokens_per_second)),
            func.sum(X.c.input_tokens),
            func.sum(X.c.output_tokens),
        ]
        if self._postgres:
            columns.append(func.percentile_cont(0.5).within_group(when_done(X.c.latency_ms)))
        window = [X.c.created_at >= utc(since)] if since is not None else []
        statement = select(*columns).where(*window).group_by(model)
        narrow = select(model, X.c.latency_ms).where(*window, done, X.c.latency_ms.is_not(None))

        def work(conn: Connection) -> tuple[Sequence[Any], Sequence[Any]]:
            latencies = [] if self._postgres else conn.execute(narrow).all()
            return conn.execute(statement).all(), latencies

        rows, latency_rows = await self._db.read(work)
        latencies: dict[str, list[float]] = {}
        for name, latency in latency_rows:
            latencies.setdefault(name, []).append(latency)
        medians = {name: statistics.median(values) for name, values in latencies.items()}
        stats = [
            ModelChatStats(
                model=row[0],
                messages=int(row[1]),
                errors=int(row[2] or 0),
                fallbacks=int(row[3] or 0),
                avg_latency_ms=_number(row[4]),
                p50_latency_ms=_number(row[9]) if self._postgres else medians.get(row[0]),
                avg_ttft_ms=_number(row[5]),
                avg_tokens_per_second=_number(row[6]),
                input_tokens=int(row[7] or 0),
                output_tokens=int(row[8] or 0),
            )
            for row in rows
        ]
        return sorted(stats, key=lambda s: (-s.messages, s.model))

    async def recent_metrics(self, *, limit: int = 100) -> Sequence[MessageMetric]:
        statement = select(*METRIC_COLUMNS).order_by(X.c.created_at.desc(), X.c.message_id).limit(limit)
        rows = await self._db.read(lambda conn: conn.execute(statement).all())
        return [_domain(MessageMetric, r) for r in rows]


# -- the parts of units of work that several methods share ------------------------------------------


def _message_values(conversation_id: str, message: NewMessage) -> dict[str, Any]:
    """The `messages` row of a new message, checked; its id generated unless given."""
    _check_choice(message.role, ROLES, "role")
    _check_choice(message.status, STATUSES, "status")
    unknown = set(message.extra) - EXTRA_FIELDS
    if unknown:
        raise InvalidRequest(
            f"unknown message fields {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(sorted(EXTRA_FIELDS))}",
            field="extra",
        )
    extra = dict(message.extra)
    created = utc(message.created_at) if message.created_at is not None else utc_now()
    changed = utc(extra.pop("updated_at")) if extra.get("updated_at") is not None else created
    if message.id is not None and not 0 < len(message.id) <= 36:
        raise InvalidRequest("a message id has 1 to 36 characters", field="id")
    return {
        "id": message.id or str(uuid.uuid4()),
        "conversation_id": conversation_id,
        "parent_id": message.parent_id,
        "role": message.role,
        "parts": message.parts,
        "text": text_of(message.parts),
        "status": message.status,
        "model_requested": message.model_requested,
        "created_at": created,
        "updated_at": changed,
        **extra,
    }


def _message_of(values: dict[str, Any], sibling_count: int, sibling_index: int) -> Message:
    """The `Message` a row of `_message_values` became (no read back)."""
    fields: dict[str, Any] = {name: values.get(name) for name in MESSAGE_FIELDS}
    return Message(**fields, sibling_count=sibling_count, sibling_index=sibling_index)


def _progress_values(message_id: str, progress: MessageProgress) -> dict[str, Any]:
    """`UPDATE_MESSAGE`'s parameters: the fields `progress` sets, and updated_at."""
    values: dict[str, Any] = {"message_id_": message_id, "updated_at": utc_now()}
    if progress.parts is not None:
        values["parts"] = progress.parts
        if progress.status not in UNFINISHED:
            # `text` is what search indexes (FTS5 triggers, GIN index): re-indexing a growing answer
            # on every streaming write was two thirds of its SQLite time (measured, bench/README.md), so
            # it catches up with the parts when the message ends (interrupt_unfinished after a crash).
            values["text"] = text_of(progress.parts)
    if progress.status is not None:
        _check_choice(progress.status, STATUSES, "status")
        values["status"] = progress.status
    for name in PROGRESS_FIELDS:
        value = getattr(progress, name)
        if value is not None:
            values[name] = value
    return values


def _metric_values(metric: MessageMetric) -> dict[str, Any]:
    # Not dataclasses.asdict: it deep-copies every value, a cost every send paid.
    return {**{c.name: getattr(metric, c.name) for c in METRIC_COLUMNS}, "created_at": utc(metric.created_at)}


def _search_sqlite(
    conn: Connection, words: Sequence[str], limit: int
) -> tuple[list[SearchHit], list[tuple[str, str]]]:
    query = {"fts": fts5_query(words), "limit": limit}
    messages = conn.execute(
        text(
            "SELECT m.conversation_id, m.id, c.title, "
            f"snippet(messages_fts, 0, '', '', '…', {SNIPPET_TOKENS}) "
            "FROM messages_fts JOIN messages m ON m.seq = messages_fts.rowid "
            "JOIN conversations c ON c.id = m.conversation_id "
            "WHERE messages_fts MATCH :fts ORDER BY messages_fts.rank, m.seq DESC LIMIT :limit"
        ),
        query,
    )
    hits = [SearchHit(conversation_id=c, message_id=m, title=t, snippet=s) for c, m, t, s in messages]
    titles = conn.execute(
        text(
            "SELECT conversation_id, title FROM conversations_fts "
            "WHERE conversations_fts MATCH :fts ORDER BY rank LIMIT :limit"
        ),
        query,
    )
    return hits, [(c, t) for c, t in titles]


def _search_pg(
    conn: Connection, words: Sequence[str], limit: int
) -> tuple[list[SearchHit], list[tuple[str, str]]]:
    query = {"tsq": tsquery(words), "limit": limit}
    messages = conn.execute(
        text(
            "SELECT m.conversation_id, m.id, c.title, m.text "
            "FROM messages m JOIN conversations c ON c.id = m.conversation_id, "
            "to_tsquery('simple', :tsq) q "
            "WHERE to_tsvector('simple', m.text) @@ q "
            "ORDER BY ts_rank(to_tsvector('simple', m.text), q) DESC, m.seq DESC LIMIT :limit"
        ),
        query,
    )
    hits = [
        SearchHit(conversation_id=c, message_id=m, title=t, snippet=_snippet(body, words))
        for c, m, t, body in messages
    ]
    titles = conn.execute(
        text(
            "SELECT c.id, c.title FROM conversations c, to_tsquery('simple', :tsq) q "
            "WHERE to_tsvector('simple', c.title) @@ q "
            "ORDER BY ts_rank(to_tsvector('simple', c.title), q) DESC, c.updated_at DESC LIMIT :limit"
        ),
        query,
    )
    return hits, [(c, t) for c, t in titles]


def _name_free(conn: Connection, name: str, own_id: str | None) -> None:
    # Case-insensitive on both dialects (the unique constraint alone is case-sensitive). Two
    # concurrent creates of "A" and "a" could both pass; the constraint still stops exact twins.
    clash = select(P.c.name).where(func.lower(P.c.name) == name.lower())
    if own_id is not None:
        clash = clash.where(P.c.id != own_id)
    existing = conn.scalar(clash.limit(1))
    if existing is not None:
        raise Conflict(f"a prompt profile named {existing!r} already exists", field="name")


def _require_profile(conn: Connection, profile_id: str) -> None:
    if conn.scalar(select(P.c.id).where(P.c.id == profile_id)) is None:
        raise NotFound(f"prompt profile {profile_id} not found")


def _require_conversation(conn: Connection, conversation_id: str) -> None:
    if conn.scalar(select(C.c.id).where(C.c.id == conversation_id)) is None:
        raise NotFound(f"conversation {conversation_id} not found")


def _profile_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise InvalidRequest("a prompt profile needs a name", field="name")
    if len(name) > 100:
        raise InvalidRequest("a prompt profile name has at most 100 characters", field="name")
    return name


def _number(value: Any) -> float | None:
    return float(value) if value is not None else None


if TYPE_CHECKING:
    from mmstudio.domain.chat.store import ChatStore

    def _implements(repo: ChatRepository) -> ChatStore:
        return repo  # mypy checks here that the repository matches the protocol
