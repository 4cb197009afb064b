"""DICOM X-rays read as a reading-room viewer shows them: the file found by suffix or marker,
its frame decoded (at reduced scale where the codec allows), and its pixels put through the
standard's display chain (training.data.dicom_display). The header is read once, with the
pixels, and judged before they are decoded (training.data.dicom_rules: a CT, a mammogram or a
For Processing image is refused); the image's `info["dicom"]` carries what rows may keep of it
(DicomHeader, with the flags its answers carry), so training.data.dicom_identity needs no second
read of a file that decoded.

    img = open_image(path, draft=128, max_pixels=64_000_000)   # any file, as Image.open

Nothing here imports torch: the CLI's picture code reads DICOMs through this module too.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from training.data.dicom_display import DicomError, displayed, first_line
from training.data.dicom_rules import check_header, header_flags, header_text

if TYPE_CHECKING:
    from pydicom.dataset import Dataset
    from pydicom.uid import UID

DICOM_SUFFIXES = {".dcm", ".dicom"}
_MAGIC_OFFSET, _MAGIC = 128, b"DICM"  # after the 128-byte preamble (PS3.10 7.1)

# pydicom warns on stderr about what it reads past (a file cut short, a bad value); the file's
# error row already says what matters. Set once here: changing filters while decoding threads
# run is not thread-safe.
warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")

# What to install for a transfer syntax pydicom's own code cannot decode.
_PLUGINS = {
    "JPEG 2000": "pylibjpeg-openjpeg",
    "JPEG-LS": "pylibjpeg-libjpeg",
    "JPEG": "pylibjpeg-libjpeg",
    "RLE": "pylibjpeg-rle",
}


def has_dicom_magic(path: str | os.PathLike) -> bool:
    """True when the file carries the DICM marker after its 128-byte preamble."""
    try:
        with open(path, "rb") as f:
            f.seek(_MAGIC_OFFSET)
            return f.read(len(_MAGIC)) == _MAGIC
    except OSError:
        return False


def is_dicom(path: str | os.PathLike) -> bool:
    """A .dcm/.dicom file, or a file without an extension that starts like a DICOM file."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in DICOM_SUFFIXES:
        return True
    return suffix == "" and has_dicom_magic(p)


