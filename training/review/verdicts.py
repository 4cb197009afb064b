"""The review's verdicts: which flags an image raises, for one model or for an ensemble.

from training.review.verdicts import ensemble_verdict, member_verdict
verdict = member_verdict(stats, stats.input_scores(feats, images), prob, called)
verdict.reasons  # per image, a subset of REASONS; verdict.score >= 1 exactly when flagged

Scores are scaled so a flag fires at 1 (`ood`, `anomaly`) and `review_score` is the largest
ratio to any flag line: >= 1 is flagged, and it orders a review queue worst first. The scores
are training.review.stats'; the lines are fitted by training.fitting.review_fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from training.data.dicom_rules import HEADER_REASONS
from training.review.stats import ReviewStats, Scores

REASONS = ("not-cxr", "anomaly", "low-confidence")  # one a flag line, in flags()' order
# Every reason a row's review_reasons may hold: the model's, then those a DICOM header raises
# (training.scoring.answers.merge_header_flags); db.columns.REVIEW_REASONS names the same.
ALL_REASONS = (*REASONS, *(r for r in HEADER_REASONS if r not in REASONS))


def flags(
    scores: Scores, called_pneumonia: torch.Tensor, confidence_line: float
) -> tuple[list[list[str]], torch.Tensor]:
    """(the reasons of each image, review_score): the largest ratio to any flag line."""
    anomaly = torch.where(called_pneumonia, torch.zeros_like(scores.anomaly), scores.anomaly)
    doubt = (1 - scores.confidence) / max(1 - confidence_line, 1e-6)
    ratios = torch.stack([scores.ood, anomaly, doubt], 1)
    reasons = [[r for r, v in zip(REASONS, row, strict=True) if v >= 1] for row in ratios.tolist()]
    return reasons, ratios.amax(1)


# Members holding at least this share of an ensemble's weight voting against its call make the
# call low-confidence, whatever the averaged confidence says.
DISSENT_LINE = 0.5


@dataclass
class Verdict:
    """One scorer's review of a batch: (N,) scores, the reasons for each image (empty: no
    flag) and review_score; disagreement only for ensembles."""

    ood: torch.Tensor
    anomaly: torch.Tensor
    confidence: torch.Tensor
    score: torch.Tensor
    reasons: list[list[str]]
    disagreement: torch.Tensor | None = None


def member_verdict(
    stats: ReviewStats,
    input_scores: torch.Tensor,
    prob: torch.Tensor,
    called: torch.Tensor,
    prevalence: float | None = None,
) -> Verdict:
    """A model's review of its own calls; input_scores (N, 2) from ReviewStats.input_scores,
    prob the model's own P(PNEUMONIA) (before any prevalence correction)."""
    ood, anomaly = input_scores.float().unbind(1)
    scores = Scores(ood, anomaly, stats.confidence(prob, called, prevalence))
    reasons, score = flags(scores, called, stats.confidence_line)
    return Verdict(ood, anomaly, scores.confidence, score, reasons)


def ensemble_verdict(
    members: list[Verdict],
    member_called: torch.Tensor,
    lines: list[float],
    weights: list[float],
    called: torch.Tensor,
) -> Verdict:
    """An ensemble's review of its combined calls, from its members' (those with statistics):
    not-cxr and anomaly when any member raises them; confidence the members' weighted
    calibrated probability of the combined call, low when below their weighted line or when
    members holding half the weight vote against the call (negative stacking weights count
    as 0; all zero: equal)."""
    w = torch.tensor(weights, dtype=torch.float64).clamp(min=0)
    w = (w if float(w.sum()) > 0 else torch.ones_like(w)) / max(float(w.sum()), 1e-12)
    w = w.float().view(-1, 1)
    ood = torch.stack([m.ood for m in members]).amax(0)
    anomaly = torch.stack([m.anomaly for m in members]).amax(0)
    # each member's calibrated P(PNEUMONIA), then of the ensemble's call
    p_pneumonia = torch.stack(
        [
            torch.where(c, m.confidence, 1 - m.confidence)
            for m, c in zip(members, member_called, strict=True)
        ]
    )
    confidence = (w * torch.where(called, p_pneumonia, 1 - p_pneumonia)).sum(0)
    disagreement = (w * (member_called != called).float()).sum(0)
    line = float((w.view(-1) * torch.tensor(lines)).sum())
    reasons, score = flags(Scores(ood, anomaly, confidence), called, line)
    dissent = disagreement / DISSENT_LINE
    for i, value in enumerate(dissent.tolist()):
        if value >= 1 and "low-confidence" not in reasons[i]:
            reasons[i].append("low-confidence")
    return Verdict(ood, anomaly, confidence, torch.maximum(score, dissent), reasons, disagreement)
