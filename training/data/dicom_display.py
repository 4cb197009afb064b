"""The DICOM display chain (PS3.4 N.2): stored values -> modality LUT (rescale slope and
intercept, or a Modality LUT Sequence) -> VOI (a VOI LUT Sequence, else window centre and width,
else the full range the stored bits can hold) -> MONOCHROME1 inverted, so bone is white as in
MONOCHROME2. A DICOM read naively looks right and is wrong, so every frame goes through it.

For up to 16 stored bits the chain is computed once per file on every value the bits can hold,
as a table of 8-bit levels, and applied to the pixels with one gather: 12-16-bit pixels never
pass through float arithmetic, which keeps an uncompressed DICOM within 2x of scoring a JPEG of
the same pixels (BENCHMARKS.md, "DICOM"). Past TABLE_LIMIT values only those present are mapped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pydicom.dataset import Dataset


class DicomError(ValueError):
    """A DICOM file that cannot be read as one radiograph; the message is one line."""


# A table over every value the stored bits can hold has 2^bits rows: 64 Ki for a 16-bit
# radiograph, 4 Gi (32 GiB as int64) for a 32-bit dose grid. Past this many rows only the values
# present in the frame are mapped, which the pixel count bounds.
TABLE_LIMIT = 1 << 16


def displayed(pixels: np.ndarray, ds: Dataset) -> np.ndarray:
    """Stored pixels -> uint8 display levels, one table lookup a pixel."""
    lo, hi = _stored_range(ds)
    if hi - lo + 1 <= TABLE_LIMIT:
        return np.take(display_lut(ds), _lut_index(pixels, ds))
    present, index = np.unique(np.clip(pixels.astype(np.int64), lo, hi), return_inverse=True)
    return display_levels(present, ds)[index.reshape(pixels.shape)]


def _stored_range(ds: Dataset) -> tuple[int, int]:
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)))
    if int(ds.get("PixelRepresentation", 0)):
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def display_lut(ds: Dataset) -> np.ndarray:
    """uint8 display level of every stored value from the lowest the stored bits can hold
    (at most TABLE_LIMIT of them: larger ranges are refused, never tabulated).

    Values past the stored range (set high bits in a badly written file) are clipped to it."""
    lo, hi = _stored_range(ds)
    if hi - lo + 1 > TABLE_LIMIT:
        raise DicomError(f"a display table of {hi - lo + 1:,} values is not built")
    return display_levels(np.arange(lo, hi + 1), ds)


def display_levels(stored: np.ndarray, ds: Dataset) -> np.ndarray:
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


def _voi(values: np.ndarray, ds: Dataset, full: tuple[float, float]) -> np.ndarray:
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


def _lut_index(pixels: np.ndarray, ds: Dataset) -> np.ndarray:
    """Each pixel's row in display_lut: its value less the lowest stored value, in range."""
    lo, hi = _stored_range(ds)
    if pixels.dtype.kind == "u" and lo == 0:
        return np.minimum(pixels, hi) if int(pixels.max(initial=0)) > hi else pixels
    return np.clip(pixels.astype(np.int32) - lo, 0, hi - lo)


def first_line(exc: BaseException) -> str:
    """An exception's message as one line (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
