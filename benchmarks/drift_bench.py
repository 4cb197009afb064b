"""Drift alarms measured on real X-rays: test/ split by patient into two halves plays a site;
`cxrq calibrate` fits the site profile (and its drift reference) on one half, the other half
is scored with `--site` as it is, with gamma 0.8 and 1.25 applied to its pixels, and beside
the non-chest pictures of the OOD zoo; then batches of 200 are resampled from those rows and
tested against the profile's reference. The halves then swap.

    python -m benchmarks.drift_bench --model-db sqlite:////tmp/drift/bench.db --model-id 1 \
        [--data ../shared/data/chest_xray/test] [--resamples 500] [--batch 200] [--seed 0]
    python -m benchmarks.drift_bench --train   # trains the default GoogLeNet first (3 epochs)

A batch "is flagged" when its verdict is drift (Holm over every statistic tested, alpha
training.evaluation.drift.ALPHA). Goals: gamma and 10% non-chest batches flagged >= 90% of the
time, undrifted ones <= 5%. Everything runs on a copy of the database in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from benchmarks.common import SHARED, machine
from benchmarks.ood_zoo import noise, skimage_pictures, text_documents
from cli.main import cli
from training.data.splits import linked_halves

NON_CHEST_SHARE = 0.10
GOALS = {"undrifted": "<= 0.05", "gamma 0.8": ">= 0.90", "gamma 1.25": ">= 0.90"}
GOALS["10% non-chest"] = ">= 0.90"


def _cxrq(*args: object) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if result.exit_code != 0:
        raise SystemExit(f"cxrq {' '.join(map(str, args))} failed:\n{result.output}")
    return result.output


def _gamma(folder: Path, gamma: float, dest: Path) -> Path:
    """folder's images with out = 255 * (in / 255) ** gamma, as PNG (no second JPEG loss)."""
    table = [round(255 * (v / 255) ** gamma) for v in range(256)]
    for path in sorted(folder.rglob("*.jpeg")):
        out = dest / path.parent.name / f"{path.stem}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as im:
            im.convert("L").point(table).save(out)
    return dest


def _non_chest(dest: Path) -> Path:
    """The zoo's pictures, documents and noise: not chest X-rays at all (its broken films
    are chest X-rays handled badly, not a mix of other images)."""
    import random

    rng = random.Random(0)
    dest.mkdir(parents=True)
    for name, img in [*skimage_pictures(), *text_documents(20, rng), *noise(20, rng)]:
        img.save(dest / f"{name}.png")
    return dest


def _score_rows(folder: Path, site: str, model_id: int) -> tuple[list[tuple], dict]:
    """Score the folder under the site; (its rows, the job's own drift result)."""
    from db.drift import batch_rows
    from db.schema import Job
    from db.session import session_scope

    out = _cxrq("score", folder, "--model", model_id, "--site", site, "--explain", "none")
    job_id = int(out.split()[1].rstrip(":"))
    with session_scope() as s:
        return batch_rows(s, job_id, f"model:{model_id}"), s.get(Job, job_id).drift


def _reference(site: str) -> dict:
    from db.schema import SiteProfile
    from db.session import session_scope

    with session_scope() as s:
        row = s.query(SiteProfile).filter_by(site=site, state="active").one()
        return row.profile["monitoring"]["sample"]


def _measure(
    reference: dict, rows: list[tuple], extra: list[tuple] | None, args: argparse.Namespace
) -> tuple[float, Counter, float]:
    """Share of resampled batches whose verdict is drift, how often each statistic alarmed,
    and the mean number of distinct images a batch held; `extra` rows make up
    NON_CHEST_SHARE of every batch. Batches go through compare_rows as a job's rows do, so
    an image drawn twice counts once."""
    from training.evaluation.drift import compare_rows

    n_extra = 0 if extra is None else round(NON_CHEST_SHARE * args.batch)
    rng = np.random.default_rng(args.seed)
    flagged, which, distinct = 0, Counter(), 0
    for _ in range(args.resamples):
        batch = [rows[i] for i in rng.integers(0, len(rows), args.batch - n_extra)]
        if extra is not None:
            batch += [extra[i] for i in rng.integers(0, len(extra), n_extra)]
        result = compare_rows(reference, batch)
        distinct += result["n"]
        flagged += result["verdict"] == "drift"
        which.update(t["statistic"] for t in result["tests"] if t["alarm"])
    return flagged / args.resamples, which, distinct / args.resamples


