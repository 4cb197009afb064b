"""Inputs a chest X-ray classifier should not judge, generated into a folder (nothing committed).

python -m benchmarks.ood_zoo /tmp/zoo      # writes /tmp/zoo/<kind>/*.png and prints the counts

Kinds: natural photos and other pictures that ship with scikit-image (photos, a printed page,
a CT phantom, retina images, faces), rendered text documents, noise, and X-rays from
`chest_xray/test` broken the ways films arrive broken: inverted, rotated 90 degrees, upside
down, a tiny crop, heavy blur.
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from benchmarks.common import SHARED

XRAYS = SHARED / "chest_xray" / "test"
BROKEN_PER_KIND = 30
WORDS = [
    "patient", "report", "findings", "impression", "lungs", "clear", "no", "acute", "heart",
    "size", "normal", "mediastinum", "unremarkable", "follow", "up", "recommended", "signed",
    "radiology", "department", "date",
]  # fmt: skip


def skimage_pictures() -> list[tuple[str, Image.Image]]:
    """Every picture that ships inside scikit-image, plus four crops of each large one."""
    import skimage.data

    folder = Path(skimage.data.__file__).parent
    out: list[tuple[str, Image.Image]] = []
    for path in sorted(folder.glob("*.png")) + sorted(folder.glob("*.jpg")):
        img = Image.open(path)
        img.load()
        out.append((path.stem, img))
        w, h = img.size
        if min(w, h) >= 256:
            for i, (x, y) in enumerate(((0, 0), (w // 2, 0), (0, h // 2), (w // 2, h // 2))):
                out.append((f"{path.stem}-crop{i}", img.crop((x, y, x + w // 2, y + h // 2))))
    faces = np.load(folder / "lfw_subset.npy")[:20]
    for i, face in enumerate(faces):
        out.append((f"face{i}", Image.fromarray((face * 255).astype(np.uint8)).resize((128, 128))))
    return out


def text_documents(n: int, rng: random.Random) -> list[tuple[str, Image.Image]]:
    out = []
    for i in range(n):
        page = Image.new("L", (rng.randint(300, 500), rng.randint(400, 640)), rng.randint(225, 255))
        draw = ImageDraw.Draw(page)
        for line in range(rng.randint(8, 30)):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))
            draw.text((20, 20 + line * 18), words, fill=rng.randint(0, 60))
        out.append((f"document{i}", page))
    return out


def noise(n: int, rng: random.Random) -> list[tuple[str, Image.Image]]:
    gen = np.random.default_rng(rng.randint(0, 2**31))
    out = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            arr = gen.integers(0, 256, (224, 224), dtype=np.uint8)
        elif kind == 1:
            arr = np.clip(gen.normal(128, 40, (224, 224)), 0, 255).astype(np.uint8)
        elif kind == 2:
            arr = gen.integers(0, 256, (224, 224, 3), dtype=np.uint8)
        else:  # smooth blobs: noise at a coarse scale
            small = gen.integers(0, 256, (8, 8), dtype=np.uint8)
            arr = np.asarray(Image.fromarray(small).resize((224, 224), Image.BICUBIC))
        out.append((f"noise{i}", Image.fromarray(arr)))
    return out


def broken_xrays(n: int, rng: random.Random) -> dict[str, list[tuple[str, Image.Image]]]:
    """n test/ X-rays for each way a film arrives broken, by way."""
    files = sorted(XRAYS.rglob("*.jpeg"))
    out: dict[str, list[tuple[str, Image.Image]]] = {}
    ways = {
        "inverted": lambda im: ImageOps.invert(im),
        "rotated90": lambda im: im.rotate(90, expand=True),
        "upside-down": lambda im: im.rotate(180),
        "tiny-crop": lambda im: _tiny_crop(im, rng),
        "blurred": lambda im: im.filter(ImageFilter.GaussianBlur(8)),
    }
    for way, change in ways.items():
        for path in rng.sample(files, n):
            with Image.open(path) as im:
                out.setdefault(way, []).append((path.stem, change(im.convert("L"))))
    return out


def _tiny_crop(im: Image.Image, rng: random.Random) -> Image.Image:
    side = max(8, min(im.size) // 6)
    x, y = rng.randint(0, im.width - side), rng.randint(0, im.height - side)
    return im.crop((x, y, x + side, y + side))


def build(folder: Path, seed: int = 0) -> Counter:
    """Write the zoo under folder/<kind>/; returns how many files of each kind."""
    rng = random.Random(seed)
    groups = {
        "pictures": skimage_pictures(),
        "documents": text_documents(20, rng),
        "noise": noise(20, rng),
        **broken_xrays(BROKEN_PER_KIND, rng),
    }
    counts: Counter = Counter()
    for kind, items in groups.items():
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for name, img in items:
            img.save(folder / kind / f"{name}.png")
            counts[kind] += 1
    return counts


if __name__ == "__main__":
    for kind, n in sorted(build(Path(sys.argv[1])).items()):
        print(f"{kind}: {n}")
