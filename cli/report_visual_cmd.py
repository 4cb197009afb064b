"""`cxrq report heatmap|html`: the reports to look at, where a model saw pneumonia in one image
and self-contained HTML pages; the `report` group in cli.report_cmd carries them."""

from __future__ import annotations

from pathlib import Path

import click

from cli.errors import friendly_errors
from cli.output import emit, format_option
from cli.report_cmd import close_abandoned_jobs, report_rows


@click.command("html")
@click.argument("job_ref", required=False)
@click.option("--models", "models", is_flag=True, help="the model comparison page instead")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="the HTML file to write (self-contained: images and plots embedded)",
)
def report_html(job_ref: str | None, models: bool, output: Path) -> None:
    """A self-contained HTML page: a scoring job's (an id, or 'latest') or, with --models, every
    model and ensemble side by side. It needs no network: open it anywhere.

    Example: cxrq report html latest -o job.html
    """
    with friendly_errors():
        if models == (job_ref is not None):
            raise click.UsageError("give a JOB or --models, not both")
        from cli.html.pages import job_page, models_page
        from db.session import session_scope

        close_abandoned_jobs()
        with session_scope() as s:
            try:
                page = models_page(s) if models else job_page(s, job_ref)
            except ValueError as exc:
                raise click.ClickException(str(exc)) from None
        try:
            output.write_text(page, encoding="utf-8")
        except OSError as exc:
            raise click.ClickException(f"cannot write {output}: {exc.strerror}") from None
    click.echo(f"wrote {output} ({len(page.encode()) / 1e6:.1f} MB)")


HEATMAP_KEYS = ("job_id", "scorer", "path", "method", "prob_pneumonia", "label", "kind", "box")


@click.command("heatmap")
@click.argument("job_ref")
@click.argument("path")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="write the X-ray at its own resolution with the heatmap overlaid and the hottest "
    "region boxed (PNG)",
)
@click.option("--scorer", default=None, help="model:ID or ensemble:ID (default: the job's own)")
@format_option
def report_heatmap(
    job_ref: str, path: str, output: Path | None, scorer: str | None, fmt: str
) -> None:
    """Where the model saw pneumonia in one image of a job scored with --explain: the hottest
    region's box in the original image's pixels (left, top, right, bottom; right and bottom
    exclusive), and with -o an overlay PNG.

    PATH is the image's path as scored, or a unique ending of it (e.g. its file name).

    Example: cxrq report heatmap latest person1_virus_6.jpeg -o out.png
    """
    with friendly_errors():
        row = _heatmap(job_ref, path, scorer, output)
    if fmt == "table":
        for key in HEATMAP_KEYS:
            click.echo(f"{key:15} {_shown(row.get(key))}")
        if output:
            click.echo(f"wrote {output}")
    else:
        emit([row], fmt, (), HEATMAP_KEYS)


def _shown(value: object) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _heatmap(job_ref: str, path: str, scorer: str | None, output: Path | None) -> dict:
    from training.explain import overlay
    from training.explain.grid import decode_grid

    absolute = Path(path).expanduser()
    wanted = str(absolute.resolve()) if absolute.exists() else path
    row = report_rows("heatmap_report", job_ref, wanted, scorer)[0]
    grid = decode_grid(row.pop("grid"), row["height"], row["width"])
    shape, path, crop = (row["height"], row["width"]), row["path"], row["crop"]
    if output is not None:
        box = overlay.render_overlay(path, grid, *shape, crop, output)
    else:
        box = overlay.hottest_box(grid, *shape, overlay.image_size(path), crop)
    row["box"] = list(box) if box else None
    row["grid"] = [round(v, 4) for v in grid.ravel().tolist()]
    return row
