"""How big and how slow a job's HTML page gets: score N full-resolution X-rays (hard links of
the 150 in ../shared/data/fullres) with a stored model, write the page, and time a headless
Chromium loading it and drawing the first page of the grid.

    CXRQ_DATABASE_URL=sqlite:///runs.db python -m benchmarks.html_report_bench --model 1 \
        --images 1050 10050

Each size is a scoring job of its own in that database.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine, repeated_fullres


def one_size(model: int, images: int, tmp: Path) -> tuple[float, float, float, float]:
    """(seconds to score, seconds to write the page, its MB, seconds for Chromium to load it)."""
    from click.testing import CliRunner

    from cli.main import cli

    folder = repeated_fullres(tmp / f"n{images}", copies=-(-images // 150))
    runner = CliRunner()
    started = time.perf_counter()
    out = runner.invoke(cli, ["score", str(folder), "--model", str(model)]).output
    scored = time.perf_counter() - started
    job = out.split()[1].rstrip(":")
    page = tmp / f"job{job}.html"
    started = time.perf_counter()
    runner.invoke(cli, ["report", "html", job, "-o", str(page)])
    written = time.perf_counter() - started
    browser = shutil.which("chromium")
    started = time.perf_counter()
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=600, check=True,
    ).stdout  # fmt: skip
    loaded = time.perf_counter() - started
    if 'class="item' not in dom:
        raise SystemExit(f"the page for {images} images drew no grid")
    return scored, written, page.stat().st_size / 1e6, loaded


def blank_load() -> float:
    """Chromium's own start-up and exit on an empty page: the baseline of the load times."""
    started = time.perf_counter()
    subprocess.run(
        [shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
         "about:blank"],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=int, required=True)
    parser.add_argument("--images", type=int, nargs="+", default=[1050])
    args = parser.parse_args()
    print(f"# HTML report size and load time\n\n{machine()}\n")
    print("| images | score s | write page s | page MB | Chromium load + first page s |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| 0 (about:blank) | - | - | - | {blank_load():.1f} |")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.images:
            scored, written, mb, loaded = one_size(args.model, n, Path(tmp))
            count = 150 * -(-n // 150)
            print(f"| {count} | {scored:.1f} | {written:.1f} | {mb:.1f} | {loaded:.1f} |")


if __name__ == "__main__":
    main()
