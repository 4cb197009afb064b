"""`cxrq report drift` and the drift line of `cxrq report job`: each (site, model) pair's
newest rows against its reference, in every format; "no reference" where none is stored."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import run
from tests.worker.test_settle_drift import model_with_reference, rows_like, scored_job


def test_report_drift_tests_each_pair_and_says_no_reference_without_one(
    db_url: str, tmp_path: Path
) -> None:
    watched = model_with_reference()
    scored_job(tmp_path / "a", watched, rows_like(1, 120, shift=1.5))
    unwatched = model_with_reference(reference=False)
    scored_job(tmp_path / "b", unwatched, rows_like(2, 120))

    table = run("report", "drift")
    assert "Kolmogorov-Smirnov" in table and "Fisher exact" in table, table
    assert f"model {unwatched}: model {unwatched} was fitted before drift" in table, table

    pairs = json.loads(run("report", "drift", "--format", "json"))
    verdicts = {p["model_id"]: p["verdict"] for p in pairs}
    assert verdicts == {watched: "drift", unwatched: "no reference"}, pairs
    assert {p["site"] for p in pairs} == {"(none)"}

    csv_lines = run("report", "drift", "--model", str(watched), "--format", "csv").splitlines()
    assert csv_lines[0].startswith("site,model_id,n,reference_n,statistic"), csv_lines[0]
    assert len(csv_lines) == 1 + 5  # pneumonia share, two flags, P, OOD score


def test_last_narrows_the_window_and_few_images_are_not_tested(db_url: str, tmp_path: Path) -> None:
    model_id = model_with_reference()
    scored_job(tmp_path, model_id, rows_like(3, 120))
    pairs = json.loads(run("report", "drift", "--last", "20", "--format", "json"))
    assert [(p["verdict"], p["n"]) for p in pairs] == [("too few images", 20)], pairs


def test_an_unknown_site_has_no_reference(db_url: str) -> None:
    out = run("report", "drift", "--site", "nowhere")
    assert "site nowhere: no scored images; no reference" in out, out
    run("report", "drift", "--model", "404", ok=False)


def test_report_job_shows_the_jobs_drift(db_url: str, tmp_path: Path) -> None:
    job_id = scored_job(tmp_path, model_with_reference(), rows_like(4, 120, shift=1.5))
    out = run("report", "job", str(job_id))
    drift = next(line for line in out.splitlines() if line.startswith("drift"))
    assert "drift against model" in drift and "DRIFT: " in drift, out
