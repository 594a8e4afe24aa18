"""The Video Studio in the CLI: `mmstudio studio video new|list|generate|export`.

`generate` stores the settings it is given on the project (as the page would), makes the shot with the
project's chosen model and follows the job with a progress bar; `export` renders the timeline into one
MP4. Both run a job worker in this process while they follow (Ctrl+C leaves the job to the next one).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from mmstudio.cli import ConfigOpt, DataDirOpt
from mmstudio.errors import NotFound

if TYPE_CHECKING:
    from mmstudio.domain.video.projects import Project
    from mmstudio.studio import Studio

studio_app = typer.Typer(help="The studios from the command line.", no_args_is_help=True)
video_app = typer.Typer(
    help="Video Studio projects: new, list, generate a shot, export the film.", no_args_is_help=True
)
studio_app.add_typer(video_app, name="video")

Unit = Annotated[float | None, typer.Option(min=-1.0, max=1.0)]
Share = Annotated[float | None, typer.Option(min=0.0, max=1.0)]


async def _project(studio: Studio, ref: str) -> Project:
    """A project by id, or by its name when exactly one project has it."""
    try:
        return await studio.video_studio.get(ref)
    except NotFound:
        named = [p for p in await studio.video_studio.list() if p.name == ref]
        if len(named) == 1:
            return named[0]
        if named:
            raise NotFound(f"{len(named)} projects are named {ref!r}: give its id") from None
        raise NotFound(f"no video project {ref!r} (by id or name); `mmstudio studio video list`") from None


def register(app: typer.Typer) -> None:
    from mmstudio import cli
    from mmstudio.cli_jobs import _follow

    @video_app.command("new")
    def new(
        name: Annotated[str, typer.Argument(help="the project's name")],
        aspect: Annotated[str, typer.Option(help="16:9, 9:16, 1:1, 4:3, 3:4 or 21:9")] = "16:9",
        resolution: Annotated[str, typer.Option(help="480p, 720p or 1080p")] = "720p",
        config: ConfigOpt = None,
        data_dir: DataDirOpt = None,
    ) -> None:
        """Make a project (its model: Runway when keyed, else the first usable video model)."""
        settings = cli._settings(config, data_dir)

        async def work(studio: Studio) -> Project:
            return await studio.video_studio.create(name, aspect_ratio=aspect, resolution=resolution)

        project = cli._run(lambda: cli._with_studio(settings, work))
        cli.console.print(f"{project.id}  {project.name}  model: {project.next_shot.model or 'none usable'}")

    @video_app.command("list")
    def list_projects(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
        """Every project, the last changed first."""
        settings = cli._settings(config, data_dir)

        async def work(studio: Studio) -> list[tuple[Project, int]]:
            projects = await studio.video_studio.list()
            return [(p, len((await studio.video_studio.get(p.id)).clips)) for p in projects]

        rows = cli._run(lambda: cli._with_studio(settings, work))
        table = Table("id", "name", "aspect", "resolution", "model", "clips")
        for project, clips in rows:
            table.add_row(
                project.id,
                project.name,
                project.aspect_ratio,
                project.resolution,
                project.next_shot.model or "-",
                str(clips),
            )
        cli.console.print(table)

    @video_app.command("generate")
    def generate(
        project: Annotated[str, typer.Argument(help="project id or name")],
        prompt: Annotated[str, typer.Argument(help="what happens in the shot")],
        model: Annotated[
            str | None, typer.Option("--model", "-m", help="choose (and keep) this model")
        ] = None,
        duration: Annotated[float | None, typer.Option(help="seconds", min=1, max=60)] = None,
        seed: Annotated[int | None, typer.Option(help="-1: random", min=-1)] = None,
        camera_pan_x: Unit = None,
        camera_pan_y: Unit = None,
        camera_zoom: Unit = None,
        camera_tilt: Unit = None,
        camera_roll: Unit = None,
        stability: Share = None,
        amplitude: Share = None,
        coherence: Share = None,
        negative: Annotated[str | None, typer.Option(help="what the shot must not show")] = None,
        loop: Annotated[
            bool | None, typer.Option("--loop/--no-loop", help="end the shot where it began")
        ] = None,
        interpolate: Annotated[
            bool | None,
            typer.Option(
                "--interpolate/--no-interpolate", help="blend frames when the export changes the rate"
            ),
        ] = None,
        start_frame: Annotated[
            Path | None,
            typer.Option(help="an image (PNG, JPEG, WebP) the shot starts from", exists=True, dir_okay=False),
        ] = None,
        out: Annotated[
            Path | None, typer.Option("--out", "-o", help="also write the clip here (.mp4)")
        ] = None,
        config: ConfigOpt = None,
        data_dir: DataDirOpt = None,
    ) -> None:
        """Make the next shot with the project's model and put it on the timeline."""
        settings = cli._settings(config, data_dir)
        changes: dict[str, Any] = {"prompt": prompt}
        given = {
            "model": model,
            "duration_s": duration,
            "seed": seed,
            "pan_x": camera_pan_x,
            "pan_y": camera_pan_y,
            "zoom": camera_zoom,
            "tilt": camera_tilt,
            "roll": camera_roll,
            "stability": stability,
            "amplitude": amplitude,
            "coherence": coherence,
            "negative_prompt": negative,
            "loop": loop,
            "interpolate": interpolate,
        }
        changes |= {k: v for k, v in given.items() if v is not None}
        image = start_frame.read_bytes() if start_frame is not None else None

        async def work(studio: Studio) -> None:
            found = await _project(studio, project)
            if image is not None and start_frame is not None:
                changes["start_frame"] = (await studio.media.save_upload(image, start_frame.name)).id
            await studio.video_studio.update(found.id, changes)
            view = await studio.video_studio.view(found.id)
            if view.plan is not None:  # how each control reaches the model, as the page marks it
                routes = ", ".join(
                    f"{name.replace('_', ' ')} {how}" for name, how in view.plan.routes.items()
                )
                cli.err.print(f"[dim]{routes}[/]", soft_wrap=True)
            clip, job = await studio.video_studio.generate(found.id)
            cli.err.print(f"clip [bold]{clip.id}[/] on {found.name}: job {job.id} ({', '.join(job.plan)})")
            await _follow(studio, job.id, out, save=out is not None)  # the clip is on the timeline anyway

        cli._run(lambda: cli._with_studio(settings, work))

    @video_app.command("export")
    def export(
        project: Annotated[str, typer.Argument(help="project id or name")],
        out: Annotated[Path, typer.Option("--out", "-o", help="the film (.mp4)")],
        fps: Annotated[int, typer.Option(help="frames per second", min=1, max=60)] = 24,
        config: ConfigOpt = None,
        data_dir: DataDirOpt = None,
    ) -> None:
        """Render the timeline into one MP4, with a progress bar."""
        settings = cli._settings(config, data_dir)

        async def work(studio: Studio) -> None:
            found = await _project(studio, project)
            job = await studio.video_studio.export(found.id, fps=fps)
            cli.err.print(f"export of {found.name}: job {job.id}, {len(job.request['cuts'])} clip(s)")
            await _follow(studio, job.id, out)

        cli._run(lambda: cli._with_studio(settings, work))

    app.add_typer(studio_app, name="studio")
