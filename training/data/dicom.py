"""DICOM X-rays: pixels as a reading-room viewer shows them, and who the patient is.

A DICOM read naively looks right and is wrong, so every file goes through the display chain
of the standard (PS3.4 N.2): stored values -> modality LUT (rescale slope and intercept, or a
Modality LUT Sequence) -> VOI (a VOI LUT Sequence, else window centre and width, else the full
range the stored bits can hold) -> MONOCHROME1 inverted, so bone is white as in MONOCHROME2.

The chain is computed once per file on every value the stored bits can hold, as a table of
8-bit levels, and applied to the pixels with one gather: 12-16-bit pixels never pass through
float arithmetic, which keeps an uncompressed DICOM within 2x of scoring a JPEG of the same
pixels (BENCHMARKS.md, "DICOM").

Nothing here imports torch: the CLI's picture code reads DICOMs through this module too.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

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


class DicomError(ValueError):
    """A DICOM file that cannot be read as one radiograph; the message is one line."""


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


def _read(path: str | os.PathLike, header_only: bool):  # noqa: ANN202 - pydicom Dataset
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
    shrinks the rest; a file of more than `max_pixels` is refused before decoding."""
    ds = _read(path, header_only=False)
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
        img = Image.fromarray(_displayed(pixels, ds), "L")
    return _shrink(img, draft) if draft else img


# A table over every value the stored bits can hold has 2^bits rows: 64 Ki for a 16-bit
# radiograph, 4 Gi (32 GiB as int64) for a 32-bit dose grid. Past this many rows only the values
# present in the frame are mapped, which the pixel count bounds.
TABLE_LIMIT = 1 << 16


def _displayed(pixels: np.ndarray, ds) -> np.ndarray:  # noqa: ANN001
    """Stored pixels -> uint8 display levels, one table lookup a pixel."""
    lo, hi = _stored_range(ds)
    if hi - lo + 1 <= TABLE_LIMIT:
        return np.take(display_lut(ds), _lut_index(pixels, ds))
    present, index = np.unique(np.clip(pixels.astype(np.int64), lo, hi), return_inverse=True)
    return display_levels(present, ds)[index.reshape(pixels.shape)]


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


def _syntax(ds):  # noqa: ANN001, ANN202 - a pydicom UID
    meta = getattr(ds, "file_meta", None)
    return getattr(meta, "TransferSyntaxUID", None)


def _pil_frame_syntax(ds) -> str | None:  # noqa: ANN001
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


def _reduced_frame(ds, kind: str, draft: int) -> Image.Image:  # noqa: ANN001
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
    return Image.fromarray(_displayed(pixels, ds), "L")


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


def _pixel_array(ds) -> np.ndarray:  # noqa: ANN001
    try:
        syntax = _syntax(ds)
        if syntax is not None and syntax.is_compressed:
            _prefer_pylibjpeg(ds)
        return ds.pixel_array
    except Exception as exc:  # pydicom raises many types; each becomes one error row
        raise DicomError(_decode_failure(ds, exc)) from None


def _prefer_pylibjpeg(ds) -> None:  # noqa: ANN001
    """pylibjpeg where it decodes the syntax: measured 10x pydicom's own RLE decoder and 1.3x
    Pillow's JPEG 2000 at full size, on one 1.6-megapixel X-ray."""
    from pydicom.pixels import get_decoder

    with contextlib.suppress(NotImplementedError):
        if "pylibjpeg" in get_decoder(_syntax(ds)).available_plugins:
            ds.pixel_array_options(decoding_plugin="pylibjpeg")


def _decode_failure(ds, exc: Exception) -> str:  # noqa: ANN001
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


def _stored_range(ds) -> tuple[int, int]:  # noqa: ANN001
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)))
    if int(ds.get("PixelRepresentation", 0)):
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def display_lut(ds) -> np.ndarray:  # noqa: ANN001
    """uint8 display level of every stored value from the lowest the stored bits can hold
    (at most TABLE_LIMIT of them: larger ranges are refused, never tabulated).

    Values past the stored range (set high bits in a badly written file) are clipped to it."""
    lo, hi = _stored_range(ds)
    if hi - lo + 1 > TABLE_LIMIT:
        raise DicomError(f"a display table of {hi - lo + 1:,} values is not built")
    return display_levels(np.arange(lo, hi + 1), ds)


