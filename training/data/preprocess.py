"""Decoding and preprocessing: the one eval-time transform shared by training and serving.

`decode_image` turns a file into a uint8 tensor of shape (3, size, size); `Normalizer` turns a
uint8 batch into the float input a model expects. Training caches decoded uint8 tensors and
normalises per batch, serving does the same per batch, so the two paths cannot drift.
"""

from __future__ import annotations

import collections
import itertools
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
from PIL import Image, UnidentifiedImageError

from training.data.bitdepth import to_8bit
from training.data.crop import central_box
from training.data.dicom import DicomError, DicomHeader, first_line, open_image
from training.data.equalize import equalize

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageDecodeError(Exception):
    """A file that is not a readable image; the message is one line fit for an error row."""


# The most pixels decode_image decodes into memory: several times the largest chest X-ray
# detector (about 4300 x 4300), and at most ~200 MB as RGB per decoding thread. A JPEG is
# counted after its reduced-scale decode (up to 1/8 a side), so a 100-megapixel JPEG still
# decodes cheaply while a 100-megapixel PNG, decoded whole, is refused.
MAX_PIXELS = 64_000_000
# decode_image is where cxrq opens images, and it enforces MAX_PIXELS itself before any pixel
# is decoded. PIL's own check counts the declared size (so it would refuse JPEGs that decode
# cheaply) and, short of refusing, prints a warning on stderr for every large file.
Image.MAX_IMAGE_PIXELS = None

# Modes holding more than 8 bits a pixel: 16-bit PNGs open as I;16, TIFFs as I or F.
HIGH_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def decode_image(
    path: str | os.PathLike, size: int, equalize_mode: str = "none", crop: float = 1.0
) -> torch.Tensor:
    """Read an image file as a (3, size, size) uint8 RGB tensor, squashing the aspect ratio;
    `crop` < 1 keeps that central fraction of each side first (where the lungs are, away from
    borders and burnt-in markers); `equalize_mode` (training.data.equalize) maps contrast on a
    2*size copy. Images of more than 8 bits a pixel are scaled to 8 by their bit depth."""
    return decode_with_header(path, size, equalize_mode, crop)[0]


def decode_with_header(
    path: str | os.PathLike, size: int, equalize_mode: str = "none", crop: float = 1.0
) -> tuple[torch.Tensor, DicomHeader | None]:
    """decode_image's tensor, and the DicomHeader of a DICOM file (None for other files), read
    with its pixels."""
    try:
        with open_image(path, 2 * size, MAX_PIXELS) as img:
            header = img.info.get("dicom")
            # JPEG can decode at 1/2, 1/4 or 1/8 scale for a fraction of the cost; asking for
            # twice the target keeps enough pixels for the antialiased resize below.
            declared = img.size
            img.draft(img.mode, (2 * size, 2 * size))
            _check_pixels(declared, img.size)
            if img.mode in HIGH_BIT_MODES:
                img = to_8bit(img)
            if crop < 1.0:
                img = img.crop(central_box(img.size, crop))
            if img.mode not in ("L", "RGB"):
                img = img.convert("RGB")
            if equalize_mode != "none":
                # One working resolution for every source size, so a 224 px training image and
                # a 3000 px clinical file are equalised alike.
                img = img.resize((2 * size, 2 * size), Image.Resampling.BILINEAR)
                img = equalize(img, equalize_mode)
            img = img.resize((size, size), Image.Resampling.BILINEAR)
            if img.mode != "RGB":
                img = img.convert("RGB")
            data = img.tobytes()
    except FileNotFoundError as exc:
        raise ImageDecodeError(f"file not found: {exc.filename}") from None
    except DicomError as exc:
        raise ImageDecodeError(str(exc)) from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image file PIL can read") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageDecodeError(f"cannot decode image: {reason}") from None
    tensor = torch.frombuffer(bytearray(data), dtype=torch.uint8).view(size, size, 3)
    return tensor.permute(2, 0, 1), header


def _check_pixels(declared: tuple[int, int], decoded: tuple[int, int]) -> None:
    """Refuse before decoding when the pixels to decode (after any JPEG draft) pass MAX_PIXELS."""
    if decoded[0] * decoded[1] > MAX_PIXELS:
        w, h = declared
        raise ImageDecodeError(f"image too large: {w} x {h} pixels, limit {MAX_PIXELS:,}")


