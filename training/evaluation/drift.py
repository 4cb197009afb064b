"""Drift: a batch of scored images against the reference its site profile (or model) was
fitted with, one two-sample test per statistic and Holm over all of them.

from training.evaluation.drift import Sample, compare, reference_sample
stored = reference_sample(prob, pneumonia, ood, {"not-cxr": flagged, ...})  # plain JSON
batch = Sample.from_rows([(prob, label, ood_score, review_reasons), ...])
result = compare(stored, batch)  # result["verdict"]: drift | no drift | no reference | ...

The reference is a sample, not a summary: per image P, the OOD score, the PNEUMONIA call,
each review flag and the input's brightness, as the scoring path would store them for that
image. Tested: the PNEUMONIA share and each flag's share (Fisher's exact test: flags are rare, a
few images each), and the distributions of P, of the OOD score and of brightness (two-sample
Kolmogorov-Smirnov; training.evaluation.two_sample). An image counts once in a batch. Pure
numpy: the CLI's report imports it without torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.evaluation.two_sample import fisher_exact, holm, ks_pvalue, ks_statistic

# Family-wise alarm line over every statistic tested (Holm): chosen before any measurement,
# the conventional 5%, never tuned on test/.
ALPHA = 0.05
# Below this many images a batch (or a reference) is not tested: a KS test on fewer cannot
# see a shift of a quarter of the distribution, and one flag more or less swings a share.
MIN_IMAGES = 50
MAX_REFERENCE = 2000  # images kept in a stored reference (an even subsample beyond)
SHARE = "pneumonia share"
VERDICTS = ("drift", "no drift", "no reference", "too few images")


@dataclass
class Sample:
    """Per image: P, the PNEUMONIA call, the OOD score (None: a model without review
    statistics), each review flag (name -> bool array) and the mean grey level of the model's
    input (None: rows stored before it was)."""

    prob: np.ndarray
    pneumonia: np.ndarray
    ood: np.ndarray | None = None
    flags: dict[str, np.ndarray] = field(default_factory=dict)
    brightness: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.prob.size)

    @classmethod
    def from_json(cls, stored: dict[str, Any]) -> Sample:
        ood, bright = stored.get("ood"), stored.get("brightness")
        return cls(
            np.asarray(stored["prob"], dtype=float),
            _bits(stored["pneumonia"]),
            None if ood is None else np.asarray(ood, dtype=float),
            {name: _bits(bits) for name, bits in stored.get("flags", {}).items()},
            None if bright is None else np.asarray(bright, dtype=float),
        )

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence[Any]], flag_names: Iterable[str] = ()) -> Sample:
        """From (prob, label, ood_score, review_reasons[, brightness[, identity]]) rows; flags
        named in flag_names. Rows of one identity (an image's path or SOP Instance UID) count
        once: an image scored twice is one observation, not two, and the tests assume each
        image is drawn anew."""
        rows = _distinct(rows)
        ood = [r[2] for r in rows]
        bright = [r[4] if len(r) > 4 else None for r in rows]
        reasons = [set((r[3] or "").split(",")) for r in rows]
        return cls(
            np.asarray([r[0] for r in rows], dtype=float),
            np.asarray([r[1] == "PNEUMONIA" for r in rows], dtype=bool),
            _values(ood),
            {name: np.asarray([name in r for r in reasons], dtype=bool) for name in flag_names},
            _values(bright),
        )

    def take(self, index: np.ndarray) -> Sample:
        """The images at `index` (a resample, or a subsample)."""
        ood = None if self.ood is None else self.ood[index]
        bright = None if self.brightness is None else self.brightness[index]
        flags = {k: v[index] for k, v in self.flags.items()}
        return Sample(self.prob[index], self.pneumonia[index], ood, flags, bright)


def _distinct(rows: Iterable[Sequence[Any]]) -> list[Sequence[Any]]:
    """The rows with the first of each identity (rows without one are all kept)."""
    seen: set[Any] = set()
    out = []
    for row in rows:
        key = row[5] if len(row) > 5 else None
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        out.append(row)
    return out


def _values(column: list[Any]) -> np.ndarray | None:
    """A float column, or None when any row lacks the value (stored before it was)."""
    if not column or any(v is None for v in column):
        return None
    return np.asarray(column, dtype=float)


def _bits(text: str) -> np.ndarray:
    return np.frombuffer(text.encode(), dtype=np.uint8) == ord("1")


def _round(values: np.ndarray) -> list[float]:
    # Six significant digits: exact enough for a rank test, a third of the JSON of repr().
    return [float(f"{v:.6g}") for v in values.tolist()]


def reference_sample(
    prob: Sequence[float] | np.ndarray,
    pneumonia: Sequence[bool] | np.ndarray,
    ood: Sequence[float] | np.ndarray | None,
    flags: dict[str, Sequence[bool] | np.ndarray],
    source: str,
    brightness: Sequence[float] | np.ndarray | None = None,
) -> dict[str, Any]:
    """The stored reference (plain JSON): P and OOD rounded, calls and flags as '0'/'1'
    strings; more than MAX_REFERENCE images are subsampled evenly."""
    sample = Sample(
        np.asarray(prob, dtype=float),
        np.asarray(pneumonia, dtype=bool),
        None if ood is None else np.asarray(ood, dtype=float),
        {k: np.asarray(v, dtype=bool) for k, v in flags.items()},
        None if brightness is None else np.asarray(brightness, dtype=float),
    )
    if len(sample) > MAX_REFERENCE:
        sample = sample.take(np.linspace(0, len(sample) - 1, MAX_REFERENCE).round().astype(int))

    def bits(values: np.ndarray) -> str:
        return "".join("1" if v else "0" for v in values.tolist())

    return {
        "version": 1,
        "source": source,
        "n": len(sample),
        "prob": _round(sample.prob),
        "ood": None if sample.ood is None else _round(sample.ood),
        "pneumonia": bits(sample.pneumonia),
        "flags": {name: bits(v) for name, v in sample.flags.items()},
        "brightness": None if sample.brightness is None else _round(sample.brightness),
    }


def _share_test(name: str, batch: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    k1, k2 = int(batch.sum()), int(ref.sum())
    return {
        "statistic": name,
        "test": "Fisher exact",
        "batch": k1 / batch.size,
        "reference": k2 / ref.size,
        "effect": k1 / batch.size - k2 / ref.size,
        "p": fisher_exact(k1, batch.size, k2, ref.size),
    }


def _ks_test(name: str, batch: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    d_nm = ks_statistic(batch, ref)
    return {
        "statistic": name,
        "test": "Kolmogorov-Smirnov",
        "batch": float(np.median(batch)),  # medians: the KS D is in `effect`
        "reference": float(np.median(ref)),
        "effect": d_nm / (batch.size * ref.size),
        "p": ks_pvalue(d_nm, batch.size, ref.size),
    }


def tests(reference: Sample, batch: Sample) -> list[dict[str, Any]]:
    """Every statistic both samples carry, each with its two-sample test's p-value."""
    out = [_share_test(SHARE, batch.pneumonia, reference.pneumonia)]
    for name in sorted(set(reference.flags) & set(batch.flags)):
        out.append(_share_test(f"flag {name}", batch.flags[name], reference.flags[name]))
    out.append(_ks_test("P", batch.prob, reference.prob))
    if reference.ood is not None and batch.ood is not None:
        out.append(_ks_test("OOD score", batch.ood, reference.ood))
    if reference.brightness is not None and batch.brightness is not None:
        out.append(_ks_test("brightness", batch.brightness, reference.brightness))
    return out


def compare(
    stored: dict[str, Any] | None, batch: Sample, alpha: float = ALPHA, note: str | None = None
) -> dict[str, Any]:
    """The batch against a stored reference (None: there is none): plain JSON with the verdict,
    the counts and, when tested, every statistic's test, p and Holm p."""
    out: dict[str, Any] = {"verdict": "no reference", "alpha": alpha, "n": len(batch)}
    out["min_images"], out["tests"] = MIN_IMAGES, []
    if note:
        out["note"] = note
    if stored is None or "prob" not in stored:
        return out
    reference = Sample.from_json(stored)
    out |= {"reference_n": len(reference), "reference_source": stored.get("source")}
    if len(reference) < MIN_IMAGES:
        out["note"] = f"the reference holds {len(reference)} images (at least {MIN_IMAGES})"
        return out
    if len(batch) < MIN_IMAGES:
        return out | {"verdict": "too few images"}
    found = tests(reference, batch)
    for test, adjusted in zip(found, holm([t["p"] for t in found]), strict=True):
        test |= {"holm_p": adjusted, "alarm": adjusted <= alpha}
    drifted = any(t["alarm"] for t in found)
    return out | {"verdict": "drift" if drifted else "no drift", "tests": found}


def compare_rows(
    stored: dict[str, Any] | None, rows: Iterable[Sequence[Any]], note: str | None = None
) -> dict[str, Any]:
    """compare() of (prob, label, ood_score, review_reasons) rows, testing the flags the
    reference holds (a flag only a DICOM header raises has no reference)."""
    names = (stored or {}).get("flags", {})
    return compare(stored, Sample.from_rows(rows, names), note=note)


def _p(value: float) -> str:
    # Below this the exact KS p-value is 1 minus a sum that rounds to 1: no digits are left.
    return "< 1e-12" if value < 1e-12 else f"{value:.2g}"


def alarm_line(result: dict[str, Any]) -> str:
    """'flag not-cxr 0.120 vs 0.013 (Holm p 0.0001), P KS D 0.31 (Holm p 0.002)': the
    statistics that alarmed, for a job's message."""
    parts = []
    for t in result.get("tests", []):
        if t["alarm"]:
            if t["test"] == "Fisher exact":
                what = f"{t['reference']:.3f} -> {t['batch']:.3f}"
            else:
                what = f"KS D {t['effect']:.2f}"
            parts.append(f"{t['statistic']} {what} (Holm p {_p(t['holm_p'])})")
    return ", ".join(parts)
