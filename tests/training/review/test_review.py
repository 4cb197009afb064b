"""Review statistics: fitted on training images, calibrated on the tuning split, stored with the
model, and each flag fired by an input built for it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageOps

from tests.conftest import make_xray
from training.data.preprocess import Normalizer, decode_many
from training.fitting.review_fit import (
    ANY_FLAG_BUDGET,
    NOT_CXR_BUDGET,
    Calibration,
    fit_platt,
    fit_review,
    line_above,
)
from training.models.checkpoint import ModelBundle, from_bytes, to_bytes
from training.models.registry import create_model
from training.review.features import Gaussian, feature_tap, image_statistics, last_linear
from training.review.verdicts import ensemble_verdict, member_verdict


def test_line_above_lets_at_most_the_share_through() -> None:
    values = torch.arange(100, dtype=torch.float64)
    line = line_above(values, 0.02)
    assert int((values >= line).sum()) == 2 and 97 < line < 98
    assert int((values >= line_above(values, 0.0)).sum()) == 0


def test_gaussian_distance_is_about_one_in_and_large_out() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 20, generator=gen) * torch.linspace(0.1, 3, 20)
    labels = torch.zeros(2000, dtype=torch.long)
    g = Gaussian.fit(x, labels, directions=5)
    inside = g.distance(torch.randn(500, 20, generator=gen) * torch.linspace(0.1, 3, 20))
    assert 0.85 < float(inside.mean()) < 1.1
    # 15 standard deviations along the widest direction
    far = torch.zeros(1, 20)
    far[0, 19] = 45.0
    assert float(g.distance(far)) > 2 * float(inside.max())


def test_platt_recovers_a_known_calibration_at_equal_priors() -> None:
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(8000, generator=gen, dtype=torch.float64) * 2
    y = (torch.rand(8000, generator=gen, dtype=torch.float64) < torch.sigmoid(0.5 * z)).long()
    a, b = fit_platt(torch.sigmoid(z), y)
    assert a == pytest.approx(0.5, abs=0.06) and b == pytest.approx(0.0, abs=0.08)
    # three times more PNEUMONIA: the same calibration, not one that leans on the share
    more = torch.cat([torch.arange(8000)[y == 0], torch.arange(8000)[y == 1].repeat(3)])
    a3, b3 = fit_platt(torch.sigmoid(z[more]), y[more])
    assert a3 == pytest.approx(a, abs=0.02) and b3 == pytest.approx(b, abs=0.02)


def _split(n: int, seed: int, shift: float = 0.0) -> Calibration:
    """Synthetic features (two classes 3 apart), grey X-ray-like images and P from a margin."""
    gen = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, generator=gen) < 0.7).long()
    feats = torch.randn(n, 16, generator=gen) + 3.0 * labels.view(-1, 1).float() + shift
    grey = (torch.rand(n, 1, 32, 32, generator=gen) * 40 + 100).to(torch.uint8)
    prob = torch.sigmoid(2 * (feats[:, 0] - 1.5) + torch.randn(n, generator=gen))
    return Calibration(feats, grey.expand(-1, 3, -1, -1).contiguous(), prob, labels)


def test_flag_lines_keep_the_tuning_split_within_its_budgets() -> None:
    train, tune = _split(1500, 0), _split(400, 1)
    stats = fit_review(train, tune, threshold=0.5)
    assert stats.calibrated_on == "tuning split"
    called = tune.prob >= 0.5
    verdict = member_verdict(stats, stats.input_scores(tune.feats, tune.images), tune.prob, called)
    not_cxr = sum("not-cxr" in r for r in verdict.reasons)
    flagged = sum(bool(r) for r in verdict.reasons)
    assert not_cxr <= NOT_CXR_BUDGET * 400
    # the budget is spent, not only respected: low-confidence takes what is left
    assert ANY_FLAG_BUDGET * 400 - 2 <= flagged <= ANY_FLAG_BUDGET * 400
    # review_score orders the queue: >= 1 exactly for the flagged
    assert all(
        (s >= 1) == bool(r) for s, r in zip(verdict.score.tolist(), verdict.reasons, strict=True)
    )


def test_without_a_tuning_split_the_training_part_calibrates() -> None:
    stats = fit_review(_split(300, 0), None, threshold=0.5)
    assert stats.calibrated_on == "training split" and math.isfinite(stats.ood_line)


def test_each_reason_fires_on_an_input_built_for_it() -> None:
    train, tune = _split(1500, 0), _split(400, 1)
    stats = fit_review(train, tune, threshold=0.5)
    normal_like = tune.feats[tune.labels == 0][:1]
    grey = tune.images[:1]
    colour = grey.clone()
    colour[:, 0] = 250  # a red picture: saturated, whatever its features
    far_from_normal = normal_like.clone()
    far_from_normal[:, 5:] += 6.0  # unlike both classes' training features
    cases = {
        "not-cxr": (normal_like, colour, 0.05),
        "anomaly": (
            normal_like + torch.cat([torch.zeros(1, 5), torch.full((1, 11), 1.6)], 1),
            grey,
            0.05,
        ),
        "low-confidence": (normal_like, grey, 0.5),
    }
    for reason, (feats, images, p) in cases.items():
        prob = torch.tensor([p])
        called = prob >= 0.5
        verdict = member_verdict(stats, stats.input_scores(feats, images), prob, called)
        assert reason in verdict.reasons[0], (reason, verdict)
    # an anomaly needs a NORMAL call: the same input called PNEUMONIA is not one
    prob = torch.tensor([0.99])
    feats = cases["anomaly"][0]
    verdict = member_verdict(stats, stats.input_scores(feats, grey), prob, prob >= 0.5)
    assert "anomaly" not in verdict.reasons[0]
    calm = member_verdict(
        stats, stats.input_scores(normal_like, grey), torch.tensor([0.001]), torch.tensor([False])
    )
    assert calm.reasons == [[]]


def test_ensemble_flags_dissent_and_any_members_not_cxr() -> None:
    stats = fit_review(_split(1500, 0), _split(400, 1), threshold=0.5)
    tune = _split(4, 2)
    scores = stats.input_scores(tune.feats, tune.images)
    scores[2, 0] = 5.0  # member 0 finds image 2 out of distribution
    prob = torch.tensor([0.001, 0.999, 0.001, 0.999])
    a = member_verdict(stats, scores, prob, prob >= 0.5)
    b = member_verdict(stats, stats.input_scores(tune.feats, tune.images), 1 - prob, prob < 0.5)
    called = torch.tensor([False, True, False, True])
    verdict = ensemble_verdict(
        [a, b], torch.stack([prob >= 0.5, prob < 0.5]), [0.6, 0.6], [0.7, 0.3], called
    )
    # member b (30% of the weight) votes against every call: dissent below half
    assert verdict.disagreement.tolist() == pytest.approx([0.3] * 4)
    assert "not-cxr" in verdict.reasons[2] and "not-cxr" not in verdict.reasons[0]
    even = ensemble_verdict(
        [a, b], torch.stack([prob >= 0.5, prob < 0.5]), [0.6, 0.6], [0.5, 0.5], called
    )
    assert all("low-confidence" in r for r in even.reasons)


def test_statistics_travel_in_the_checkpoint_and_give_the_same_scores() -> None:
    torch.manual_seed(0)
    model = create_model("cnn", img_size=32).eval()
    images = torch.randint(0, 255, (40, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(40) % 2
    with feature_tap(model) as caught, torch.no_grad():
        prob = torch.sigmoid(model(Normalizer()(images)))
    assert caught[0].shape == (40, last_linear(model).in_features)
    cal = Calibration(caught[0], images, prob, labels)
    stats = fit_review(cal, cal, threshold=0.5)
    bundle = ModelBundle(model, "cnn", 32, Normalizer(), review=stats)
    back = from_bytes(to_bytes(bundle)).review
    assert back is not None and back.header() == stats.header()
    assert torch.equal(back.input_scores(caught[0], images), stats.input_scores(caught[0], images))


def test_generated_inputs_from_image_files(tmp_path) -> None:
    """A photo-like colour file and an inverted X-ray decode to images whose saturation and
    thumbnail differ from a grey X-ray's (the not-cxr components see them)."""
    xray = make_xray(tmp_path / "x.png", True, 1, size=64)
    ImageOps.invert(Image.open(xray)).save(tmp_path / "inv.png")
    Image.new("RGB", (64, 64), (200, 40, 30)).save(tmp_path / "red.png")
    decoded = decode_many([xray, tmp_path / "inv.png", tmp_path / "red.png"], 32)
    stats = image_statistics(decoded.tensor)
    assert float(stats["saturation"][0]) < 0.01 < 0.5 < float(stats["saturation"][2])
    assert float((stats["thumbnail"][0] - stats["thumbnail"][1]).abs().mean()) > 0.3


