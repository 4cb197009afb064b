"""The one scoring call: a chunk of image files and a scorer (one model, or an ensemble and its
members) -> every answer its prediction rows hold, as plain values: P(PNEUMONIA) and the call,
P(VIRAL | PNEUMONIA) and the kind, the review scores and verdict, the DICOM identity, and the
heatmaps asked for. The worker stores them as they come (db.scoring).

    scorer = Scorer([bundle], ["model:3"])
    answers = score_chunk(scorer, paths, folder, explain="pneumonia", salt=None)
    answers.predictions[0]  # {"scorer": "model:3", "path": ..., "prob": 0.91, "label": ...}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from training.data.data_files import folder_label
from training.data.dicom import DicomHeader
from training.models.checkpoint import ModelBundle
from training.review.verdicts import Verdict, ensemble_verdict, member_verdict
from training.scoring.answers import add_identities, heatmap_answers, prediction_answers
from training.scoring.ensemble import combine, combine_viral
from training.scoring.files import DecodeMemo, score_files_multi
from training.scoring.prevalence import PREVALENCE_THRESHOLD, prior_shift
from training.scoring.site import SiteOperatingPoint


@dataclass
class Scorer:
    """Who answers a chunk: the member models (one for a single model) under their scorer keys
    ("model:3"), and for an ensemble its key, method, weights, bias and threshold."""

    bundles: list[ModelBundle]
    keys: list[str]
    ensemble_key: str | None = None
    method: str = ""
    weights: list[float] = field(default_factory=list)
    bias: float = 0.0
    threshold: float = 0.5  # the ensemble's
    prevalence: float | None = None  # single models: restate P for it, decide at 0.5
    site: SiteOperatingPoint | None = None  # single models: decide with a site's profile

    @property
    def key(self) -> str:
        """The scorer whose answers are the job's."""
        return self.ensemble_key if self.ensemble_key is not None else self.keys[0]


@dataclass
class ChunkAnswers:
    """One dict per (scorer, file) with a prediction row's fields, and one per heatmap."""

    predictions: list[dict[str, Any]]
    heatmaps: list[dict[str, Any]]


def score_chunk(
    scorer: Scorer,
    paths: list[str],
    folder: Path,
    explain: str = "none",
    salt: str | None = None,
    memo: DecodeMemo | None = None,
) -> ChunkAnswers:
    """Score the files; `explain` says which images get heatmaps: none, pneumonia (the scorer's
    PNEUMONIA calls) or all; `salt` keys the DICOM patient hash (None: no hash). Calls that
    share a `memo` (a dict) on the same paths decode them once."""
    scores = chunk_scores(scorer, paths, explain != "none", memo)
    truth = [folder_label(Path(p), folder) for p in paths]
    predictions = prediction_answers(scorer, paths, truth, scores)
    add_identities(predictions, paths, scores.headers, salt)
    maps = heatmap_answers(paths, scores)
    if explain == "pneumonia":
        called = {
            r["path"]
            for r in predictions
            if r["scorer"] == scorer.key and r["label"] == "PNEUMONIA"
        }
        maps = [m for m in maps if m["path"] in called]
    return ChunkAnswers(predictions, maps)


@dataclass
class ChunkScores:
    """Every scorer's scores on one chunk: the members' (M, N) P(PNEUMONIA) (prior-shifted
    under a prevalence) and P(VIRAL | PNEUMONIA), NaN where unanswered; the ensemble's combined
    (N,) ones; errors by position; the thresholds that decide; heatmaps by scorer key and
    position; review verdicts by scorer key over `review_positions`; the DICOM headers read
    while decoding, by position."""

    probs: torch.Tensor
    viral: torch.Tensor
    errors: dict[int, str]
    thresholds: list[float]
    kind_thresholds: list[float | None]  # None: a model without a kind head
    combined: torch.Tensor | None = None
    combined_viral: torch.Tensor | None = None
    maps: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)
    map_info: dict[str, tuple[float, str]] = field(default_factory=dict)  # key -> (crop, method)
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    review_positions: list[int] = field(default_factory=list)
    headers: dict[int, DicomHeader] = field(default_factory=dict)  # DICOM files that decoded
    brightness: torch.Tensor | None = None  # (M, N) mean grey level of each member's input


