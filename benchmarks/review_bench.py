"""When not to trust a call, measured: selective accuracy and the risk-coverage curve on the
external test/ split, out-of-distribution detection on a generated zoo, and the cost.

    CXRQ_DATABASE_URL=sqlite:///runs.db python -m benchmarks.review_bench --model 1
    CXRQ_DATABASE_URL=sqlite:///runs.db python -m benchmarks.review_bench --ensemble pair
    CXRQ_DATABASE_URL=sqlite:///runs.db python -m benchmarks.review_bench --model 1 --speed

It scores through the worker's own call (training.scoring.chunk), so the flags are the ones a job
stores. Nothing here fits anything: the statistics and flag lines are the stored model's.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import SHARED, machine, repeated_fullres
from benchmarks.ood_zoo import build
from db.schema import Ensemble
from db.scoring import ScorerRef, ensemble_ref
from db.session import session_scope
from training.data.data_files import label_from_path
from training.evaluation.metrics import roc_auc
from training.review.verdicts import REASONS, Verdict
from training.scoring.chunk import ChunkScores, chunk_scores
from worker.scorers import serving_scorer

TEST = SHARED / "chest_xray" / "test"
COVERAGES = (1.0, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5)


def scorer_for(model: int | None, ensemble: str | None) -> ScorerRef:
    if model is not None:
        return ScorerRef(model_ids=[model])
    with session_scope() as s:
        row = s.query(Ensemble).filter_by(name=ensemble).one()
        return ensemble_ref(row)


def answer(scorer: ScorerRef, paths: list[str]) -> tuple[Verdict, torch.Tensor, ChunkScores]:
    """(the scorer's verdict, its calls as booleans, every answer), over readable images."""
    answers = chunk_scores(serving_scorer(scorer), paths)
    if scorer.key not in answers.verdicts:
        raise SystemExit(f"{scorer.key} has no review statistics (trained before they existed)")
    read = answers.review_positions
    if answers.combined is not None:
        called = answers.combined[read] >= scorer.threshold
    else:
        called = answers.probs[0, read] >= answers.thresholds[0]
    return answers.verdicts[scorer.key], called, answers


def tuning_split(scorer: ScorerRef) -> tuple[list[str], torch.Tensor]:
    """The first model's tuning split (the patients its flag lines were set on), rebuilt from
    its stored config and data folder."""
    from db.schema import Model
    from training.data.data_files import find_splits
    from training.fitting.config import TrainConfig
    from training.fitting.split_policy import three_way_split

    with session_scope() as s:
        model = s.get(Model, scorer.model_ids[0])
        config, root = TrainConfig.from_dict(model.config), model.data["root"]
    _, tune, _, _ = three_way_split(find_splits(root), config)
    return [i.path for i in tune], torch.tensor([i.label for i in tune])


def selective(
    verdict: Verdict, called: torch.Tensor, labels: torch.Tensor, where: str = "test/"
) -> None:
    right = (called.long() == labels).float()
    flagged = torch.tensor([bool(r) for r in verdict.reasons])
    print(f"\n| on {where} | images | share |\n| --- | --- | --- |")
    for reason in REASONS:
        n = sum(reason in r for r in verdict.reasons)
        print(f"| flagged {reason} | {n} | {n / len(right):.3f} |")
    print(f"| flagged, any reason | {int(flagged.sum())} | {float(flagged.float().mean()):.3f} |")
    print(
        f"\nAt the stored flag lines: coverage {1 - float(flagged.float().mean()):.3f}, accuracy "
        f"{float(right[~flagged].mean()):.4f} on the unflagged against {float(right.mean()):.4f} "
        f"on all {len(right)}."
    )
    order = verdict.score.argsort()  # most trusted first
    print("\nRisk-coverage (images kept in order of review_score, lowest first):\n")
    print("| coverage | images kept | accuracy | errors kept |\n| --- | --- | --- | --- |")
    for coverage in COVERAGES:
        kept = right[order[: round(coverage * len(right))]]
        n_err = int((1 - kept).sum())
        print(f"| {coverage:.2f} | {len(kept)} | {float(kept.mean()):.4f} | {n_err} |")


def ood(test: Verdict, zoo: Verdict, kinds: list[str]) -> None:
    print("\n| zoo kind | images | AUROC vs test/ | flagged not-cxr |\n| --- | --- | --- | --- |")
    for kind in [*sorted(set(kinds)), "all"]:
        pick = torch.tensor([kind in ("all", k) for k in kinds])
        y = torch.cat([torch.zeros(len(test.ood)), torch.ones(int(pick.sum()))])
        auroc = roc_auc(y, torch.cat([test.ood, zoo.ood[pick]]))
        flagged = float((zoo.ood[pick] >= 1).float().mean())
        print(f"| {kind} | {int(pick.sum())} | {auroc:.4f} | {flagged:.3f} |")
    inside = float((test.ood >= 1).float().mean())
    print(f"| test/ (in distribution) | {len(test.ood)} | - | {inside:.3f} |")


def speed(scorer: ScorerRef, rounds: int = 3) -> None:
    """Scoring 1,050 full-resolution files with the review on and off (the same model with
    its statistics removed), alternating, best of `rounds`."""
    from worker import model_cache

    bundle = model_cache.load_bundle(scorer.model_ids[0])
    stats = bundle.review
    with tempfile.TemporaryDirectory() as tmp:
        paths = [str(p) for p in sorted(repeated_fullres(Path(tmp)).rglob("*.jpeg"))]
        best = {"off": float("inf"), "on": float("inf")}
        for _ in range(rounds):
            for mode in ("off", "on"):
                bundle.review = stats if mode == "on" else None
                started = time.perf_counter()
                for start in range(0, len(paths), 256):
                    chunk_scores(serving_scorer(scorer), paths[start : start + 256])
                best[mode] = min(best[mode], time.perf_counter() - started)
        bundle.review = stats
    print(f"\n| review | seconds for {len(paths)} files (best of {rounds}) | files/s |")
    print("| --- | --- | --- |")
    for mode, seconds in best.items():
        print(f"| {mode} | {seconds:.2f} | {len(paths) / seconds:.0f} |")
    print(f"\ncost: {best['on'] / best['off']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--model", type=int)
    who.add_argument("--ensemble")
    parser.add_argument("--speed", action="store_true", help="only time scoring, review on/off")
    args = parser.parse_args()
    scorer = scorer_for(args.model, args.ensemble)
    print(f"# review benchmark: {scorer.key}\n\n{machine()}")
    if args.speed:
        speed(scorer)
        return
    files = sorted(TEST.rglob("*.jpeg"))
    labels = torch.tensor([label_from_path(p.relative_to(TEST)) for p in files])
    tune_paths, tune_labels = tuning_split(scorer)
    tune, tune_called, _ = answer(scorer, tune_paths)
    selective(tune, tune_called, tune_labels, "the tuning split")
    test, called, _ = answer(scorer, [str(p) for p in files])
    selective(test, called, labels)
    with tempfile.TemporaryDirectory() as tmp:
        counts = build(Path(tmp))
        zoo_files = sorted(Path(tmp).rglob("*.png"))
        zoo, _, answers = answer(scorer, [str(p) for p in zoo_files])
        kinds = [zoo_files[i].parent.name for i in answers.review_positions]
    print(f"\nzoo: {dict(sorted(counts.items()))}")
    ood(test, zoo, kinds)


if __name__ == "__main__":
    main()