@pytest.mark.slow
def test_real_xrays_tell_apart_the_generated_zoo(shared_data: Path, tmp_path: Path) -> None:
    """A quick CNN on 300 real X-rays: its not-cxr score ranks the zoo (photos, documents,
    noise, broken films) above test/'s X-rays, and flags few of test/."""
    from benchmarks.ood_zoo import build
    from training.evaluation.metrics import roc_auc
    from training.fitting.config import make_config
    from training.fitting.fit import fit
    from training.scoring.files import score_files_multi

    config = make_config("cnn", epochs=2, max_images_per_class=150)
    bundle = fit(config, shared_data / "chest_xray").bundle
    test = sorted((shared_data / "chest_xray" / "test").rglob("*.jpeg"))
    build(tmp_path / "zoo")
    zoo = sorted((tmp_path / "zoo").rglob("*.png"))
    ood = score_files_multi([bundle], [*test, *zoo]).review[0, :, 0]
    y = torch.cat([torch.zeros(len(test)), torch.ones(len(zoo))])
    assert roc_auc(y, ood) >= 0.99
    assert float((ood[: len(test)] >= 1).float().mean()) <= 0.03


def test_feature_tap_keeps_to_its_own_thread() -> None:
    """A served model is shared by a worker's threads: each tap sees only its own forwards."""
    import threading

    model = create_model("cnn", img_size=32).eval()
    seen: dict[int, int] = {}
    start = threading.Barrier(2)

    def score(n: int) -> None:
        with feature_tap(model) as caught, torch.no_grad():
            start.wait()
            for _ in range(5):
                model(torch.zeros(n, 3, 32, 32))
        seen[n] = sum(len(c) for c in caught)

    threads = [threading.Thread(target=score, args=(n,)) for n in (3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {3: 15, 4: 20}
