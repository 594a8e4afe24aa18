"""The video and job commands of the CLI: `mmstudio video PROMPT`, `mmstudio jobs list|watch|cancel`.

`video` and `jobs watch` run a job worker in this process while they follow the job, with a progress
bar. Ctrl+C stops following, not the job: the vendor keeps working, the job's handle is stored, and the
next worker (`mmstudio serve`, or `jobs watch` again) resumes polling it without submitting it again.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from mmstudio.cli import ConfigOpt, DataDirOpt, LogLevel
from mmstudio.errors import StudioError

if TYPE_CHECKING:
    from mmstudio.domain.jobs.types import Job
    from mmstudio.studio import Studio

jobs_app = typer.Typer(help="List, follow and cancel generation jobs (videos).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    from mmstudio import cli

    @app.command()
    def video(
        prompt: Annotated[str, typer.Argument(help="what happens in the video")],
        model: Annotated[str | None, typer.Option("--model", "-m", help="video model id or alias")] = None,
        image: Annotated[
            Path | None, typer.Option("--image", help="the first frame (image-to-video)")
        ] = None,
        duration: Annotated[int | None, typer.Option(help="seconds")] = None,
        aspect: Annotated[str | None, typer.Option(help="aspect ratio, e.g. 16:9")] = None,
        resolution: Annotated[str | None, typer.Option(help="e.g. 720p")] = None,
        seed: Annotated[int | None, typer.Option(help="seed")] = None,
        out: Annotated[Path | None, typer.Option("--out", "-o", help="write the video here (.mp4)")] = None,
        config: ConfigOpt = None,
        data_dir: DataDirOpt = None,
    ) -> None:
        """Make a video as a durable job, following its progress (Ctrl+C leaves it running)."""
        try:
            settings = cli._settings(config, data_dir)
            start = (image.name, image.read_bytes()) if image is not None else None
        except OSError as exc:
            cli.err.print(f"[red]error:[/] --image {image}: cannot read it ({exc.strerror})")
            raise typer.Exit(2) from None

        async def work(studio: Studio) -> None:
            from mmstudio.domain.video.service import VideoOrder

            start_id = (await studio.media.save_upload(start[1], start[0])).id if start else None
            job, _ = await studio.videos.create(
                VideoOrder(
                    prompt=prompt,
                    model=model,
                    duration_s=duration,
                    aspect_ratio=aspect,
                    resolution=resolution,
                    seed=seed,
                    start_image=start_id,
                )
            )
            cli.err.print(f"job [bold]{job.id}[/] queued ({', '.join(job.plan)})")
            await _follow(studio, job.id, out)

        cli._run(lambda: cli._with_studio(settings, work))

    @app.command()
    def worker(
        concurrency: Annotated[
            int | None, typer.Option(help="jobs at once (default: videos.concurrency)", min=1, max=256)
        ] = None,
        config: ConfigOpt = None,
        data_dir: DataDirOpt = None,
        log_level: Annotated[
            LogLevel, typer.Option(help="log level", envvar="MMSTUDIO_LOG_LEVEL")
        ] = LogLevel.info,
    ) -> None:
        """Run generation jobs (videos, image jobs) without serving the API. Start as many as you like,
        on any machine that reaches the database (PostgreSQL) and the media folder; pair them with
        `mmstudio serve --no-worker`. SIGTERM or Ctrl+C gives the running jobs' leases back, so another
        worker resumes them at once."""
        import logging
        import signal

        from mmstudio.process import pause_collector, settle_heap

        pause_collector()  # until the studio is open
        from mmstudio.studio import Studio

        try:
            settings = cli.with_worker(cli._settings(config, data_dir), run=True, concurrency=concurrency)
            settings.job_engine  # noqa: B018 - videos.engine checked against the database before starting
        except StudioError as exc:
            cli.err.print(f"[red]error:[/] {exc.message}")
            raise typer.Exit(1) from None
        logging.basicConfig(
            level=log_level.value.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per vendor poll
        logging.getLogger("procrastinate").setLevel(logging.WARNING)  # not two lines per job carried

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            try:
                studio = await Studio.open(settings)
            finally:
                settle_heap()  # what start-up left is never walked by the garbage collector again
            try:
                studio.start_background()  # detection and health (image jobs plan with them), the worker
                cli.err.print(
                    f"mmstudio worker {studio.worker.owner}, {settings.job_engine} engine: "
                    f"{', '.join(studio.worker.handlers)} jobs, {studio.worker.concurrency} at once "
                    f"(data: {settings.data_dir.resolve()})"
                )
                await stop.wait()
                cli.err.print("stopping: the running jobs' leases go back for another worker")
            finally:
                await studio.close()

        cli._run(main)

    @jobs_app.command("list")
    def jobs_list(
        state: Annotated[str | None, typer.Option(help="only jobs in this state")] = None,
        limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
        config: ConfigOpt = None,
        data_dir: DataDirOpt = None,
    ) -> None:
        """Jobs, newest first."""
        settings = cli._settings(config, data_dir)

        async def work(studio: Studio) -> Any:
            return await studio.jobs.list(kind=None, state=state, limit=limit, offset=0)

        page = cli._run(lambda: cli._with_studio(settings, work))
        table = Table("id", "kind", "state", "progress", "model", "created", "error")
        for job in page.items:
            progress = (
                ""
                if job.progress is None
                else f"{job.progress:.0f}%" + ("~" if job.progress_estimated else "")
            )
            table.add_row(
                job.id,
                job.kind,
                job.state,
                progress,
                job.model or (job.plan[0] if job.plan else ""),
                job.created_at.strftime("%Y-%m-%d %H:%M"),
                (job.error_message or "")[:60],
            )
        cli.console.print(table)
        cli.err.print(f"{len(page.items)} of {page.total} job(s)")

    @jobs_app.command("watch")
    def jobs_watch(
        job_id: Annotated[str, typer.Argument(help="the job's id")],
        out: Annotated[Path | None, typer.Option("--out", "-o", help="write the result here")] = None,
        config: ConfigOpt = None,
        data_dir: DataDirOpt = None,
    ) -> None:
        """Follow a job to its end (running it here when no other worker does)."""
        settings = cli._settings(config, data_dir)
        cli._run(lambda: cli._with_studio(settings, lambda studio: _follow(studio, job_id, out)))

    @jobs_app.command("cancel")
    def jobs_cancel(
        job_id: Annotated[str, typer.Argument(help="the job's id")],
        config: ConfigOpt = None,
        data_dir: DataDirOpt = None,
    ) -> None:
        """Cancel a job (stopped upstream where the vendor allows it)."""
        settings = cli._settings(config, data_dir)

        async def work(studio: Studio) -> Job:
            return await studio.jobs.cancel(job_id)

        job = cli._run(lambda: cli._with_studio(settings, work))
        said = (
            "cancelled" if job.state == "cancelled" else "cancel requested" if not job.terminal else job.state
        )
        cli.console.print(f"{job.id}: {said}")

    app.add_typer(jobs_app, name="jobs")


async def _follow(studio: Studio, job_id: str, out: Path | None, *, save: bool = True) -> None:
    """Run a worker here and follow the job with a progress bar; then write its outputs (to `out`, or
    to the current folder) unless `save` is False."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from mmstudio import cli

    worker = asyncio.create_task(studio.run_jobs(), name="mmstudio-cli-worker")
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            console=cli.err,
            transient=True,
        ) as bar:
            task = bar.add_task("queued", total=100)
            final = None
            async for job in studio.jobs.follow(job_id):
                estimate = " (estimate)" if job.progress_estimated else ""
                bar.update(
                    task, description=f"{job.state} {job.model or ''}{estimate}", completed=job.progress or 0
                )
                final = job
    finally:
        await studio.stop_jobs()
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
    assert final is not None
    if final.state != "complete":
        raise StudioError(f"job {final.id} {final.state}: {final.error_message or 'no reason given'}")
    for asset_id in final.output_ids if save else ():
        asset = await studio.media.get(asset_id)
        if asset is None:
            continue
        target = out or Path(f"{asset.id}.{asset.extension}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(await studio.media.read_bytes(asset))
        cli.console.print(str(target))
    cli.err.print(f"[green]Made with {final.model}[/] ({final.id})")
