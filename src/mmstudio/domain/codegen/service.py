"""Creator Studio's service: a description becomes files, written by the model the user chose.

- Routing: the requested model, else the active model (the user's own, usually local), is tried
  first with its timeout (local 30 s), then the codegen fallback chain (config
  `codegen.fallback_chain`, else one cloud model per provider whose key is set) with theirs (cloud
  60 s). An offline local model is skipped straight to the next. The router does the trying, the
  retries, the metrics record and the session count; this service tells the caller about each
  attempt as it happens.
- Persist first: the project is stored (`generating`) before any model is called, its text is
  saved as it arrives, and its files and outcome when it ends. The generation belongs to this
  service, not to the HTTP response: a client that goes away only stops listening.
- Files are parsed out of the text as it streams (parser.py); each is announced as soon as its
  block closes. Generated code is only ever stored and shown, never executed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from mmstudio.config import CodegenConfig, RateLimit
from mmstudio.domain.broadcast import Broadcast
from mmstudio.domain.codegen import catalog, prompt
from mmstudio.domain.codegen.archive import zip_bytes
from mmstudio.domain.codegen.parser import FileStream
from mmstudio.domain.codegen.paths import project_slug
from mmstudio.domain.codegen.types import FileLimits, GeneratedFile, Project, ProjectPage, Skipped
from mmstudio.domain.plan import Candidate, Needs, Plan
from mmstudio.domain.router import Attempt, RouteInfo, RouteOptions, Router
from mmstudio.errors import (
    AllModelsFailed,
    InvalidRequest,
    NoModelAvailable,
    NoModelRegistered,
    ProviderError,
    ProviderProtocolError,
    RateLimited,
    StudioError,
)
from mmstudio.providers.base import ChatRequest

log = logging.getLogger(__name__)

EventType = Literal["project", "plan", "attempt", "attempt_failed", "text", "file", "done", "error"]

MAX_NAME = 120
MAX_DESCRIPTION = 20_000
MAX_PAGE = 100
SAVE_EVERY_SECONDS = 1.0  # partial text is written at most this often while streaming
INTERRUPTED = "the studio stopped before this generation finished"
CLOUD_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "XAI_API_KEY")


@dataclass(frozen=True, slots=True)
class CodegenRequest:
    name: str
    description: str
    framework: str
    target_type: str
    model: str | None = None  # id, name or alias; None: the active model


@dataclass(frozen=True)
class CodegenEvent:
    """One thing that happened while generating a project.

    `project`: stored, about to call a model · `plan`: the candidates in order and the models skipped ·
    `attempt`: trying `model` (attempt `number`) · `attempt_failed`: that attempt failed (`attempt`) ·
    `text`: a piece of output · `file`: a file is complete (a later one with the same path replaces it) ·
    `done`: the finished project · `error`: the generation failed (`error`; `project` as stored)."""

    type: EventType
    project_id: str
    project: Project | None = None
    text: str = ""
    file: GeneratedFile | None = None
    model: str | None = None
    model_name: str | None = None
    model_kind: str | None = None  # "local" | "cloud"
    number: int | None = None
    timeout: float | None = None
    attempt: dict[str, Any] | None = None
    candidates: tuple[dict[str, Any], ...] = ()
    skipped: tuple[dict[str, Any], ...] = ()
    error: StudioError | None = None


class ProjectStore(Protocol):
    """What Creator Studio needs from storage (`mmstudio.storage.codegen_repo.CodegenRepository`).
    Unknown ids raise `NotFound`."""

    async def create(
        self, *, name: str, description: str, framework: str, target_type: str, model_requested: str | None
    ) -> Project: ...

    async def save_text(self, project_id: str, raw_text: str) -> None: ...

    async def finish(self, project: Project) -> None: ...

    async def get(self, project_id: str) -> Project: ...

    async def list(self, *, limit: int, offset: int) -> ProjectPage:
        """Newest first; items carry `file_count` but no files or text."""
        ...

    async def delete(self, project_id: str) -> None: ...

    async def interrupt_unfinished(self, reason: str) -> int: ...


class UserLimiter(Protocol):
    """The per-user rate limit (`mmstudio.domain.ratelimit.RateLimiter`)."""

    def for_user(self, user_id: str, limit: RateLimit) -> Any: ...

    async def hit(self, subject: Any) -> None: ...


@dataclass
class _Active:
    """A project being generated in this process: its events so far and who is listening."""

    project: Project
    events: Broadcast[CodegenEvent] = field(
        default_factory=lambda: Broadcast(lambda e: e.type in ("done", "error"))
    )
    done: asyncio.Event = field(default_factory=asyncio.Event)
    failure: StudioError | None = None
    task: asyncio.Task[None] | None = None

    def publish(self, event: CodegenEvent) -> None:
        self.events.publish(event)


class _Progress:
    """The router's attempt observer: turns each step into an event for the listeners."""

    def __init__(self, active: _Active) -> None:
        self.active = active

    def planned(self, plan: Plan) -> None:
        self.active.publish(
            CodegenEvent(
                "plan",
                self.active.project.id,
                candidates=tuple(_candidate(c) for c in plan.candidates),
                skipped=tuple({"model": m, "reason": r} for m, r in plan.skipped),
            )
        )

    def trying(self, candidate: Candidate, number: int) -> None:
        self.active.publish(
            CodegenEvent(
                "attempt",
                self.active.project.id,
                model=candidate.model_id,
                model_name=candidate.resolved.display_name,
                model_kind=candidate.resolved.entry.kind,
                number=number,
                timeout=candidate.timeout,
            )
        )

    def failed(self, candidate: Candidate, attempt: Attempt) -> None:
        self.active.publish(
            CodegenEvent(
                "attempt_failed",
                self.active.project.id,
                model=candidate.model_id,
                model_name=candidate.resolved.display_name,
                model_kind=candidate.resolved.entry.kind,
                attempt=attempt.as_dict(),
            )
        )


