"""The `mmstudio` command line (Typer + Rich): serve, models, chat, codegen, conversations."""

from __future__ import annotations

import asyncio
import enum
import json
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from mmstudio import __version__
from mmstudio.domain.codegen.catalog import FRAMEWORKS, TARGET_TYPES
from mmstudio.domain.registry import ModelRequest
from mmstudio.errors import StudioError
from mmstudio.settings import Settings

if TYPE_CHECKING:
    from mmstudio.domain.types import ModelView
    from mmstudio.studio import Studio

T = TypeVar("T")
# uvicorn's websockets implementation that does not use websockets.legacy (deprecated, to be removed).
WS_IMPL = "websockets-sansio"

app = typer.Typer(
    help="mmstudio: your models, local and cloud, in one studio.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List, detect, register and check models.", no_args_is_help=True)
app.add_typer(models_app, name="models")
conversations_app = typer.Typer(help="List, show and export Chat Studio conversations.", no_args_is_help=True)
app.add_typer(conversations_app, name="conversations")

console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML config file (or MMSTUDIO_CONFIG)")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="data directory (or MMSTUDIO_DATA_DIR)")]

DOTS = {"healthy": "[green]●[/]", "offline": "[red]●[/]", "checking": "[bright_black]●[/]"}


def _settings(config: Path | None, data_dir: Path | None, **extra: Any) -> Settings:
    return Settings.from_env(config_path=config, data_dir=data_dir, **extra)


def with_worker(settings: Settings, *, run: bool, concurrency: int | None = None) -> Settings:
    """`settings` with the job worker on or off (and its pool size)."""
    videos = settings.config.videos.model_copy(
        update={"worker": run, **({"concurrency": concurrency} if concurrency is not None else {})}
    )
    return replace(settings, config=settings.config.model_copy(update={"videos": videos}))


def _run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine; a StudioError becomes a red message and exit code 1, never a traceback."""
    try:
        return asyncio.run(make())
    except StudioError as exc:
        err.print(f"[red]error:[/] {exc.message}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None


async def _with_studio(settings: Settings, work: Callable[[Studio], Awaitable[T]]) -> T:
    from mmstudio.studio import Studio

    studio = await Studio.open(settings)
    try:
        return await work(studio)
    finally:
        await studio.close()


async def _refresh(studio: Studio) -> None:
    with console.status("Detecting local engines and checking health…"):
        await asyncio.gather(studio.registry.detect(), studio.registry.health.check_all())


@app.callback(invoke_without_command=True)
def _main(version: Annotated[bool, typer.Option("--version", help="print the version")] = False) -> None:
    if version:
        console.print(f"mmstudio {__version__}")
        raise typer.Exit()


class LogLevel(enum.StrEnum):
    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"
    debug = "debug"


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on", min=1, max=65535)] = 8765,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    log_level: Annotated[
        LogLevel, typer.Option(help="log level of the server and mmstudio", envvar="MMSTUDIO_LOG_LEVEL")
    ] = LogLevel.info,
    no_worker: Annotated[
        bool,
        typer.Option(
            "--no-worker",
            help="serve the API only; `mmstudio worker` processes run the jobs (videos, images)",
        ),
    ] = False,
) -> None:
    """Start the studio (web UI, studio API, OpenAI-compatible API) on embedded defaults."""
    import logging

    from mmstudio.process import pause_collector

    pause_collector()  # until the studio is open (create_app's own_process settles the heap)

    import uvicorn

    from mmstudio.web.app import create_app

    try:
        settings = _settings(config, data_dir, host=host, port=port)
        settings.job_engine  # noqa: B018 - videos.engine checked against the database before serving
    except StudioError as exc:
        err.print(f"[red]error:[/] {exc.message}")
        raise typer.Exit(1) from None
    if no_worker:
        settings = with_worker(settings, run=False)
    err.print(f"mmstudio {__version__} on http://{host}:{port}  (data: {settings.data_dir.resolve()})")
    logging.basicConfig(
        level=log_level.value.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("procrastinate").setLevel(logging.WARNING)  # not a line per job deferred or run
    uvicorn.run(
        create_app(settings, own_process=True),
        host=host,
        port=port,
        log_level=log_level.value,
        access_log=False,
        ws=WS_IMPL,
    )


@models_app.command("list")
def models_list(
    all_models: Annotated[
        bool, typer.Option("--all", help="also list every model of cloud providers without a key")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Every model with its provider, modality, capabilities, health and latency."""

    async def work(studio: Studio) -> list[ModelView]:
        await _refresh(studio)
        return studio.registry.views()

    views = _run(lambda: _with_studio(_settings(config, data_dir), work))
    if as_json:
        from mmstudio.web.schemas import ModelPublic

        print(json.dumps([ModelPublic.of(v).model_dump(mode="json") for v in views], indent=2))
        return
    shown = [v for v in views if all_models or v.endpoint.enabled]
    hidden: dict[str, tuple[int, str]] = {}
    for v in views:
        if v not in shown:
            count, var = hidden.get(v.endpoint.display_name, (0, v.endpoint.key_env or ""))
            hidden[v.endpoint.display_name] = (count + 1, var)
    table = Table(title="Models", header_style="bold")
    for column in ("", "Model id", "Name", "Modality", "Capabilities", "Latency", "Sessions", "Last used"):
        table.add_column(column)
    shown.sort(key=lambda v: (v.entry.kind != "local", v.entry.provider_id, v.entry.id))
    for v in shown:
        caps = v.entry.capabilities
        badges = " ".join(
            name
            for name, on in (
                ("tools", caps.tools),
                ("vision", caps.vision),
                ("json", caps.json_mode),
                ("stream", caps.streaming),
            )
            if on
        )
        status = v.health.status if v.available else "offline"
        latency = f"{v.health.latency_ms:.0f} ms" if v.health.latency_ms is not None and v.available else "—"
        last = v.usage.last_used_at.strftime("%Y-%m-%d %H:%M") if v.usage.last_used_at else "—"
        table.add_row(
            DOTS[status],
            v.entry.id,
            v.entry.display_name,
            v.entry.modality,
            badges,
            latency,
            str(v.usage.sessions),
            last,
        )
    if shown:
        console.print(table)
    else:
        console.print(
            "No models yet. Start Ollama or LM Studio, set a cloud key, or run `mmstudio models add`."
        )
    for name, (count, var) in sorted(hidden.items()):
        console.print(
            f"[bright_black]{name}: {count} models unavailable; set {var} to enable them (--all lists)[/]"
        )