def _one_way(
    fit: str, other: str, folders: dict[str, Path], tmp: Path, args: argparse.Namespace
) -> list[dict]:
    site = f"half-{fit}"
    _cxrq("calibrate", args.model_id, "--data", folders[fit], "--site", site)
    reference = _reference(site)
    zoo, _ = _score_rows(folders["zoo"], site, args.model_id)
    variants = {
        "undrifted": folders[other],
        "gamma 0.8": _gamma(folders[other], 0.8, tmp / f"{other}-g0.8"),
        "gamma 1.25": _gamma(folders[other], 1.25, tmp / f"{other}-g1.25"),
    }
    out = []
    for name, folder in variants.items():
        rows, job_drift = _score_rows(folder, site, args.model_id)
        share, which, distinct = _measure(reference, rows, None, args)
        row = _row(fit, other, name, share, which, args, job_drift["verdict"], len(rows))
        out.append(row | {"distinct": distinct})
        if name == "undrifted":
            share, which, distinct = _measure(reference, rows, zoo, args)
            row = _row(fit, other, "10% non-chest", share, which, args, "-", len(rows))
            out.append(row | {"distinct": distinct})
    return out


def _row(
    fit: str,
    other: str,
    name: str,
    share: float,
    which: Counter,
    args: argparse.Namespace,
    job_verdict: str,
    n: int,
) -> dict:
    top = ", ".join(f"{k} {v / args.resamples:.2f}" for k, v in which.most_common(3)) or "-"
    return {
        "fit": fit,
        "other": other,
        "variant": name,
        "share": share,
        "top": top,
        "job": job_verdict,
        "n": n,
    }


def _train(data_root: Path) -> int:
    out = _cxrq("train", "--arch", "googlenet", "--data", data_root, "--epochs", 3)
    stored = next(line for line in out.splitlines() if " stored (model " in line)
    return int(stored.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-db", help="sqlite URL of a database holding the model")
    parser.add_argument("--model-id", type=int, default=1)
    parser.add_argument("--train", action="store_true", help="train the default GoogLeNet first")
    parser.add_argument("--data", type=Path, default=SHARED / "chest_xray" / "test")
    parser.add_argument("--resamples", type=int, default=500)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0, help="patient split and resampling")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        db = tmp / "bench.db"
        if args.model_db:
            shutil.copyfile(Path(args.model_db.removeprefix("sqlite:///")), db)
        os.environ["CXRQ_DATABASE_URL"] = f"sqlite:///{db}"
        os.environ["CXRQ_CACHE_DIR"] = str(tmp / "cache")
        if args.train or not args.model_db:
            args.model_id = _train(args.data.resolve().parent)
        half_a, half_b = linked_halves(args.data.resolve(), tmp, args.seed)
        folders = {"a": half_a, "b": half_b}
        folders["zoo"] = _non_chest(tmp / "zoo")
        rows = _one_way("a", "b", folders, tmp, args) + _one_way("b", "a", folders, tmp, args)
    _print(rows, args)


def _print(rows: list[dict], args: argparse.Namespace) -> None:
    from training.evaluation.drift import ALPHA, MIN_IMAGES

    print(f"machine: {machine()}")
    print(
        f"model {args.model_id}; batches of {args.batch} resampled {args.resamples} times; "
        f"alpha {ALPHA} (Holm); minimum batch {MIN_IMAGES}; seed {args.seed}"
    )
    print(
        "| profile fitted on | batches from | variant | distinct per batch | flagged | goal "
        "| alarms most | job |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        frm = f"half {r['other']} ({r['n']} images)"
        print(
            f"| half {r['fit']} | {frm} | {r['variant']} | {r['distinct']:.0f} | "
            f"{r['share']:.3f} | {GOALS[r['variant']]} | {r['top']} | {r['job']} |"
        )
    for variant, goal in GOALS.items():
        mean = np.mean([r["share"] for r in rows if r["variant"] == variant])
        print(f"| both ways | | {variant} | | {mean:.3f} | {goal} | | |")


if __name__ == "__main__":
    main()