@dataclass
class DecodedBatch:
    """Images that decoded, stacked, the reason for each one that did not, and the header of
    each DICOM file that decoded."""

    tensor: torch.Tensor  # (n_ok, 3, size, size) uint8
    ok_index: list[int]  # position in the input of each stacked image
    errors: dict[int, str] = field(default_factory=dict)  # input position -> reason
    headers: dict[int, DicomHeader] = field(default_factory=dict)  # input position -> header


Decoded = tuple[torch.Tensor, DicomHeader | None] | str  # one file: (pixels, header) or why not


def _decode_one(path: str | os.PathLike, size: int, equalize_mode: str, crop: float) -> Decoded:
    try:
        return decode_with_header(path, size, equalize_mode, crop)
    except ImageDecodeError as exc:
        return str(exc)
    except Exception as exc:  # MemoryError too: one file never fails the others
        return f"cannot decode image: {type(exc).__name__}: {first_line(exc)}"


def _stack(results: Sequence[Decoded], size: int) -> DecodedBatch:
    ok_index = [i for i, r in enumerate(results) if not isinstance(r, str)]
    errors = {i: r for i, r in enumerate(results) if isinstance(r, str)}
    headers = {i: results[i][1] for i in ok_index if results[i][1] is not None}
    stacked = (
        torch.stack([results[i][0] for i in ok_index])
        if ok_index
        else torch.empty((0, 3, size, size), dtype=torch.uint8)
    )
    return DecodedBatch(stacked.contiguous(), ok_index, errors, headers)


def decode_many(
    paths: Sequence[str | os.PathLike],
    size: int,
    threads: int = 0,
    equalize_mode: str = "none",
    crop: float = 1.0,
) -> DecodedBatch:
    """Decode many files with a thread pool (PIL releases the GIL while decoding)."""
    threads = threads or min(8, os.cpu_count() or 1)

    def one(path: str | os.PathLike) -> Decoded:
        return _decode_one(path, size, equalize_mode, crop)

    if threads > 1 and len(paths) > 1:
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(one, paths))
    else:
        results = [one(p) for p in paths]
    return _stack(results, size)


def stream_decode(
    paths: Sequence[str | os.PathLike],
    size: int,
    batch: int,
    threads: int,
    equalize_mode: str = "none",
    crop: float = 1.0,
    pin: bool = False,
) -> Iterator[tuple[int, DecodedBatch]]:
    """(start, the batch of paths[start:start + batch] decoded), batch after batch, while the
    thread pool keeps decoding the next ones: the caller's work on one batch (a GPU's
    inference) overlaps the decoding of the next. At most three batches are in flight; `pin`
    puts each batch in page-locked memory, so its copy to a GPU runs without a wait."""
    window: collections.deque[Future[Decoded]] = collections.deque()
    with ThreadPoolExecutor(max(1, threads)) as pool:
        ahead = iter(range(len(paths)))

        def submit(n: int) -> None:
            for i in itertools.islice(ahead, n):
                window.append(pool.submit(_decode_one, paths[i], size, equalize_mode, crop))

        submit(3 * batch)
        try:
            for start in range(0, len(paths), batch):
                results = [window.popleft().result() for _ in range(min(batch, len(window)))]
                submit(batch)
                decoded = _stack(results, size)
                if pin and decoded.tensor.numel():
                    decoded.tensor = decoded.tensor.pin_memory()
                yield start, decoded
        finally:  # a caller that stops early does not wait for decodes it will never use
            for future in window:
                future.cancel()


def mean_grey(images: torch.Tensor) -> torch.Tensor:
    """(N,) the mean pixel value, 0-1, of each uint8 image of a (N, C, H, W) batch, as drift
    monitoring records it (its brightness); summed as integers, with no float copy of the
    batch."""
    if not len(images):
        return torch.empty(0, dtype=torch.float64)
    per_image = images[0].numel() * 255
    return images.sum(dim=(1, 2, 3), dtype=torch.int64).double() / per_image


@dataclass(frozen=True)
class Normalizer:
    """uint8 (N, 3, H, W) -> float32 normalised; the statistics travel with each model."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return self.from_unit(batch.float().div_(255.0))

    def from_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a float batch already scaled to [0, 1] (in place)."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return x.sub_(mean).div_(std)