def _candidate(candidate: Candidate) -> dict[str, Any]:
    return {
        "model": candidate.model_id,
        "modelName": candidate.resolved.display_name,
        "kind": candidate.resolved.entry.kind,
        "timeoutS": candidate.timeout,
    }


class CodegenService:
    def __init__(
        self,
        store: ProjectStore,
        router: Router,
        config: CodegenConfig,
        limiter: UserLimiter | None = None,
    ) -> None:
        self.store = store
        self.router = router
        self.config = config
        self.limiter = limiter
        self.limits = FileLimits(
            max_files=config.max_files,
            max_file_bytes=config.max_file_kb * 1000,
            max_total_bytes=config.max_total_kb * 1000,
        )
        self._active: dict[str, _Active] = {}

    # -- checks ------------------------------------------------------------------------------------

    def check(self, request: CodegenRequest) -> CodegenRequest:
        """The request normalized, or `InvalidRequest` naming the field and what is allowed."""
        name = " ".join(request.name.split())
        if not name:
            raise InvalidRequest("projectName is empty: give the project a name", field="projectName")
        if len(name) > MAX_NAME:
            raise InvalidRequest(
                f"projectName is {len(name)} characters; at most {MAX_NAME} are allowed", field="projectName"
            )
        description = request.description.strip()
        if not description:
            raise InvalidRequest("description is empty: describe what to build", field="description")
        if len(description) > MAX_DESCRIPTION:
            raise InvalidRequest(
                f"description is {len(description)} characters; at most {MAX_DESCRIPTION} are allowed",
                field="description",
            )
        framework = catalog.framework(request.framework).id
        target = catalog.target_type(request.target_type).id
        model = request.model.strip() if request.model is not None and request.model.strip() else None
        return CodegenRequest(name, description, framework, target, model)

    def route(self, model: str | None) -> tuple[str | None, tuple[str, ...], Plan]:
        """The first model, the fallback chain after it, and the plan they make now. Raises
        `NoModelRegistered` when there is no model at all, `ModelNotFound` for an unknown `model`, and
        `NoModelAvailable` (saying which key would help) when every model is out."""
        planner = self.router.planner
        chain = self.config.fallback_chain or tuple(planner.cloud_chain())
        first = model or planner.default_model()
        if first is None and not chain:
            raise NoModelRegistered(
                "Register a model first: start a local engine (Ollama, LM Studio, llama.cpp) and add it "
                "on the onboarding page (/onboarding), or set a cloud key "
                f"({', '.join(self._missing_keys()) or ', '.join(CLOUD_KEYS)})."
            )
        try:
            plan = planner.plan(first, Needs(), chain=chain)
        except NoModelAvailable as exc:
            raise NoModelAvailable(self._with_hint(exc.message, chain), exc.skipped) from None
        return first, chain, plan

    async def admit(self, user: str) -> None:
        """Count one generation for `user`, or `RateLimited` ("Too many requests, wait N s")."""
        if self.limiter is None:
            return
        subject = self.limiter.for_user(user, self.config.rate_limit)
        if subject is None:
            return
        try:
            await self.limiter.hit(subject)
        except RateLimited as exc:
            wait = max(1, round(exc.retry_after))
            raise RateLimited(
                f"Too many requests, wait {wait} s: Creator Studio allows "
                f"{self.config.rate_limit.rpm} generations per minute per user.",
                retry_after=wait,
            ) from None

    # -- generating --------------------------------------------------------------------------------

    async def start(
        self, request: CodegenRequest, *, user: str, options: RouteOptions | None = None
    ) -> Project:
        """Check, rate-limit and route the request, store the project and start generating; returns
        at once. Errors that stop it before a model is called are raised here."""
        checked = self.check(request)
        first, chain, _plan = self.route(checked.model)
        await self.admit(user)
        project = await self.store.create(
            name=checked.name,
            description=checked.description,
            framework=checked.framework,
            target_type=checked.target_type,
            model_requested=checked.model,
        )
        active = _Active(project)
        active.publish(CodegenEvent("project", project.id, project=replace(project)))
        self._active[project.id] = active
        base = options or RouteOptions()
        route = replace(base, route="codegen", fallbacks=True, chain=chain, observer=_Progress(active))
        active.task = asyncio.create_task(
            self._generate(active, checked, first, route), name=f"codegen-{project.id}"
        )
        return replace(project)

    async def generate(
        self, request: CodegenRequest, *, user: str, options: RouteOptions | None = None
    ) -> Project:
        """`start`, then wait for the end: the finished project, or the error that ended it."""
        project = await self.start(request, user=user, options=options)
        return await self.result(project.id)

    def listen(self, project_id: str) -> AsyncIterator[CodegenEvent]:
        """The project's events from its start: live while it generates here (subscribed as this
        returns, so call it right after `start`), else rebuilt from storage."""
        active = self._active.get(project_id)
        if active is not None:
            return active.events.subscribe()
        return self._stored_events(project_id)

    async def _stored_events(self, project_id: str) -> AsyncIterator[CodegenEvent]:
        project = await self.store.get(project_id)
        yield CodegenEvent("project", project.id, project=project)
        for file in project.files:
            yield CodegenEvent("file", project.id, file=file)
        if project.status == "complete":
            yield CodegenEvent("done", project.id, project=project)
        elif project.status != "generating":
            yield CodegenEvent("error", project.id, project=project, error=StudioError(project.error or ""))

    async def result(self, project_id: str) -> Project:
        """The finished project; raises the error that ended a failed generation in this process."""
        active = self._active.get(project_id)
        if active is None:
            return await self.store.get(project_id)
        await active.done.wait()
        if active.failure is not None:
            raise active.failure
        return active.project

    async def _generate(
        self, active: _Active, request: CodegenRequest, first: str | None, options: RouteOptions
    ) -> None:
        project = active.project
        framework = catalog.FRAMEWORKS[request.framework]
        target = catalog.TARGET_TYPES[request.target_type]
        chat = ChatRequest(
            model=first or "",
            messages=prompt.messages(
                name=request.name, description=request.description, framework=framework, target=target
            ),
            max_tokens=self.config.max_output_tokens,
        )
        stream = self.router.stream(chat, options)
        files = FileStream(limits=self.limits)
        failure: StudioError | None = None
        cut: str | None = None
        saved_at = time.monotonic()
        try:
            await stream.start()
            async for event in stream:
                if event.type == "text" and event.text:
                    active.publish(CodegenEvent("text", project.id, text=event.text))
                    for file in files.feed(event.text):
                        active.publish(CodegenEvent("file", project.id, file=file))
                    if len(files.text) > 2 * self.limits.max_total_bytes:
                        cut = (
                            f"the output passed {2 * self.limits.max_total_bytes // 1000} KB "
                            "(twice codegen.max_total_kb) and was stopped there"
                        )
                        break
                    if time.monotonic() - saved_at >= SAVE_EVERY_SECONDS:
                        saved_at = time.monotonic()
                        await self.store.save_text(project.id, files.text)
                elif event.type == "error":
                    failure = stream.info.error or ProviderError(event.error or "the generation failed")
        except StudioError as exc:
            failure = exc
        except asyncio.CancelledError:
            project.status = "interrupted"
            project.error = INTERRUPTED
            raise
        except Exception as exc:  # a bug here must still end the project, not leave it generating
            log.exception("generating project %s failed", project.id)
            failure = StudioError(f"unexpected error ({type(exc).__name__}); see the server log")
        finally:
            try:
                await stream.aclose()
            except Exception:
                log.exception("closing the stream of project %s failed", project.id)
            finally:
                await self._finish(active, files, stream.info, failure, cut, options.chain or ())

    async def _finish(
        self,
        active: _Active,
        files: FileStream,
        info: RouteInfo,
        failure: StudioError | None,
        cut: str | None,
        chain: Sequence[str],
    ) -> None:
        project = active.project
        parsed = files.finish()
        project.files = parsed.files
        project.file_count = len(parsed.files)
        project.skipped = list(parsed.skipped)
        if cut is not None:
            project.skipped.append(Skipped(None, cut))
        project.raw_text = files.text
        project.attempts = [a.as_dict() for a in info.attempts]
        project.model_used = info.model_used
        project.model_name = info.resolved.display_name if info.resolved is not None else None
        project.latency_ms = info.latency_ms if info.latency_ms is not None else info.elapsed_ms()
        project.finished_at = datetime.now(UTC)
        if project.status != "interrupted":
            if failure is not None:
                failure = self._explain(failure, info, chain)
            elif not parsed.files:
                who = project.model_name or project.model_used or "the model"
                failure = ProviderProtocolError(
                    f"{who} answered, but wrote no files in the expected shape (a 'File: path' line "
                    "and a fenced code block). Its output is kept with the project: try again, "
                    "describe the files you want, or choose another model.",
                    provider=info.resolved.entry.provider_id if info.resolved else "",
                    model=project.model_used,
                )
            if failure is not None:
                project.status = "failed"
                project.error = failure.message
            else:
                project.status = "complete"
        active.failure = failure
        try:
            await self.store.finish(project)
        except Exception:
            log.exception("could not store the end of project %s", project.id)
        finally:  # listeners and waiters must end even when the write failed
            self._active.pop(project.id, None)
            snapshot = replace(project, files=list(project.files), skipped=list(project.skipped))
            if project.status == "complete":
                active.publish(CodegenEvent("done", project.id, project=snapshot))
            else:
                error = failure or StudioError(project.error or INTERRUPTED)
                active.publish(CodegenEvent("error", project.id, project=snapshot, error=error))
            active.done.set()

    def _explain(self, failure: StudioError, info: RouteInfo, chain: Sequence[str]) -> StudioError:
        """Add what was skipped and, with no cloud fallback, which variable to set."""
        if not isinstance(failure, (AllModelsFailed, ProviderError, NoModelAvailable)):
            return failure
        message = failure.message
        skipped = [f"{m} {why}" for m, why in info.skipped if m not in message]
        if skipped and not isinstance(failure, NoModelAvailable):
            message = f"{message} Skipped: {'; '.join(skipped)}."
        message = self._with_hint(message, chain)
        if message == failure.message:
            return failure
        if isinstance(failure, AllModelsFailed):
            return AllModelsFailed(message, last=failure.last, attempts=failure.attempts)
        if isinstance(failure, NoModelAvailable):
            return NoModelAvailable(message, failure.skipped)
        attempts = [a.as_dict() for a in info.attempts]
        return AllModelsFailed(message, last=failure, attempts=attempts)

    def _with_hint(self, message: str, chain: Sequence[str]) -> str:
        if chain:
            return message
        keys = self._missing_keys()
        if not keys:
            return message
        return (
            f"{message.rstrip('.')}. No cloud model to fall back to: set {', '.join(keys[:-1])}"
            f"{' or ' if len(keys) > 1 else ''}{keys[-1]} (or list models in codegen.fallback_chain)."
        )

    def _missing_keys(self) -> list[str]:
        registry = self.router.registry
        return sorted(
            {e.key_env for e in registry.endpoints() if e.kind == "cloud" and e.key_env and not e.api_key},
            key=lambda k: CLOUD_KEYS.index(k) if k in CLOUD_KEYS else len(CLOUD_KEYS),
        )

    # -- projects --------------------------------------------------------------------------------

    async def get(self, project_id: str) -> Project:
        active = self._active.get(project_id)
        if active is not None:
            return replace(active.project)
        return await self.store.get(project_id)

    async def list_projects(self, *, limit: int = 20, offset: int = 0) -> ProjectPage:
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}; got {limit}", field="limit")
        if offset < 0:
            raise InvalidRequest(f"offset must be 0 or more; got {offset}", field="offset")
        return await self.store.list(limit=limit, offset=offset)

    async def delete(self, project_id: str) -> None:
        """Forget a project (a running generation is stopped first)."""
        active = self._active.get(project_id)
        if active is not None and active.task is not None:
            active.task.cancel()
            await asyncio.gather(active.task, return_exceptions=True)
        await self.store.delete(project_id)

    async def archive(self, project_id: str) -> tuple[str, bytes]:
        """The project's files as a ZIP: (file name, bytes)."""
        project = await self.get(project_id)
        if project.status == "generating":
            raise InvalidRequest(
                "this project is still generating: download it when it has finished", field="projectId"
            )
        root = project_slug(project.name)
        return f"{root}.zip", zip_bytes(root, project.files, created=project.created_at)

    # -- lifecycle -------------------------------------------------------------------------------

    async def recover(self) -> int:
        """At start-up: projects a previous process left generating become `interrupted`."""
        return await self.store.interrupt_unfinished(INTERRUPTED)

    async def close(self) -> None:
        """Stop every generation in flight; each is stored `interrupted` with the text it had."""
        tasks = [a.task for a in self._active.values() if a.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
