"""Scoring throughput: cxrq's embedded path vs a plain PyTorch loop, rows written by both.

    python -m benchmarks.scoring_bench [--model-db sqlite:///path/cxrq.db] [--model-id N]
        [--copies 7] [--whole-process]

Folder: the 150 full-resolution X-rays linked `copies` times (1,050 by default), GoogLeNet@64.
The model is --model-id, or else the newest googlenet, in --model-db (a trained one makes the
agreement and AUC figures meaningful); without one, a freshly initialised GoogLeNet. Baseline:
for each file, PIL open + convert (+ the model's central crop), torchvision
Resize/ToTensor/Normalize, the model on one image, one ORM row.
Both write their rows to a fresh SQLite database; labels agree and ROC AUCs are reported.

--whole-process also times what a user times, each command as its own process (best of two):
`python -c "import torch"` (the floor), `cxrq score` of 10 files and of the whole folder, and
the baseline loop run as a process of its own.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from sqlalchemy import create_engine, select
from torchvision import transforms

from benchmarks.common import machine, repeated_fullres
from training.evaluation.metrics import roc_auc


def _bundle(model_db: str | None, model_id: int | None = None):  # noqa: ANN202
    """(bundle, where it came from)."""
    from db.schema import Model
    from training.data.preprocess import Normalizer
    from training.models.checkpoint import ModelBundle, from_bytes
    from training.models.registry import create_model

    if model_db:
        with create_engine(model_db).connect() as conn:
            which = Model.id == model_id if model_id else Model.arch == "googlenet"
            row = conn.execute(
                select(Model.weights, Model.id).where(which).order_by(Model.id.desc())
            ).first()
        if row:
            bundle = from_bytes(row.weights)
            return bundle, f"trained {bundle.arch}, model {row.id} of {model_db}"
    torch.manual_seed(0)
    model = create_model("googlenet", 64).eval()
    return ModelBundle(model, "googlenet", 64, Normalizer(), 0.5, {}), "untrained googlenet"


def baseline(bundle, paths: list[str], db_url: str) -> tuple[float, list[float]]:  # noqa: ANN001
    """The plain loop a first version would write."""
    from db.schema import Prediction
    from db.session import session_scope
    from training.data.crop import central_box
    from training.models.registry import pneumonia_logit

    tf = transforms.Compose(
        [
            transforms.Resize((bundle.img_size, bundle.img_size)),
            transforms.ToTensor(),
            transforms.Normalize(bundle.normalizer.mean, bundle.normalizer.std),
        ]
    )
    probs = []
    start = time.perf_counter()
    with session_scope(db_url) as s, torch.no_grad():
        job_id = _job(s)
        for path in paths:
            img = Image.open(path).convert("RGB")
            if bundle.crop < 1.0:  # the model's own input: the same central crop
                img = img.crop(central_box(img.size, bundle.crop))
            x = tf(img).unsqueeze(0)
            p = torch.sigmoid(pneumonia_logit(bundle.model(x))).item()
            probs.append(p)
            s.add(
                Prediction(
                    job_id=job_id,
                    scorer="model:1",
                    model_id=1,
                    path=path,
                    prob=p,
                    label="PNEUMONIA" if p >= bundle.threshold else "NORMAL",
                )
            )
    return time.perf_counter() - start, probs


def store_model(bundle, db_url: str) -> None:  # noqa: ANN001
    """The benchmarked model as row 1, so cxrq's path loads it the way a worker does."""
    from db.session import session_scope
    from db.store import save_weights
    from training.models.checkpoint import to_bytes

    with session_scope(db_url) as s:
        save_weights(
            s, to_bytes(bundle), "bench", bundle.arch, bundle.img_size,
            id=1, preset="bench", threshold=bundle.threshold,
        )  # fmt: skip


def _job(session) -> int:  # noqa: ANN001
    """A bare job row for the baseline's rows to belong to."""
    from db.store import create_job

    return create_job(session, "score", {"folder": "bench"}).id


def fast(bundle, folder: Path, db_url: str, explain: str = "none"):  # noqa: ANN001, ANN201
    """cxrq's embedded scoring: plan chunks, create the job and its units, score, upsert rows
    (and heatmaps), close the job. Returns (seconds, {path: P(PNEUMONIA)})."""
    from db.schema import Prediction
    from db.session import session_scope
    from worker.jobs import ScoreParams, create_score_job
    from worker.score_job import run_scoring_job
    from worker.score_plan import plan_chunks

    start = time.perf_counter()
    chunks = plan_chunks(folder)
    job = create_score_job(ScoreParams(str(folder), explain=explain), chunks, scorer="1")
    run_scoring_job(job.id)
    seconds = time.perf_counter() - start
    with session_scope(db_url) as s:
        rows = s.execute(
            select(Prediction.path, Prediction.prob).where(Prediction.job_id == job.id)
        ).all()
    return seconds, {r.path: r.prob for r in rows}


