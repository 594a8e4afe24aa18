"""The image commands of the CLI: `mmstudio image PROMPT` (with a progress bar) and `mmstudio images list`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from mmstudio.cli import ConfigOpt, DataDirOpt
from mmstudio.errors import StudioError

if TYPE_CHECKING:
    from mmstudio.studio import Studio

images_app = typer.Typer(help="List the images in the gallery.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    from mmstudio import cli

    @app.command()
    def image(
        prompt: Annotated[str, typer.Argument(help="what to draw")],
        model: Annotated[
            str | None, typer.Option("--model", "-m", help="image model id, name or alias")
        ] = None,
        n: Annotated[int, typer.Option("-n", help="how many images", min=1, max=10)] = 1,
        size: Annotated[str | None, typer.Option(help="WIDTHxHEIGHT, W:H or auto")] = None,
        quality: Annotated[str | None, typer.Option(help="auto, low, medium or high")] = None,
        seed: Annotated[int | None, typer.Option(help="seed (-1 or absent: random)")] = None,
        steps: Annotated[int | None, typer.Option(help="sampling steps (local engines)")] = None,
        negative: Annotated[str | None, typer.Option("--negative", help="negative prompt")] = None,
        ref: Annotated[
            list[Path] | None, typer.Option("--ref", help="a reference photo (repeat for several)")
        ] = None,
        out: Annotated[Path, typer.Option("--out", "-o", help="directory to write the images into")] = Path(
            "."
        ),
        no_fallback: Annotated[bool, typer.Option("--no-fallback", help="only the named model")] = False,
        config: ConfigOpt = None,
        data_dir: DataDirOpt = None,
    ) -> None:
        """Generate images (local engines first, then cloud); every image is also kept in the gallery."""
        try:
            settings = cli._settings(config, data_dir)
            refs = [_read(p) for p in ref or []]
        except StudioError as exc:
            cli.err.print(f"[red]error:[/] {exc.message}")
            raise typer.Exit(2) from None

        async def work(studio: Studio) -> None:
            from mmstudio.domain.media.images import ImageOrder
            from mmstudio.domain.router import RouteOptions

            await cli._refresh(studio)
            ids = [(await studio.media.save_upload(data, name)).id for name, data in refs]
            order = ImageOrder(
                prompt=prompt,
                model=model,
                n=n,
                size=size,
                quality=quality,
                seed=seed,
                steps=steps,
                negative_prompt=negative,
                references=tuple(ids),
                fallbacks=not no_fallback,
            )
            outcome = await _generate_with_progress(
                studio, order, RouteOptions(route="cli", fallbacks=not no_fallback)
            )
            out.mkdir(parents=True, exist_ok=True)
            for asset in outcome.assets:
                ext = asset.mime.rsplit("/", 1)[-1].replace("jpeg", "jpg")
                target = out / f"{asset.id}.{ext}"
                target.write_bytes(await studio.media.read_bytes(asset))
                cli.console.print(str(target))
            info = outcome.info
            failed = [a for a in info.attempts if a.outcome == "error"]
            after = f" (after {', '.join(a.model for a in failed)} failed)" if failed else ""
            name = info.resolved.display_name if info.resolved else info.model_used
            seconds = (info.latency_ms or 0) / 1000
            cli.err.print(
                f"[green]Made with {name} in {seconds:.1f} s{after}[/]: {len(outcome.assets)} image(s)"
            )
            for note in outcome.notes:
                cli.err.print(f"[yellow]note[/] {note}")

        cli._run(lambda: cli._with_studio(settings, work))

    @images_app.command("list")
    def images_list(
        model: Annotated[str | None, typer.Option("--model", "-m", help="only this model")] = None,
        query: Annotated[str | None, typer.Option("--query", "-q", help="words in the prompt")] = None,
        limit: Annotated[int, typer.Option(help="how many", min=1, max=100)] = 20,
        config: ConfigOpt = None,
        data_dir: DataDirOpt = None,
    ) -> None:
        """The gallery, newest first."""
        settings = cli._settings(config, data_dir)

        async def work(studio: Studio) -> Any:
            return await studio.media.list(limit=limit, offset=0, model=model, q=query)

        page = cli._run(lambda: cli._with_studio(settings, work))
        table = Table("id", "created", "model", "size", "seed", "prompt")
        for asset in page.items:
            recipe = asset.recipe
            table.add_row(
                asset.id,
                asset.created_at.strftime("%Y-%m-%d %H:%M"),
                recipe.model_used if recipe else "(upload)",
                f"{asset.width}x{asset.height}",
                str(recipe.seed) if recipe and recipe.seed is not None else "",
                (recipe.prompt[:60] if recipe else ""),
            )
        cli.console.print(table)
        cli.err.print(f"{len(page.items)} of {page.total} image(s)")

    app.add_typer(images_app, name="images")


def _read(path: Path) -> tuple[str, bytes]:
    try:
        return path.name, path.read_bytes()
    except OSError as exc:
        raise StudioError(f"--ref {path}: cannot read it ({exc.strerror})") from None


async def _generate_with_progress(studio: Studio, order: Any, options: Any) -> Any:
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from mmstudio import cli

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=cli.err,
        transient=True,
    ) as progress:
        task = progress.add_task("Planning…", total=None)

        class Observer:
            async def planned(self, plan: Any) -> None:
                for model_id, reason in plan.skipped:
                    progress.console.print(f"[yellow]skipped[/] {model_id}: {reason}")

            async def trying(self, candidate: Any, number: int) -> None:
                progress.update(
                    task, description=f"{candidate.resolved.display_name} ({candidate.model_id})", total=None
                )

            async def failed(self, candidate: Any, attempt: Any) -> None:
                progress.console.print(f"[red]✗[/] {candidate.resolved.display_name}: {attempt.error}")

            async def progress(self, model_id: str, update: Any) -> None:
                if update.steps:
                    progress.update(task, total=update.steps, completed=update.step or 0)
                elif update.percent is not None:
                    progress.update(task, total=100, completed=update.percent)

            async def image(self, asset: Any) -> None:
                progress.console.print(f"[dim]  + image {asset.id} ({asset.width}x{asset.height})[/]")

        return await studio.images.generate(order, observer=Observer(), options=options)