def display_levels(stored: np.ndarray, ds) -> np.ndarray:  # noqa: ANN001
    """uint8 display levels of some stored values (integers within the stored range)."""
    from pydicom.pixels import apply_modality_lut

    lo, hi = _stored_range(ds)
    try:  # integers in: a Modality LUT Sequence indexes its table with them
        values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
        # The full-range VOI spans what the stored bits can hold, not only the values present.
        ends = np.asarray(apply_modality_lut(np.array([lo, hi]), ds), dtype=np.float64)
        unit = _voi(values, ds, (min(values.min(), ends.min()), max(values.max(), ends.max())))
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise DicomError(f"cannot apply the DICOM display chain: {first_line(exc)}") from None
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        unit = 1.0 - unit  # MONOCHROME1 shows low values white: invert to match MONOCHROME2
    return np.rint(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)


def _voi(values: np.ndarray, ds, full: tuple[float, float]) -> np.ndarray:  # noqa: ANN001
    """Modality values -> 0-1: the first VOI LUT, else the first window, else the `full`
    (low, high) range of modality values."""
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        from pydicom.pixels import apply_voi

        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        codes = np.rint(values).astype(np.int64)  # the LUT is indexed by whole values
        return np.asarray(apply_voi(codes, ds, 0), dtype=np.float64) / (2**bits - 1)
    centre, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if centre is not None and width is not None and width > 0:
        return window(values, centre, width, str(ds.get("VOILUTFunction", "LINEAR")).upper())
    low, high = float(full[0]), float(full[1])
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def window(values: np.ndarray, centre: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """The VOI window of PS3.3 C.11.2.1.2 mapped to 0-1 (LINEAR, LINEAR_EXACT or SIGMOID)."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - centre) / width))
    if function == "LINEAR_EXACT":
        return np.clip((values - centre) / width + 0.5, 0.0, 1.0)
    if width < 1:
        raise DicomError(f"window width {width} is below 1, which LINEAR does not allow")
    if width == 1:  # the standard's LINEAR is a step at the centre for width 1
        return (values >= centre - 0.5).astype(np.float64)
    return np.clip((values - (centre - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def _first(value: object) -> float | None:
    """A window value; files may hold several (alternative views): the first is the default."""
    if value is None:
        return None
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return float(value[0]) if len(value) else None
    return float(value)


def _lut_index(pixels: np.ndarray, ds) -> np.ndarray:  # noqa: ANN001
    """Each pixel's row in display_lut: its value less the lowest stored value, in range."""
    lo, hi = _stored_range(ds)
    if pixels.dtype.kind == "u" and lo == 0:
        return np.minimum(pixels, hi) if int(pixels.max(initial=0)) > hi else pixels
    return np.clip(pixels.astype(np.int32) - lo, 0, hi - lo)


@dataclass(frozen=True)
class DicomIdentity:
    """What a prediction row may keep of a DICOM header: never a name, birth date or ID."""

    sop_instance_uid: str | None
    patient_hash: str | None  # keyed hash of PatientID; None without a salt or a PatientID


def header_patient_id(path: str | os.PathLike) -> str | None:
    """PatientID from the header, stripped; None when absent or empty."""
    ds = _header(path)
    return None if ds is None else _text(ds, "PatientID")


def _text(ds, keyword: str) -> str | None:  # noqa: ANN001
    """A header value as stripped text; None when absent or empty."""
    return str(ds.get(keyword, "") or "").strip() or None


def identity(path: str | os.PathLike, salt: str | None) -> DicomIdentity | None:
    """The SOP Instance UID and salted patient hash of a DICOM file; None for other files.
    The salt is the deployment's (CXRQ_PATIENT_SALT, read by the caller); None: no hash."""
    if not is_dicom(path):
        return None
    ds = _header(path)
    if ds is None:
        return DicomIdentity(None, None)
    patient = _text(ds, "PatientID")
    return DicomIdentity(_text(ds, "SOPInstanceUID"), patient and patient_hash(patient, salt))


def patient_hash(patient_id: str, salt: str | None) -> str | None:
    """HMAC-SHA256 of the ID keyed by the salt, 32 hex digits; None without a salt, because an
    unsalted hash of a short hospital number is undone by trying them all."""
    if not salt:
        return None
    return hmac.new(salt.encode(), patient_id.encode(), hashlib.sha256).hexdigest()[:32]


def _header(path: str | os.PathLike):  # noqa: ANN202 - a pydicom Dataset, or None
    try:
        return _read(path, header_only=True)
    except Exception:  # any failure to read a header leaves the row without an identity
        return None


def first_line(exc: BaseException) -> str:
    """An exception's message as one line (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
