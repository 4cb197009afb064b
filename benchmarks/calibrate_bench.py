"""What a site calibration costs beside scoring the same folder: `cxrq score FOLDER` (the
baseline) and `cxrq calibrate MODEL --data FOLDER` alternated in one process, embedded, on a
copy of the database, and the medians written as a results table row.

    python -m benchmarks.calibrate_bench --model-db sqlite:////work/runs/site.db --model-id 1 \
        [--data ../shared/data/chest_xray/test] [--repeats 3] [--adapt]

The model's weights are loaded once before timing (the warm cache a worker has), so both
sides pay the same decode and inference; the calibration adds the profile fit.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from click.testing import CliRunner

from benchmarks.common import SHARED, machine
from cli.main import cli


def _timed(args: list[str]) -> float:
    start = time.perf_counter()
    result = CliRunner().invoke(cli, args)
    seconds = time.perf_counter() - start
    if result.exit_code != 0:
        raise SystemExit(f"cxrq {' '.join(args)} failed:\n{result.output}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-db", required=True, help="sqlite URL of a database with the model")
    parser.add_argument("--model-id", required=True)
    parser.add_argument("--data", type=Path, default=SHARED / "chest_xray" / "test")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--adapt", action="store_true", help="time --adapt too")
    args = parser.parse_args()
    source = Path(args.model_db.removeprefix("sqlite:///"))
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        shutil.copyfile(source, db)
        os.environ["CXRQ_DATABASE_URL"] = f"sqlite:///{db}"
        folder = str(args.data.resolve())
        score = ["score", folder, "--model", args.model_id, "--explain", "none"]
        _timed(score)  # warm: weights cached, kernels chosen
        times: dict[str, list[float]] = {"score": [], "calibrate": [], "calibrate --adapt": []}
        for i in range(args.repeats):
            times["score"].append(_timed(score))
            site = ["calibrate", args.model_id, "--data", folder, "--site", f"bench{i}"]
            times["calibrate"].append(_timed(site))
            if args.adapt:
                times["calibrate --adapt"].append(_timed([*site[:-1], f"adapt{i}", "--adapt"]))
    base = statistics.median(times["score"])
    print(f"machine: {machine()}")
    print(f"folder: {folder}; {args.repeats} alternated repeats, medians")
    print("| command | median s | runs | vs score |")
    print("| --- | --- | --- | --- |")
    for name, values in times.items():
        if values:
            median = statistics.median(values)
            runs = ", ".join(f"{v:.1f}" for v in values)
            print(f"| {name} | {median:.1f} | {runs} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()
