"""The site-calibration protocol: a labelled folder (test/ by default) plays a new hospital.
It is split by patient into two halves; `cxrq calibrate` fits a site profile on one half, the
other half is scored with `--site` (and without, for the model's own operating point), then the
halves swap. Nothing is ever reported on the images it was fitted on.

    CXRQ_DATABASE_URL=sqlite:///results.db python scripts/site_protocol.py MODEL \
        [--data ../shared/data/chest_xray/test] [--target 0.95] [--split-seed 0] [--adapt] \
        [--resplits 40]

Prints one row per (fitted on, reported on) and their mean: the site threshold, sensitivity
(and whether it lies inside the interval the profile stated for the site's true sensitivity,
and inside its interval for a new set of that size), specificity, accuracy, AUC, the
largest reliability gap over tenths of P holding >= 20 images, and the same figures at the
model's own threshold. `--resplits N` then repeats the threshold rule alone over N more random
patient halves (both ways), from the raw P the two unsited scorings stored (nothing rescored):
how often the other half keeps the target, and lies inside each stated interval.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from sqlalchemy import select

from db.schema import Job, Prediction, SiteProfile
from db.session import session_scope
from training.data.data_files import CLASSES, LabeledImage, patient_id
from training.data.splits import linked_halves, patient_split
from training.evaluation.metrics import binary_scores
from training.fitting.site_threshold import margin_threshold, patient_weights

MIN_BIN = 20  # tenths of P with fewer images are not judged for reliability


def _cxrq(*args: str) -> None:
    done = subprocess.run(["cxrq", *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"cxrq {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")


def _latest_job() -> int:
    with session_scope() as s:
        return s.scalars(select(Job.id).order_by(Job.id.desc())).first()


def _scored_rows(job_id: int) -> list:
    """(path, true_label, prob, label) of a job's own scorer's scored rows."""
    with session_scope() as s:
        key = f"model:{s.get(Job, job_id).model_id}"
        return s.execute(
            select(Prediction.path, Prediction.true_label, Prediction.prob, Prediction.label).where(
                Prediction.job_id == job_id,
                Prediction.scorer == key,
                Prediction.error.is_(None),
            )
        ).all()


def _raw(job_ids: list[int]) -> dict[str, tuple[int, float]]:
    """file name -> (label, raw P) from unsited scoring jobs."""
    return {
        Path(r.path).name: (CLASSES.index(r.true_label), r.prob)
        for job_id in job_ids
        for r in _scored_rows(job_id)
    }


def _resplits(raw: dict[str, tuple[int, float]], n: int, target: float) -> str:
    """The threshold rule over n random patient halves, both ways, from the raw P."""
    items = [
        LabeledImage(name, label, patient_id(name)) for name, (label, _) in sorted(raw.items())
    ]
    seen = []
    for seed in range(n):
        for fit, report in itertools.permutations(patient_split(items, 0.5, seed=1000 + seed)):
            index: dict[str, int] = {}
            patients = torch.tensor([index.setdefault(i.patient, len(index)) for i in fit])
            labels = torch.tensor([i.label for i in fit])
            prob = torch.tensor([raw[i.path][1] for i in fit], dtype=torch.float64)
            choice = margin_threshold(labels, prob, patient_weights(patients), target)
            y = torch.tensor([i.label for i in report]).bool()
            p = torch.tensor([raw[i.path][1] for i in report], dtype=torch.float64)
            sens = float((p[y] >= choice.threshold).double().mean())
            spec = float((p[~y] < choice.threshold).double().mean())
            ci, pi = choice.sensitivity_interval, choice.sensitivity_prediction
            seen.append((sens, spec, ci[0] <= sens <= ci[1], pi[0] <= sens <= pi[1]))
    k = len(seen)
    kept, sens, spec, in_ci, in_pi = (
        sum(r[0] >= target for r in seen) / k,
        sum(r[0] for r in seen) / k,
        sum(r[1] for r in seen) / k,
        sum(r[2] for r in seen) / k,
        sum(r[3] for r in seen) / k,
    )
    return (
        f"{k} halves: other half's sensitivity >= {target:g} in {kept:.2f}; mean sensitivity "
        f"{sens:.3f}, specificity {spec:.3f}; inside the stated interval {in_ci:.2f}, inside "
        f"the new-set interval {in_pi:.2f}"
    )


def _rows(job_id: int) -> tuple[list[int], list[float], list[int]]:
    rows = _scored_rows(job_id)
    y = [CLASSES.index(r.true_label) for r in rows]
    return y, [r.prob for r in rows], [CLASSES.index(r.label) for r in rows]


def _reliability_gap(y: list[int], p: list[float]) -> float:
    worst = 0.0
    for b in range(10):
        mine = [(t, q) for t, q in zip(y, p, strict=True) if min(int(q * 10), 9) == b]
        if len(mine) >= MIN_BIN:
            gap = abs(sum(q for _, q in mine) / len(mine) - sum(t for t, _ in mine) / len(mine))
            worst = max(worst, gap)
    return worst


def _figures(job_id: int) -> dict[str, float]:
    y, p, pred = _rows(job_id)
    with session_scope() as s:
        threshold = s.get(Job, job_id).params.get("threshold", 0.5)
    scores = binary_scores(y, p, threshold, pred=pred)
    scores["reliability_gap"] = _reliability_gap(y, p)
    return scores


def _one_way(model: str, fit: Path, report: Path, target: float, adapt: bool) -> dict:
    site = f"protocol-{fit.name}"
    flags = ["--adapt"] if adapt else []
    _cxrq("calibrate", model, "--data", str(fit), "--site", site, "--replace",
          "--target-sensitivity", str(target), *flags)  # fmt: skip
    with session_scope() as s:
        profile = s.scalars(
            select(SiteProfile).where(SiteProfile.site == site, SiteProfile.state == "active")
        ).first()
        figures = profile.profile["figures"]
        stated = figures["sensitivity_interval"]
        predicted = figures["sensitivity_prediction"]
        model_id = str(profile.model_id)
    _cxrq("score", str(report), "--site", site, "--model", model_id, "--explain", "none")
    with_site = _figures(_latest_job())
    _cxrq("score", str(report), "--model", model_id, "--explain", "none")
    own_job = _latest_job()
    own = _figures(own_job)
    sens = with_site["sensitivity"]
    return {
        "fit": fit.name,
        "report": report.name,
        "site": with_site,
        "own": own,
        "stated": stated,
        "inside": stated[0] <= sens <= stated[1],
        "predicted": predicted,
        "in_predicted": predicted[0] <= sens <= predicted[1],
        "own_job": own_job,
    }


def _print(results: list[dict]) -> None:
    cols = ("threshold", "sensitivity", "specificity", "accuracy", "roc_auc", "reliability_gap")
    head = " | ".join(cols)
    print(f"| fitted on | reported on | decided by | {head} | sens. in CI | sens. in new-set PI |")
    print("|" + " --- |" * (len(cols) + 5))
    for r in results:
        for who in ("site", "own"):
            vals = " | ".join(f"{r[who][c]:.3f}" for c in cols)
            stated = f"{r['inside']} [{r['stated'][0]:.3f}, {r['stated'][1]:.3f}]"
            predicted = f"{r['in_predicted']} [{r['predicted'][0]:.3f}, {r['predicted'][1]:.3f}]"
            tail = f"{stated} | {predicted}" if who == "site" else " |"
            print(f"| {r['fit']} | {r['report']} | {who} | {vals} | {tail} |")
    for who in ("site", "own"):
        mean = " | ".join(f"{sum(r[who][c] for r in results) / len(results):.3f}" for c in cols)
        print(f"| mean | | {who} | {mean} | | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/chest_xray/test"))
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--adapt", action="store_true")
    parser.add_argument("--resplits", type=int, default=0)
    args = parser.parse_args()
    if "CXRQ_DATABASE_URL" not in os.environ:
        sys.exit("set CXRQ_DATABASE_URL to the database holding the model")
    with tempfile.TemporaryDirectory() as tmp:
        a, b = linked_halves(args.data, Path(tmp), args.split_seed)
        results = [
            _one_way(args.model, fit, report, args.target, args.adapt)
            for fit, report in ((a, b), (b, a))
        ]
    _print(results)
    if args.resplits:
        print(_resplits(_raw([r["own_job"] for r in results]), args.resplits, args.target))


if __name__ == "__main__":
    main()
