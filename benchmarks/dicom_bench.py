"""DICOM scoring vs JPEG scoring of the same pixels, end to end, in one process.

    python -m benchmarks.dicom_bench [--model-db sqlite:///path/cxrq.db] [--model-id N]
        [--rounds 3]

Folders: the 150 full-resolution X-rays (8-bit grayscale JPEGs) as they are (the baseline),
and their decoded pixels written as DICOM in each encoding below. Each folder is scored by
cxrq's embedded path (plan, decode, model, rows into a fresh SQLite database), the folders
alternating, `rounds` rounds, best of each. The model is --model-id (else the newest googlenet)
in --model-db, or a freshly initialised GoogLeNet@64: speed does not depend on the weights.
Also reported: the mean and largest |P(DICOM) - P(JPEG)| over the 150, and how many labels agree.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import SHARED, link_or_copy, machine
from benchmarks.scoring_bench import _bundle, fast, store_model
from training.data.dicom_write import DicomSpec, write_dicom

ENCODINGS = {
    "uncompressed, 16-bit MONOCHROME1, window": DicomSpec(bits=16, monochrome1=True, window=True),
    "uncompressed, 12-bit, rescale": DicomSpec(bits=12, rescale=(2.0, -1024.0)),
    "JPEG baseline, 8-bit": DicomSpec(encoding="jpeg-baseline"),
    "JPEG 2000 lossless, 12-bit": DicomSpec(bits=12, encoding="jpeg2000"),
    "RLE lossless, 16-bit": DicomSpec(bits=16, encoding="rle"),
}


def folders(tmp: Path) -> dict[str, Path]:
    """{name: folder}: the JPEG baseline first, then one folder per DICOM encoding."""
    sources = sorted((SHARED / "fullres").rglob("*.jpeg"))
    if not sources:
        raise SystemExit(f"no images in {SHARED / 'fullres'}")
    out = {"JPEG (the source files)": tmp / "jpeg"}
    for src in sources:
        dst = tmp / "jpeg" / src.parent.name / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(src, dst)
    for i, (name, spec) in enumerate(ENCODINGS.items()):
        start = time.perf_counter()
        for src in sources:
            dst = tmp / f"dicom{i}" / src.parent.name / (src.stem + ".dcm")
            dst.parent.mkdir(parents=True, exist_ok=True)
            write_dicom(dst, np.array(Image.open(src).convert("L")), spec)
        print(f"wrote {name}: {time.perf_counter() - start:.0f} s", flush=True)
        out[name] = tmp / f"dicom{i}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-db")
    parser.add_argument("--model-id", type=int)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bundle, origin = _bundle(args.model_db, args.model_id)
    print(f"machine: {machine()}\nmodel: {origin}")
    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        os.environ["CXRQ_DATABASE_URL"] = db_url  # the worker's functions open this one
        store_model(bundle, db_url)
        named = folders(Path(tmp))
        best: dict[str, float] = {}
        probs: dict[str, dict[str, float]] = {}
        for _ in range(args.rounds):
            for name, folder in named.items():
                seconds, rows = fast(bundle, folder, db_url)
                best[name] = min(best.get(name, seconds), seconds)
                probs[name] = {Path(p).parent.name + "/" + Path(p).stem: v for p, v in rows.items()}
        report(best, probs, bundle.threshold)


def report(best: dict[str, float], probs: dict[str, dict[str, float]], threshold: float) -> None:
    names = list(best)
    base, base_probs = best[names[0]], probs[names[0]]
    n = len(base_probs)
    print(
        f"\n| input ({n} files) | seconds (best of rounds) | files/s | x JPEG "
        "| mean / max abs(P - P JPEG) | labels agree |\n| --- | --- | --- | --- | --- | --- |"
    )
    for name in names:
        diffs = [abs(probs[name][k] - base_probs[k]) for k in base_probs]
        agree = sum(
            (probs[name][k] >= threshold) == (base_probs[k] >= threshold) for k in base_probs
        )
        print(
            f"| {name} | {best[name]:.2f} | {n / best[name]:.0f} | {best[name] / base:.2f} "
            f"| {sum(diffs) / n:.4f} / {max(diffs):.4f} | {agree}/{n} |"
        )


if __name__ == "__main__":
    main()
