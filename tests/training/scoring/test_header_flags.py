"""A DICOM header's flags on its answers: a scored knee or lateral view is flagged for review
with the header's reasons after the model's own, by every scorer on the file, with or without
review statistics; a refused header is an error answer; a chest PA is answered as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from db.columns import REVIEW_REASONS
from training.data.dicom import DicomHeader
from training.data.dicom_write import DicomSpec, write_dicom
from training.data.preprocess import Normalizer
from training.models.checkpoint import ModelBundle
from training.models.registry import create_model
from training.review.verdicts import ALL_REASONS, REASONS, Verdict
from training.scoring.answers import merge_header_flags, prediction_answers
from training.scoring.chunk import ChunkScores, Scorer, score_chunk

SCORED = {"prob": 0.8, "error": None}


def test_every_reason_a_row_may_give_is_counted_by_the_reports() -> None:
    assert REVIEW_REASONS == ALL_REASONS == (*REASONS, "lateral")


def test_header_flags_follow_the_model_reasons_once() -> None:
    row = SCORED | {"review": True, "review_reasons": "not-cxr,anomaly", "review_score": 1.7}
    merged = merge_header_flags(row, ("not-cxr", "lateral"))
    assert merged["review_reasons"] == "not-cxr,anomaly,lateral" and merged["review"] is True
    assert merged["review_score"] == 1.7
    calm = SCORED | {"review": False, "review_reasons": None, "review_score": 0.4}
    merged = merge_header_flags(calm, ("lateral",))
    assert (merged["review"], merged["review_reasons"], merged["review_score"]) == (
        True,
        "lateral",
        1.0,  # a flag fires at 1, as the model's do
    )
    assert calm["review"] is False  # the answer given is not changed in place


def test_without_review_statistics_the_header_flags_alone_are_the_review() -> None:
    merged = merge_header_flags(dict(SCORED), ("not-cxr", "lateral"))
    assert merged == SCORED | {"review": True, "review_reasons": "not-cxr,lateral"}


def test_no_flags_or_no_score_leave_the_answer_alone() -> None:
    assert merge_header_flags(dict(SCORED), ()) == SCORED
    error = {"prob": None, "error": "cannot score image: boom"}
    assert merge_header_flags(dict(error), ("lateral",)) == error


def _header(body_part: str | None, view: str | None) -> DicomHeader:
    return DicomHeader("1.2.3", "MRN-1", body_part, view)


def test_every_scorer_of_an_ensemble_gives_the_flags() -> None:
    """Members with a verdict and the combined answer; the model's reasons stay first."""
    n = 3
    keys = ["model:1", "model:2"]
    verdict = Verdict(
        torch.zeros(n), torch.zeros(n), torch.ones(n), torch.tensor([1.5, 0.2, 0.1]),
        [["low-confidence"], [], []],
    )  # fmt: skip
    scores = ChunkScores(
        probs=torch.tensor([[0.9, 0.2, 0.7], [0.8, 0.3, 0.6]], dtype=torch.float64),
        viral=torch.full((2, n), float("nan"), dtype=torch.float64),
        errors={},
        thresholds=[0.5, 0.5],
        kind_thresholds=[None, None],
        combined=torch.tensor([0.85, 0.25, 0.65], dtype=torch.float64),
        combined_viral=torch.full((n,), float("nan"), dtype=torch.float64),
        verdicts={"model:1": verdict, "duo": verdict},
        review_positions=[0, 1, 2],
        headers={0: _header("KNEE", "LL"), 1: _header("CHEST", "PA")},
    )
    scorer = Scorer([], keys, ensemble_key="duo", method="vote", weights=[1.0, 1.0])
    paths = ["knee.dcm", "chest.dcm", "photo.png"]
    rows = prediction_answers(scorer, paths, [None] * n, scores)
    got = {(r["scorer"], r["path"]): r for r in rows}
    for key in ("model:1", "duo"):
        assert got[key, "knee.dcm"]["review_reasons"] == "low-confidence,not-cxr,lateral"
        assert got[key, "chest.dcm"]["review"] is False
        assert got[key, "photo.png"]["review"] is False
    # model:2 has no review statistics: the header's flags are its whole review
    assert got["model:2", "knee.dcm"]["review"] is True
    assert got["model:2", "knee.dcm"]["review_reasons"] == "not-cxr,lateral"
    assert "review_score" not in got["model:2", "knee.dcm"]
    assert "review" not in got["model:2", "chest.dcm"]


def _folder(root: Path) -> list[str]:
    root.mkdir(parents=True)
    gray = np.tile(np.arange(48, dtype=np.uint8) * 5, (48, 1))
    specs = {
        "chest.dcm": DicomSpec(),
        "knee.dcm": DicomSpec(body_part="KNEE", view_position="PA"),
        "lateral.dcm": DicomSpec(view_position="LL"),
        "tagless.dcm": DicomSpec(
            modality=None,
            sop_class_uid=None,
            presentation_intent=None,
            body_part=None,
            view_position=None,
        ),
        "ct.dcm": DicomSpec(modality="CT", body_part=None, view_position=None),
    }
    for name, spec in specs.items():
        write_dicom(root / name, gray, spec)
    return sorted(str(root / name) for name in specs)


def test_a_chunk_flags_what_the_headers_say_and_refuses_a_ct(tmp_path) -> None:
    torch.manual_seed(0)
    bundle = ModelBundle(create_model("cnn", 32).eval(), "cnn", 32, Normalizer())
    paths = _folder(tmp_path / "scan")
    answers = score_chunk(Scorer([bundle], ["model:1"]), paths, tmp_path / "scan")
    rows = {Path(r["path"]).name: r for r in answers.predictions}
    assert rows["ct.dcm"]["error"] == "not a radiograph: Modality CT"
    assert rows["ct.dcm"]["prob"] is None and "review" not in rows["ct.dcm"]
    assert (rows["knee.dcm"]["review"], rows["knee.dcm"]["review_reasons"]) == (True, "not-cxr")
    assert rows["lateral.dcm"]["review_reasons"] == "lateral"
    for name in ("chest.dcm", "tagless.dcm"):  # a model without review statistics: no review
        assert rows[name]["error"] is None and "review" not in rows[name], name
    assert all(rows[n]["prob"] is not None for n in ("knee.dcm", "lateral.dcm", "chest.dcm"))
    assert all(rows[n]["sop_instance_uid"] for n in rows)