@models_app.command("detect")
def models_detect(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Look for local engines (Ollama, LM Studio, registered endpoints) and list what they serve."""

    async def work(studio: Studio) -> Any:
        with console.status("Detecting local engines…"):
            return await studio.registry.detect()

    results = _run(lambda: _with_studio(_settings(config, data_dir), work))
    for r in results:
        if r.ok:
            console.print(
                f"[green]●[/] {r.provider_id}: {len(r.models)} model(s): {', '.join(r.models) or '—'}"
            )
        else:
            console.print(f"[red]●[/] {r.provider_id}: {r.error}")


@models_app.command("health")
def models_health(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Probe every endpoint now and show status and latency."""

    async def work(studio: Studio) -> Any:
        with console.status("Probing endpoints…"):
            states = await studio.registry.health.check_all()
        return [(e, states.get(e.id)) for e in studio.registry.endpoints()]

    rows = _run(lambda: _with_studio(_settings(config, data_dir), work))
    table = Table(title="Endpoints", header_style="bold")
    for column in ("", "Provider", "Name", "URL", "Latency", "Detail"):
        table.add_column(column)
    for endpoint, state in rows:
        if state is None:
            table.add_row(
                DOTS["offline"],
                endpoint.provider_id,
                endpoint.display_name,
                endpoint.base_url,
                "—",
                f"set {endpoint.key_env} to enable",
            )
            continue
        latency = f"{state.latency_ms:.0f} ms" if state.latency_ms is not None else "—"
        table.add_row(
            DOTS[state.status],
            endpoint.provider_id,
            endpoint.display_name,
            endpoint.base_url,
            latency,
            state.last_error or (f"version {state.version}" if state.version else "ok"),
        )
    console.print(table)


@models_app.command("add")
def models_add(
    platform: Annotated[
        str, typer.Option(help="ollama, lmstudio, openai_compat, comfyui, automatic1111 or openai_images")
    ],
    model: Annotated[str, typer.Option(help="the model's name on the endpoint, e.g. gemma-2-2b")],
    name: Annotated[str, typer.Option(help="your name for it, e.g. 'My Gemma 2B'")] = "",
    url: Annotated[str | None, typer.Option(help="base URL (defaults to the platform's usual port)")] = None,
    alias: Annotated[str | None, typer.Option(help="a short alias to address it by")] = None,
    api_key_env: Annotated[
        str | None, typer.Option(help="environment variable holding the endpoint's key")
    ] = None,
    provider: Annotated[
        str | None, typer.Option(help="provider id used in model ids (default: from platform)")
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Register a model on an endpoint. The connection is tested first; a failure saves nothing."""
    from mmstudio.domain.endpoints import DEFAULT_URLS

    if platform not in DEFAULT_URLS:
        err.print(
            f"[red]error:[/] --platform {platform!r} is not allowed; use one of: {', '.join(DEFAULT_URLS)}"
        )
        raise typer.Exit(2)
    key = os.environ.get(api_key_env) if api_key_env else None
    if api_key_env and not key:
        err.print(f"[red]error:[/] {api_key_env} is not set")
        raise typer.Exit(2)
    base_url = url or DEFAULT_URLS[platform]

    async def work(studio: Studio) -> Any:
        with console.status(f"Testing {base_url}…"):
            return await studio.registry.register(
                platform=platform,  # type: ignore[arg-type]
                base_url=base_url,
                api_key=key,
                name=provider,
                models=[ModelRequest(model=model, name=name or model, alias=alias)],
            )

    registered = _run(lambda: _with_studio(_settings(config, data_dir), work))
    for m in registered.models:
        if m.upstream_model in (model, f"{model}:latest"):
            console.print(
                f"[green]✓[/] registered {m.display_name!r} as {registered.provider_id}/{m.upstream_model}"
                + (f" (alias {m.alias})" if m.alias else "")
            )


@app.command()
def chat(
    model: Annotated[
        str | None,
        typer.Argument(
            help="provider/model, a registered name or an alias; '-' or omitted: the conversation's"
        ),
    ] = None,
    prompt: Annotated[str | None, typer.Argument(help="the prompt; omit for an interactive chat")] = None,
    conversation: Annotated[
        str | None,
        typer.Option("--conversation", "-c", help="resume this conversation (see `conversations list`)"),
    ] = None,
    system: Annotated[str | None, typer.Option(help="a system prompt (new conversations)")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Chat with a model, streaming the answer. Every exchange is kept as a conversation you can
    resume with `-c ID`; without a prompt, an interactive session (/exit to quit)."""
    settings = _settings(config, data_dir)
    chosen = None if model in (None, "", "-") else model
    state: dict[str, str | None] = {"conversation": conversation}

    async def answer(studio: Studio, text: str) -> None:
        started = await studio.conversations.send(
            text, conversation_id=state["conversation"], model=chosen, system=system
        )
        state["conversation"] = started.conversation.id
        failure: str | None = None
        done: dict[str, Any] = {}
        async for event in started.generation.follow():
            if event.name == "delta":
                sys.stdout.write(event.data["text"])
                sys.stdout.flush()
            elif event.name == "tool_call":
                err.print(f"[dim]→ {event.data['name']}({json.dumps(event.data['arguments'])})[/]")
            elif event.name == "tool_result":
                err.print(f"[dim]← {event.data['content'][:200]}[/]")
            elif event.name in ("done", "interrupted"):
                done = event.data
            elif event.name == "error":
                done, failure = event.data, event.data.get("message") or "the answer failed"
        sys.stdout.write("\n")
        if done.get("fallback") and done.get("model"):
            err.print(
                f"[dim](answered by {done.get('modelName')} ({done['model']}) "
                f"after {len(done.get('attempts') or [])} attempts)[/]"
            )
        if failure is not None:
            raise StudioError(failure)

    async def work(studio: Studio) -> None:
        if state["conversation"] is not None:
            existing = await studio.conversations.store.get_conversation(state["conversation"])
            shown = chosen or existing.model or "the default model"
            if chosen or existing.model:
                await studio.registry.resolve_fresh(chosen or existing.model or "")  # detects engines
            err.print(f"Resuming “{existing.title}” with {shown}.")
        elif chosen is not None:
            await studio.registry.resolve_fresh(chosen)
        if prompt is not None:
            await answer(studio, prompt)
        else:
            if chosen is not None and state["conversation"] is None:
                resolved = studio.registry.resolve(chosen)
                err.print(f"Chatting with {resolved.display_name} ({resolved.entry.id}). /exit to quit.")
            while True:
                try:
                    line = await asyncio.to_thread(input, "> ")
                except EOFError:
                    break
                if line.strip() in ("/exit", "/quit"):
                    break
                if not line.strip():
                    continue
                try:
                    await answer(studio, line)
                except StudioError as exc:
                    err.print(f"[red]error:[/] {exc.message}")
        if state["conversation"] is not None:
            cid = state["conversation"]
            err.print(f"[dim]conversation {cid} (resume: mmstudio chat -c {cid})[/]")

    _run(lambda: _with_studio(settings, work))


@app.command()
def codegen(
    out: Annotated[Path, typer.Option("--out", "-o", help="directory to write the files into")],
    description: Annotated[str | None, typer.Argument(help="what to build")] = None,
    framework: Annotated[
        str | None, typer.Option("--framework", "-f", help=f"one of: {', '.join(FRAMEWORKS)}")
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", "-t", help=f"one of: {', '.join(TARGET_TYPES)}")
    ] = None,
    name: Annotated[str | None, typer.Option(help="project name (default: the --out folder's name)")] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="model id, name or alias (default: the active model)")
    ] = None,
    project: Annotated[
        str | None,
        typer.Option("--project", help="write this stored project (see Creator Studio's history) instead"),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite files that already exist")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Generate code with your model (local first, then the cloud fallback chain) into --out.

    Nothing is written outside --out, and existing files are never overwritten without --force. Every
    project is kept in Creator Studio's history; `--project ID` writes a stored one again without a
    model call. Generated code is never run."""
    from mmstudio.domain.codegen.catalog import framework as known_framework
    from mmstudio.domain.codegen.catalog import target_type as known_target
    from mmstudio.domain.codegen.service import CodegenRequest

    try:  # a wrong or missing choice is refused before anything starts
        if project is not None:
            if description is not None or framework is not None or target is not None:
                raise StudioError(
                    "--project writes a stored project: leave out the description, --framework and --target"
                )
        else:
            missing = [n for n, v in (("a description", description), ("--framework", framework)) if not v]
            missing += ["--target"] if not target else []
            if missing:
                raise StudioError(f"missing {', '.join(missing)} (or --project ID to write a stored project)")
            framework, target = known_framework(framework or "").id, known_target(target or "").id
        settings = _settings(config, data_dir)
    except StudioError as exc:
        err.print(f"[red]error:[/] {exc.message.replace('targetType', '--target')}")
        raise typer.Exit(2) from None
    project_name = name or out.resolve().name or "project"

    async def work(studio: Studio) -> Any:
        if project is not None:
            stored = await studio.codegen.get(project)
            if stored.status == "generating":
                raise StudioError(f"project {project} is still generating; write it when it has finished")
            _write_project(stored, out, force=force)
            return
        await _refresh(studio)  # an engine that is down is skipped, not waited for
        request = CodegenRequest(project_name, description or "", framework or "", target or "", model)
        started = await studio.codegen.start(request, user="cli")
        err.print(f"[dim]project {started.id}[/]")
        final = await _follow_codegen(studio, started.id)
        try:
            _write_project(final, out, force=force)
        except StudioError as exc:  # the files are kept: say how to get them
            raise StudioError(
                f"{exc.message}\nNothing was written; the generated files are kept as project {final.id}: "
                f"mmstudio codegen --project {final.id} --out DIR (add --force to overwrite)"
            ) from None

    _run(lambda: _with_studio(settings, work))


def _write_project(project: Any, out: Path, *, force: bool) -> None:
    from mmstudio.domain.codegen.writer import check_writes, write_files

    check_writes(out, project.files, force=force)  # all checked before anything is written
    written = write_files(out, project.files, force=force, on_file=lambda f, p: console.print(f"  {p}"))
    err.print(
        f"[green]Generated with {project.model_name or project.model_used} in "
        f"{round(project.latency_ms or 0)} ms[/]: {len(written)} file(s) in {out}"
    )
    for item in project.skipped:
        err.print(f"[yellow]left out[/] {item.path or '(no path)'}: {item.reason}")


async def _follow_codegen(studio: Studio, project_id: str) -> Any:
    """Show the generation's progress (the model being tried, failures, characters and files so far)
    until it ends; returns the project or raises the error that ended it."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    chars = 0
    files: dict[str, None] = {}
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err, transient=True
    ) as progress:
        task = progress.add_task("Starting…", total=None)
        current = ""
        async for event in studio.codegen.listen(project_id):
            if event.type == "plan":
                for skipped in event.skipped:
                    progress.console.print(f"[yellow]skipped[/] {skipped['model']}: {skipped['reason']}")
            elif event.type == "attempt":
                timeout = f"{event.timeout:g} s" if event.timeout else "no"
                current = f"{event.model_name} ({event.model}, {event.model_kind})"
                progress.update(task, description=f"Trying {current}, {timeout} timeout…")
            elif event.type == "attempt_failed" and event.attempt is not None:
                progress.console.print(f"[red]✗[/] {event.model_name}: {event.attempt.get('error')}")
            elif event.type == "text":
                chars += len(event.text)
                progress.update(
                    task, description=f"Generating with {current}: {chars:,} characters, {len(files)} file(s)"
                )
            elif event.type == "file" and event.file is not None:
                if event.file.path not in files:
                    progress.console.print(f"[dim]  + {event.file.path}[/]")
                files[event.file.path] = None
    return await studio.codegen.result(project_id)


@conversations_app.command("list")
def conversations_list(
    search: Annotated[str | None, typer.Option("--search", "-q", help="full-text search")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    archived: Annotated[bool, typer.Option(help="list archived conversations instead")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Conversations, pinned first then newest."""
    settings = _settings(config, data_dir)

    async def work(studio: Studio) -> Any:
        return await studio.conversations.store.list_conversations(q=search, limit=limit, archived=archived)

    page = _run(lambda: _with_studio(settings, work))
    if as_json:
        from mmstudio.web.chat_ui_api import conversation_json

        console.print_json(
            json.dumps({"items": [conversation_json(c) for c in page.items], "total": page.total})
        )
        return
    table = Table(title=f"Conversations ({page.total})", header_style="bold")
    for column in ("id", "title", "model", "messages", "updated"):
        table.add_column(column)
    for c in page.items:
        pin = "📌 " if c.pinned else ""
        table.add_row(
            c.id,
            pin + c.title,
            c.model or "-",
            str(c.message_count or 0),
            c.updated_at.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)


@conversations_app.command("show")
def conversations_show(
    conversation_id: Annotated[str, typer.Argument(help="the conversation's id")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """The active branch of a conversation."""
    settings = _settings(config, data_dir)

    async def work(studio: Studio) -> Any:
        store = studio.conversations.store
        return await store.get_conversation(conversation_id), await store.active_branch(conversation_id)

    conv, messages = _run(lambda: _with_studio(settings, work))
    console.print(f"[bold]{conv.title}[/]  [dim]{conv.id} · {conv.model or 'default model'}[/]")
    for m in messages:
        who = "you" if m.role == "user" else (m.model or m.role)
        branch = f" [{m.sibling_index}/{m.sibling_count}]" if m.sibling_count > 1 else ""
        status = "" if m.status == "complete" else f" ({m.status}{': ' + m.error if m.error else ''})"
        console.print(f"\n[bold cyan]{who}[/]{branch}[red]{status}[/]")
        console.print(m.text, markup=False, highlight=False)


class ExportFormat(enum.StrEnum):
    json = "json"
    markdown = "markdown"


@conversations_app.command("export")
def conversations_export(
    conversation_id: Annotated[str, typer.Argument(help="the conversation's id")],
    format: Annotated[
        ExportFormat, typer.Option(help="json: lossless, every branch; markdown: the active branch")
    ] = ExportFormat.json,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="write to this file (default: stdout)")
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Export a conversation."""
    from mmstudio.domain.chat.export import export_json, export_markdown

    settings = _settings(config, data_dir)

    async def work(studio: Studio) -> str:
        store = studio.conversations.store
        if format is ExportFormat.markdown:
            return await export_markdown(store, conversation_id)
        return json.dumps(await export_json(store, conversation_id), indent=2, ensure_ascii=False) + "\n"

    text = _run(lambda: _with_studio(settings, work))
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        err.print(f"wrote {out}")


from mmstudio import cli_images, cli_jobs, cli_video_studio  # noqa: E402  (their commands use the options and helpers above)

cli_images.register(app)
cli_jobs.register(app)
cli_video_studio.register(app)


def main() -> None:
    app()
