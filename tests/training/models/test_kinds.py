"""Bacterial vs viral: the kind parsed from file names, the heads, the loss, the scores."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import kinds_dataset
from training.data.data_files import kind_code, pneumonia_kind
from training.data.preprocess import Normalizer
from training.evaluation.metrics import kind_scores
from training.fitting.config import make_config
from training.fitting.fit import fit
from training.models.checkpoint import ModelBundle, from_bytes, to_bytes
from training.models.registry import KIND_HEADS, create_model, list_models, split_logits


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("person1_bacteria_1.jpeg", "bacteria"),
        ("person1000_virus_1681.jpeg", "virus"),
        ("PERSON12_VIRUS_3.JPEG", "virus"),
        ("person7_bacteria_29.png", "bacteria"),
        ("IM-0001-0001.jpeg", None),
        ("NORMAL2-IM-0553-0001.jpeg", None),
        ("person3_virusish_2.jpeg", None),
        ("bacteria.jpeg", None),
    ],
)
def test_the_kind_is_parsed_from_the_file_name(name: str, kind: str | None) -> None:
    assert pneumonia_kind(Path("/x/PNEUMONIA") / name) == kind


def test_only_a_pneumonia_of_known_kind_gets_a_kind_code() -> None:
    assert kind_code("/p/person1_bacteria_1.jpeg", 1) == 0
    assert kind_code("/p/person1_virus_1.jpeg", 1) == 1
    assert kind_code("/p/person1_virus_1.jpeg", 0) == -1  # NORMAL
    assert kind_code("/p/scan_17.jpeg", 1) == -1


@pytest.mark.parametrize("head", ["two", "three"])
@pytest.mark.parametrize("arch", list_models())
def test_every_arch_answers_the_kind_beside_the_binary_question(arch: str, head: str) -> None:
    torch.manual_seed(0)
    size = 64 if arch in ("googlenet", "resnet50", "efficientnet_lite0") else 32
    out = create_model(arch, img_size=size, kind_head=head)(torch.randn(2, 3, size, size))
    assert out.shape == (2, KIND_HEADS[head])
    logit, viral = split_logits(out)
    assert logit.shape == viral.shape == (2,)


def test_a_binary_model_answers_no_kind() -> None:
    out = create_model("cnn", img_size=32)(torch.randn(3, 3, 32, 32))
    logit, viral = split_logits(out)
    assert out.shape == (3,) and viral is None and torch.equal(logit, out)


def test_the_3_way_head_reads_as_pneumonia_and_viral_given_pneumonia() -> None:
    out = torch.randn(50, 3, dtype=torch.float64)
    p = out.softmax(1)
    logit, viral = split_logits(out)
    assert torch.allclose(torch.sigmoid(logit), p[:, 1] + p[:, 2])
    assert torch.allclose(torch.sigmoid(viral), p[:, 2] / (p[:, 1] + p[:, 2]))
    # Its cross-entropy is the binary BCE plus the kind's BCE: one loss serves both heads.
    target = torch.randint(0, 3, (50,))
    pneumonia, is_viral = (target > 0).double(), (target == 2).double()
    summed = F.binary_cross_entropy_with_logits(logit, pneumonia, reduction="none")
    known = target > 0
    summed[known] += F.binary_cross_entropy_with_logits(
        viral[known], is_viral[known], reduction="none"
    )
    assert torch.allclose(summed, F.cross_entropy(out, target, reduction="none"))


def test_kind_scores_count_viral_as_positive_over_known_kinds_only() -> None:
    kinds = [1, 1, 0, 0, 0, -1]
    prob = [0.9, 0.2, 0.1, 0.6, 0.3, 0.99]
    s = kind_scores(kinds, prob, threshold=0.5)
    assert s["kind_n"] == 5
    assert s["kind_sensitivity"] == pytest.approx(1 / 2)
    assert s["kind_specificity"] == pytest.approx(2 / 3)
    assert s["kind_accuracy"] == pytest.approx(3 / 5)
    assert s["kind_roc_auc"] == pytest.approx(4 / 6)  # viral 0.9 beats all 3; 0.2 beats 0.1 only
    assert set(kind_scores([-1, -1], [0.5, 0.5]).values()) == {None}


def test_a_checkpoint_keeps_its_kind_head_and_threshold() -> None:
    torch.manual_seed(0)
    model = create_model("cnn", img_size=32, kind_head="three").eval()
    bundle = ModelBundle(model, "cnn", 32, Normalizer(), kind_head="three", kind_threshold=0.37)
    loaded = from_bytes(to_bytes(bundle))
    assert (loaded.kind_head, loaded.kind_threshold) == ("three", 0.37)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), loaded.model(x), atol=1e-5)


def test_training_with_a_kind_head_stores_the_kind_scores(tmp_path: Path) -> None:
    data = kinds_dataset(tmp_path / "data")
    config = make_config(
        "cnn", img_size=32, epochs=2, batch_size=8, tune_fraction=0.25, val_fraction=0.4
    )
    assert config.kind_head == "two"  # the default preset learns the kind
    result = fit(config, data)
    assert result.bundle.kind_head == "two" and 0 < result.bundle.kind_threshold < 1
    assert result.val_scores["kind_n"] > 0 and result.val_scores["kind_accuracy"] is not None
    assert result.data["kind_threshold"] == result.bundle.kind_threshold


def test_the_seed_preset_stays_binary(tmp_path: Path) -> None:
    data = kinds_dataset(tmp_path / "data")
    result = fit(make_config("cnn", "seed", img_size=32, epochs=1, batch_size=8), data)
    assert result.bundle.kind_head == "none" and "kind_n" not in result.val_scores
    assert result.bundle.model(torch.zeros(1, 3, 32, 32)).shape == (1,)