def _best_of_two(cmd: list[str], env: dict[str, str]) -> float:
    times = []
    for _ in range(2):
        start = time.perf_counter()
        subprocess.run(
            cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        times.append(time.perf_counter() - start)
    return min(times)


def whole_process(folder: Path, tmp: Path, db_url: str) -> None:
    """Start-up included: every command a fresh process, as a user runs it."""
    ten = tmp / "ten"
    for path in sorted(folder.rglob("*.jpeg"))[:10]:
        (ten / path.parent.name).mkdir(parents=True, exist_ok=True)
        (ten / path.parent.name / path.name).symlink_to(path)
    env = {**os.environ, "CXRQ_DATABASE_URL": db_url, "CXRQ_CACHE_DIR": str(tmp / "cache")}
    env.pop("CXRQ_BROKER_URL", None)
    cxrq = [str(Path(sys.executable).with_name("cxrq"))]  # the installed command users run
    rows = [
        ('python -c "import torch"', [sys.executable, "-c", "import torch"], 0),
        ("cxrq score FOLDER_OF_10 --model 1", [*cxrq, "score", str(ten), "--model", "1"], 10),
    ]
    n = sum(1 for _ in folder.rglob("*.jpeg"))
    plain = [sys.executable, "-m", "benchmarks.scoring_bench", "--plain-loop", str(folder)]
    rows += [
        (f"cxrq score FOLDER_OF_{n} --model 1", [*cxrq, "score", str(folder), "--model", "1"], n),
        (f"plain PIL + torchvision loop over the {n}, whole process", plain, n),
    ]
    print("\n| command (a whole process, best of two) | seconds | images/s |\n| --- | --- | --- |")
    seconds = {}
    for name, cmd, count in rows:
        seconds[name] = t = _best_of_two(cmd, env)
        print(f"| `{name}` | {t:.2f} | {count / t:.0f} |" if count else f"| `{name}` | {t:.2f} | |")
    names = list(seconds)
    print(
        f"\n10 files: {seconds[names[1]] - seconds[names[0]]:.2f} s over importing torch; "
        f"{n} files: {seconds[names[3]] / seconds[names[2]]:.2f}x the plain loop"
    )


def plain_loop_process(folder: Path) -> None:
    """The baseline as its own process: model 1 from CXRQ_DATABASE_URL, rows into it."""
    from db.schema import Model
    from db.session import session_scope
    from training.models.checkpoint import from_bytes

    with session_scope() as s:
        bundle = from_bytes(s.get(Model, 1).weights)
    baseline(
        bundle, sorted(str(p) for p in folder.rglob("*.jpeg")), os.environ["CXRQ_DATABASE_URL"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-db", default=None, help="database holding a trained googlenet")
    parser.add_argument("--model-id", type=int, default=None, help="default: newest googlenet")
    parser.add_argument("--copies", type=int, default=7)
    parser.add_argument("--whole-process", action="store_true", help="also time whole commands")
    parser.add_argument("--explain", action="store_true", help="also time scoring with heatmaps")
    parser.add_argument("--plain-loop", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_loop:
        plain_loop_process(args.plain_loop)
        return
    tmp = Path(tempfile.mkdtemp(prefix="cxrq-score-bench-"))
    folder = repeated_fullres(tmp / "images", args.copies)
    db_url = f"sqlite:///{tmp / 'bench.db'}"
    os.environ["CXRQ_DATABASE_URL"] = db_url
    bundle, source = _bundle(args.model_db, args.model_id)
    paths = sorted(str(p) for p in folder.rglob("*.jpeg"))
    store_model(bundle, db_url)
    fast(bundle, folder, db_url)  # warm-up: page cache, allocator, threads
    t_base, base_probs = baseline(bundle, paths, db_url)
    t_fast, fast_probs = fast(bundle, folder, db_url)
    fast_list = [fast_probs[p] for p in paths]
    y = [0 if "/NORMAL/" in p else 1 for p in paths]
    agree = sum(
        (a >= bundle.threshold) == (b >= bundle.threshold)
        for a, b in zip(base_probs, fast_list, strict=True)
    ) / len(paths)
    n = len(paths)
    print(f"machine: {machine()}\nmodel: {source}\nfolder: {n} files (fullres x{args.copies})\n")
    print("| path | seconds | images/s | ROC AUC |\n| --- | --- | --- | --- |")
    print(
        f"| baseline: PIL + torchvision, one image at a time, ORM rows | {t_base:.1f} | "
        f"{n / t_base:.0f} | {roc_auc(y, base_probs):.4f} |"
    )
    print(
        f"| cxrq embedded: reduced decode, batches, upserted rows | {t_fast:.1f} | "
        f"{n / t_fast:.0f} | {roc_auc(y, fast_list):.4f} |"
    )
    print(f"\nspeed-up {t_base / t_fast:.2f}x; labels agree on {agree:.2%} of images")
    if args.explain:
        explain_cost(bundle, folder, db_url, n)
    if args.whole_process:
        whole_process(folder, tmp, db_url)


def explain_cost(bundle, folder: Path, db_url: str, n: int, rounds: int = 2) -> None:  # noqa: ANN001
    """Scoring with heatmaps for the PNEUMONIA calls and for every image, against plain
    scoring: interleaved rounds, best of each, so all three see the same machine."""
    from db.schema import Heatmap
    from db.session import session_scope

    best = {mode: float("inf") for mode in ("none", "pneumonia", "all")}
    for _ in range(rounds):
        for mode in best:
            best[mode] = min(best[mode], fast(bundle, folder, db_url, mode)[0])
    with session_scope(db_url) as s:
        maps = s.query(Heatmap).count()
    print("\n| scoring 1,050 files | seconds (best of 2) | images/s | x plain |")
    print("| --- | --- | --- | --- |")
    names = {"none": "plain (no heatmaps)", "pneumonia": "heatmaps for PNEUMONIA calls",
             "all": "heatmaps for every image"}  # fmt: skip
    for mode, seconds in best.items():
        print(
            f"| {names[mode]} | {seconds:.1f} | {n / seconds:.0f} | {seconds / best['none']:.2f} |"
        )
    print(f"\n{maps} heatmap rows stored over {rounds} rounds of both modes")


if __name__ == "__main__":
    main()