def chunk_scores(
    scorer: Scorer, paths: list[str], explain: bool = False, memo: DecodeMemo | None = None
) -> ChunkScores:
    """Score a chunk with the scorer's models, and combine them when it is an ensemble."""
    bundles = scorer.bundles
    scored = score_files_multi(bundles, paths, explain=explain, memo=memo)
    probs, thresholds = scored.probs.clone(), [b.threshold for b in bundles]
    if scorer.prevalence is not None:
        probs[0] = prior_shift(probs[0], bundles[0].train_prior, scorer.prevalence)
        thresholds = [PREVALENCE_THRESHOLD]
    kind_cuts = [None if b.kind_head == "none" else b.kind_threshold for b in bundles]
    if scorer.site is not None:
        probs[0] = scorer.site.calibrated(probs[0])
        thresholds = [scorer.site.threshold]
        if kind_cuts[0] is not None and scorer.site.kind_threshold is not None:
            kind_cuts[0] = scorer.site.kind_threshold
    scores = ChunkScores(probs, scored.viral, scored.errors, thresholds, kind_cuts)
    scores.headers, scores.brightness = scored.headers, scored.brightness
    if explain:
        _member_maps(scores, scorer, scored.maps)
    if scorer.ensemble_key is not None:
        scores.combined = combine(scorer.method, probs, scorer.weights, thresholds, scorer.bias)
        scores.combined_viral = combine_viral(scored.viral, scorer.weights)
        if explain:
            _ensemble_maps(scores, scorer)
    _review(scores, scorer, scored.probs, scored.review)
    return scores


def _review(scores: ChunkScores, scorer: Scorer, raw: torch.Tensor, review: torch.Tensor) -> None:
    """Each member's and the ensemble's review of its calls, over the images that were read;
    members without review statistics (fitted before them) take no part."""
    read = torch.isfinite(raw).all(0)
    called = scores.probs[:, read] >= torch.tensor(scores.thresholds).view(-1, 1)
    members, lines, weights, member_called = [], [], [], []
    for m, bundle in enumerate(scorer.bundles):
        if bundle.review is None:
            continue
        stats, inputs = bundle.review, review[m, read]
        if scorer.site is not None:
            stats, inputs = scorer.site.review_stats(stats), scorer.site.input_scores(inputs)
        verdict = member_verdict(stats, inputs, raw[m, read], called[m], scorer.prevalence)
        scores.verdicts[scorer.keys[m]] = verdict
        members.append(verdict)
        lines.append(stats.confidence_line)
        weights.append(scorer.weights[m] if scorer.weights else 1.0)
        member_called.append(called[m])
    if scores.combined is not None and members:
        scores.verdicts[scorer.key] = ensemble_verdict(
            members,
            torch.stack(member_called),
            lines,
            weights,
            scores.combined[read] >= scorer.threshold,
        )
    scores.review_positions = read.nonzero().flatten().tolist()


def map_method(layer: str) -> str:
    """How a member's maps were made, as the heatmap rows say it."""
    from training.explain.gradcam import INPUT

    return "input gradient" if layer == INPUT else f"grad-cam {layer}"


def _member_maps(scores: ChunkScores, scorer: Scorer, maps: list[dict[int, torch.Tensor]]) -> None:
    from training.explain.gradcam import TARGET_LAYERS

    for key, bundle, found in zip(scorer.keys, scorer.bundles, maps, strict=True):
        scores.maps[key] = found
        scores.map_info[key] = (bundle.crop, map_method(TARGET_LAYERS[bundle.arch]))


def _ensemble_maps(scores: ChunkScores, scorer: Scorer) -> None:
    """The members' maps, weighted as the ensemble weighs its members (negative stacking
    weights count as 0). Members that see different crops of the image cannot be overlaid on
    one grid: then the ensemble stores no map of its own (each member's is stored)."""
    from training.explain.gradcam import combine_maps  # only jobs that ask for maps pay it

    if len({b.crop for b in scorer.bundles}) > 1:
        return
    member = [scores.maps[key] for key in scorer.keys]
    positions = sorted(set.intersection(*(set(m) for m in member)))
    if not positions:
        return
    stacked = [torch.stack([m[p] for p in positions]) for m in member]
    combined = combine_maps(stacked, scorer.weights)
    scores.maps[scorer.key] = dict(zip(positions, combined, strict=True))
    scores.map_info[scorer.key] = (scorer.bundles[0].crop, "weighted members")