def read_dataset(path: str | os.PathLike, header_only: bool) -> Dataset:
    """The file's data set (its header alone with `header_only`); DicomError if pydicom cannot
    read it."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        # force: a .dcm without the preamble (older writers) is still a DICOM data set.
        return pydicom.dcmread(path, stop_before_pixels=header_only, force=True)
    except FileNotFoundError:
        raise
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError) as exc:
        raise DicomError(f"not a DICOM file pydicom can read: {first_line(exc)}") from None


def open_dicom(
    path: str | os.PathLike, draft: int | None = None, max_pixels: int | None = None
) -> Image.Image:
    """The radiograph as an 8-bit "L" image (or "RGB" for a colour file) after the display
    chain; `draft` (a side in pixels) lets compressed frames decode at reduced scale and
    shrinks the rest; a file of more than `max_pixels` is refused before decoding. Its
    `info["dicom"]` is the header's DicomHeader. A header that is not of a chest radiograph
    (training.data.dicom_rules) is a DicomError before any pixel is decoded."""
    ds = read_dataset(path, header_only=False)
    check_header(ds)
    img = _frame(ds, draft, max_pixels)
    img.info["dicom"] = header_of(ds)
    return img


def _frame(ds: Dataset, draft: int | None, max_pixels: int | None) -> Image.Image:
    if "PixelData" not in ds:
        # pydicom drops a Pixel Data element the file ends inside of, so say both causes.
        raise DicomError("DICOM file holds no image: no Pixel Data, or the file is cut short")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise DicomError(f"multi-frame DICOM ({frames} frames) is not read: one radiograph a file")
    samples = int(ds.get("SamplesPerPixel", 1))
    if samples not in (1, 3):
        raise DicomError(f"DICOM with {samples} samples a pixel is not read (1 or 3 expected)")
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if max_pixels and rows * cols > max_pixels:
        raise DicomError(f"image too large: {cols} x {rows} pixels, limit {max_pixels:,}")
    if samples == 1 and draft and (kind := _pil_frame_syntax(ds)):
        with contextlib.suppress(DicomError):  # else pydicom's decoders below say why
            return _reduced_frame(ds, kind, draft)
    pixels = _pixel_array(ds)
    if samples == 3:
        img = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), "RGB")
    else:
        img = Image.fromarray(displayed(pixels, ds), "L")
    return _shrink(img, draft) if draft else img


@dataclass(frozen=True)
class DicomHeader:
    """What scoring keeps of a header while it scores the file (the ID only in memory), and
    what its review flags come from: BodyPartExamined and ViewPosition as written."""

    sop_instance_uid: str | None
    patient_id: str | None
    body_part: str | None = None
    view_position: str | None = None

    @property
    def flags(self) -> tuple[str, ...]:
        """The review reasons the header raises (training.data.dicom_rules.HEADER_REASONS)."""
        return header_flags(self.body_part, self.view_position)


def header_of(ds: Dataset) -> DicomHeader:
    return DicomHeader(
        header_text(ds, "SOPInstanceUID"),
        header_text(ds, "PatientID"),
        header_text(ds, "BodyPartExamined"),
        header_text(ds, "ViewPosition"),
    )


def _shrink(img: Image.Image, draft: int) -> Image.Image:
    """Box-average by the largest whole factor (at most 8) keeping `draft` pixels a side, as a
    JPEG's reduced-scale decode does: the resize that follows then works on 1/k^2 the pixels."""
    factor = max(1, min(8, min(img.size) // draft))
    return img.reduce(factor) if factor > 1 else img


def open_image(
    path: str | os.PathLike, draft: int | None = None, max_pixels: int | None = None
) -> Image.Image:
    """Any file cxrq reads as a PIL image: DICOM through the display chain (in memory), other
    files opened lazily by PIL (the caller checks their size). Use it as Image.open."""
    return open_dicom(path, draft, max_pixels) if is_dicom(path) else Image.open(path)


def _syntax(ds: Dataset) -> UID | None:
    meta = getattr(ds, "file_meta", None)
    return getattr(meta, "TransferSyntaxUID", None)


def _pil_frame_syntax(ds: Dataset) -> str | None:
    """Which codec PIL can decode the one frame with at reduced scale ("JPEG" or "JPEG 2000"),
    or None."""
    from pydicom.uid import JPEG2000, JPEG2000Lossless, JPEGBaseline8Bit

    if int(ds.get("PixelRepresentation", 0)) != 0:
        return None  # PIL reads unsigned samples only
    syntax = _syntax(ds)
    if syntax == JPEGBaseline8Bit and int(ds.get("BitsStored", 8)) == 8:
        return "JPEG"
    if syntax in (JPEG2000Lossless, JPEG2000) and int(ds.get("BitsStored", 8)) <= 16:
        return "JPEG 2000"
    return None


def _reduced_frame(ds: Dataset, kind: str, draft: int) -> Image.Image:
    """The frame decoded by PIL at the smallest scale that keeps `draft` pixels a side: JPEG
    at 1/2-1/8 (as a .jpeg file), JPEG 2000 at 1/2^r by skipping wavelet levels. Full-size
    JPEG 2000 decoding costs ~50x a reduced JPEG; this keeps DICOM near JPEG speed."""
    from pydicom.encaps import generate_frames

    try:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        shift = 0 if kind == "JPEG" else _j2k_shift(frame)
        pixels = _pil_decode(frame, kind, draft)
    except (OSError, ValueError, StopIteration, SyntaxError) as exc:
        reason = first_line(exc)
        raise DicomError(f"cannot decode DICOM pixel data ({kind}): {reason}") from None
    if shift:
        pixels = pixels >> shift
    return Image.fromarray(displayed(pixels, ds), "L")


def _pil_decode(frame: bytes, kind: str, draft: int) -> np.ndarray:
    """Pixels of a JPEG frame at 1/2-1/8 scale, or of a JPEG 2000 frame at 1/2^r. Pillow
    rejects some sizes at some levels (a 1963 x 2172 frame at 1/8, though not at 1/4 or 1/16),
    so fewer levels are tried before the caller falls back to full size."""
    levels = 0
    while True:
        try:
            with Image.open(io.BytesIO(frame)) as img:
                if kind == "JPEG":
                    img.draft("L", (draft, draft))
                else:
                    levels = levels or _levels(img.size, draft)
                    img.reduce = levels
                return np.array(img.convert("L") if img.mode in ("RGB", "YCbCr") else img)
        except OSError:
            if levels <= 1:
                raise
            levels -= 1


def _j2k_shift(frame: bytes) -> int:
    """PIL scales a JPEG 2000 sample of p bits up to 16 (8 for p <= 8): the bits to shift back,
    from the codestream's SIZ marker. Anything but an unsigned one-component raw codestream is
    left to pydicom's decoders."""
    if frame[:4] != b"\xff\x4f\xff\x51" or len(frame) < 43 or frame[40:42] != b"\x00\x01":
        raise ValueError("not a one-component JPEG 2000 codestream")
    ssiz = frame[42]
    if ssiz & 0x80:
        raise ValueError("signed JPEG 2000 samples")
    precision = (ssiz & 0x7F) + 1
    return (8 if precision <= 8 else 16) - precision


def _levels(size: tuple[int, int], draft: int) -> int:
    """How many halvings keep both sides at least `draft` pixels (at most 5)."""
    levels = 0
    while levels < 5 and min(size) >> (levels + 1) >= draft:
        levels += 1
    return levels


def _pixel_array(ds: Dataset) -> np.ndarray:
    try:
        syntax = _syntax(ds)
        if syntax is not None and syntax.is_compressed:
            _prefer_pylibjpeg(ds)
        return ds.pixel_array
    except Exception as exc:  # pydicom raises many types; each becomes one error row
        raise DicomError(_decode_failure(ds, exc)) from None


def _prefer_pylibjpeg(ds: Dataset) -> None:
    """pylibjpeg where it decodes the syntax: measured 10x pydicom's own RLE decoder and 1.3x
    Pillow's JPEG 2000 at full size, on one 1.6-megapixel X-ray."""
    from pydicom.pixels import get_decoder

    with contextlib.suppress(NotImplementedError):
        if "pylibjpeg" in get_decoder(_syntax(ds)).available_plugins:
            ds.pixel_array_options(decoding_plugin="pylibjpeg")


def _decode_failure(ds: Dataset, exc: Exception) -> str:
    """One line naming the transfer syntax and, where a decoder is missing, what to install."""
    from pydicom.pixels import get_decoder

    uid = _syntax(ds)
    if uid is None:
        return f"cannot decode DICOM pixel data (no transfer syntax): {first_line(exc)}"
    name = f"{uid.name} ({uid})"
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        return f"cannot decode DICOM pixel data: no decoder for transfer syntax {name}"
    if not decoder.is_available:
        package = next((p for k, p in _PLUGINS.items() if k in uid.name), "pylibjpeg")
        return f"cannot decode DICOM pixel data in {name}: install {package}"
    return f"cannot decode DICOM pixel data in {name}: {first_line(exc)}"
