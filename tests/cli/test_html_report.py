"""`cxrq report html`: pages rendered by a real headless Chromium, asserted on their DOM and
screenshots (single model with labels, ensemble without, the model comparison)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image, ImageStat
from sqlalchemy import select

from db.schema import Prediction
from db.session import session_scope
from tests.conftest import make_dataset, make_xray
from tests.helpers import run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _browser() -> str:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it")
        pytest.skip("chromium is not installed")
    return CHROMIUM


def _chromium(page: Path, *args: str) -> str:
    out = subprocess.run(
        [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--virtual-time-budget=3000", *args, page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return out.stdout


def dom(page: Path) -> str:
    """The page's DOM after its scripts ran."""
    return _chromium(page, "--dump-dom")


def screenshot(page: Path, out: Path) -> Image.Image:
    _chromium(page, "--window-size=1100,1400", f"--screenshot={out}")
    return Image.open(out).convert("L")


class Elements(HTMLParser):
    """Start tags with their attributes, in document order, and the text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str, cls: str | None = None) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and (cls is None or cls in a.get("class", ""))]


@pytest.fixture()
def scored_job(db_url, tmp_path: Path) -> tuple[int, Path]:
    """A cnn (default preset: review statistics, heatmaps) and a labelled folder scored with
    maps for every image; one file unreadable with markup in its name, one image named so."""
    data = make_dataset(tmp_path / "data", per_class=30, images_per_patient=1)
    run("train", "--arch", "cnn", "--data", data, "--epochs", 1, "--img-size", 32)
    scan = tmp_path / "scan"
    for i in range(6):
        make_xray(scan / "NORMAL" / f"IM-{70 + i:04d}-0001.jpeg", False, 700 + i)
        make_xray(scan / "PNEUMONIA" / f"person{70 + i}_virus_{i}.jpeg", True, 800 + i)
    make_xray(scan / "NORMAL" / "<img src=x onerror=alert(2)>.jpeg", False, 999)
    (scan / "PNEUMONIA" / "<script>alert(1).png").write_bytes(b"not an image")
    out = run("score", scan, "--model", "cnn", "--explain", "all")
    return int(out.split()[1].rstrip(":")), tmp_path


def _rows(job_id: int) -> list[Prediction]:
    with session_scope() as s:
        return list(s.scalars(select(Prediction).where(Prediction.job_id == job_id)).all())


def test_job_page_in_a_browser(scored_job) -> None:
    job_id, tmp = scored_job
    page = tmp / "job.html"
    assert "wrote" in run("report", "html", job_id, "-o", page)
    html = page.read_text()
    # self-contained: nothing is fetched
    assert not re.search(r'(src|href)="(https?:)?//', html) and "<link" not in html
    # markup in file names is text, never markup
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    rows = _rows(job_id)
    scored = [r for r in rows if r.error is None]
    labelled = [r for r in scored if r.true_label]

    found = Elements(dom(page))
    figures = found.find("figure", "item")
    assert len(figures) == len(scored) == 13
    order = [("flagged" not in f["class"], "wrong" not in f["class"]) for f in figures]
    assert order == sorted(order)  # flagged first, then wrong calls, then the rest
    flagged = sorted((r for r in scored if r.review), key=lambda r: -r.review_score)
    assert [f["data-path"] for f in figures[: len(flagged)]] == [r.path for r in flagged]

    tp = sum(r.label == r.true_label == "PNEUMONIA" for r in labelled)
    fp = sum(r.label == "PNEUMONIA" != r.true_label for r in labelled)
    pos = sum(r.true_label == "PNEUMONIA" for r in labelled)
    point = found.find("circle", "operating-point")[0]
    assert float(point["data-x"]) == pytest.approx(fp / (len(labelled) - pos), abs=1e-4)
    assert float(point["data-y"]) == pytest.approx(tp / pos, abs=1e-4)
    text = " ".join(found.text)
    assert "<script>alert(1).png" in text and "not an image" in text  # the error row, as text
    assert "<img src=x onerror=alert(2)>.jpeg" in text  # a scored image's name, as text
    assert len(found.find("script")) == 2  # the page's own data and code, nothing injected

    shot = screenshot(page, tmp / "job.png")
    assert shot.size == (1100, 1400) and ImageStat.Stat(shot).stddev[0] > 20  # not blank


def test_pages_page_through_many_images(scored_job, monkeypatch) -> None:
    from cli.html import pages

    job_id, tmp = scored_job
    monkeypatch.setattr(pages, "PAGE_SIZE", 5)
    run("report", "html", job_id, "-o", tmp / "paged.html")
    found = Elements(dom(tmp / "paged.html"))
    assert len(found.find("figure", "item")) == 5
    assert "page 1 of 3 (13 images)" in " ".join(found.text)


def test_ensemble_page_without_labels_and_the_models_page(scored_job) -> None:
    job_id, tmp = scored_job
    data = tmp / "data"
    run("train", "--arch", "mlp", "--data", data, "--epochs", 1, "--img-size", 32)
    run("ensemble", "create", "duo", "--member", "cnn=1", "--member", "mlp=1")
    unlabelled = tmp / "ward"
    for i in range(3):
        make_xray(unlabelled / f"x{i}.png", i % 2 == 0, 50 + i)
    out = run("score", unlabelled, "--model", "duo")
    ens_job = int(out.split()[1].rstrip(":"))
    run("report", "html", ens_job, "-o", tmp / "ens.html")
    found = Elements(dom(tmp / "ens.html"))
    text = " ".join(found.text)
    assert len(found.find("figure", "item")) == 3
    assert "members" in text and "weight" in text
    assert not found.find("circle", "operating-point")  # no true labels: no curves
    assert "Scores on the labelled images" not in text

    run("report", "html", "--models", "-o", tmp / "models.html")
    found = Elements(dom(tmp / "models.html"))
    assert len(found.find("tr", "model")) == 2 and len(found.find("tr", "ensemble")) == 1
    curves = {p["data-name"] for p in found.find("polyline", "line")}
    assert {"1 cnn", "2 mlp", "loss", "validation"} <= curves  # ROC overlaid, training curves
    titles = [a["aria-label"] for a in found.find("svg", "chart")]
    assert "ROC on validation" in titles and "ROC on test/" not in titles  # no test/ split here
    shot = screenshot(tmp / "models.html", tmp / "models.png")
    assert ImageStat.Stat(shot).stddev[0] > 10


def test_html_needs_a_job_or_models(db_url, tmp_path) -> None:
    from click.testing import CliRunner

    from cli.main import cli

    result = CliRunner().invoke(cli, ["report", "html", "-o", str(tmp_path / "x.html")])
    assert result.exit_code != 0 and "give a JOB or --models" in result.output
