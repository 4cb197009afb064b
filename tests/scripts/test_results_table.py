import pytest

from scripts.results_table import (
    COLUMNS,
    HEADER,
    _ensemble_command,
    ensemble_line,
    model_line,
    train_command,
)
from training.fitting.config import make_config


def test_a_selected_ensemble_is_recreated_with_its_dropped_members() -> None:
    row = {
        "name": "picked",
        "members": "8=0.25, 2=0.59",
        "dropped": "1, 10",
        "validation": "… ; stacking with member selection cross-fitted over 5 patient folds",
    }
    assert _ensemble_command(row) == (
        "`cxrq ensemble create picked --member 1=1 --member 2=1 --member 8=1 --member 10=1"
        " && cxrq ensemble fit picked --select`"
    )


def test_a_plain_fit_has_no_select_flag() -> None:
    row = {"name": "f", "members": "1=0.5, 2=0.5", "dropped": "", "validation": "stacking"}
    assert _ensemble_command(row).endswith("cxrq ensemble fit f`")


def test_a_train_command_names_only_what_differs_from_the_preset() -> None:
    plain = make_config("cnn", "seed").to_dict()
    assert train_command("cnn", plain) == (
        "`cxrq train --arch cnn --preset seed --data ../shared/data/chest_xray`"
    )
    config = make_config("cnn", "tuned", img_size=128, init_seed=2).to_dict()
    assert train_command("cnn-128", config) == (
        "`cxrq train --arch cnn --preset tuned --img-size 128 --init-seed 2 --name cnn-128"
        " --data ../shared/data/chest_xray`"
    )


def test_the_newer_train_options_appear_when_they_differ() -> None:
    config = make_config(
        "cnn", "seed", equalize="clahe", photometric=0.5, label_smoothing=0.1, balance="sample"
    ).to_dict()
    assert train_command("cnn", config) == (
        "`cxrq train --arch cnn --preset seed --equalize clahe --photometric 0.5"
        " --label-smoothing 0.1 --balance sample --data ../shared/data/chest_xray`"
    )


def test_an_older_config_without_the_newer_options_gets_no_flag_for_them() -> None:
    new_keys = ("equalize", "photometric", "label_smoothing")
    old = {k: v for k, v in make_config("cnn", "seed").to_dict().items() if k not in new_keys}
    # The tuned preset balances by weight; this old seed config says flip, so it is named.
    old |= {"preset": "tuned", "balance": "flip"}
    command = train_command("cnn", old)
    assert "--balance flip" in command
    assert not any(f in command for f in ("--equalize", "--photometric", "--label-smoothing"))


def test_a_key_the_preset_lacks_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    class Preset:  # as if training.fitting.config no longer (or not yet) had `equalize`
        def to_dict(self) -> dict:
            d = make_config("cnn", "seed").to_dict()
            del d["equalize"]
            return d

    monkeypatch.setattr("scripts.results_table.make_config", lambda arch, preset: Preset())
    config = make_config("cnn", "seed", equalize="hist").to_dict()
    assert "--equalize" not in train_command("cnn", config)


def _row(**scores: float | None) -> dict:
    keys = ("f1", "sensitivity", "specificity", "accuracy", "roc_auc", "threshold", "kind_roc_auc")
    keys += ("kind_accuracy",)
    row = {f"{split}_{k}": None for split in ("val", "test") for k in keys}
    return row | scores


def test_every_line_has_validation_and_test_columns() -> None:
    header, rule = HEADER.split("\n")
    assert header.startswith("| model | preset | val F1 | val sens | val spec | val acc | val AUC")
    assert "| test sens | test spec | test acc | test AUC | val kind AUC |" in header
    assert "| test kind AUC | test kind acc | threshold |" in header
    assert rule.count("---") == len(COLUMNS) == 17
    scores = {"val_f1": 0.91234, "val_roc_auc": None, "val_threshold": 0.5, "test_accuracy": 0.8}
    model = {"name": "cnn", "id": 3, "preset": "seed", "train_minutes": 1.25, **_row(**scores)}
    line = model_line(model, make_config("cnn", "seed").to_dict())
    cells = [c.strip() for c in line.split("|")[1:-1]]
    assert len(cells) == len(COLUMNS)
    assert cells[:9] == ["cnn (model 3)", "seed", "0.9123", "-", "-", "-", "-", "-", "-"]
    assert cells[9:16] == ["0.8000", "-", "-", "-", "-", "0.5000", "1.2"]
    ensemble = {
        "name": "duo",
        "method": "vote",
        "members": "1=0.5, 2=0.5",
        "dropped": "",
        "validation": "x",
        **_row(test_roc_auc=0.75),
    }
    cells = [c.strip() for c in ensemble_line(ensemble).split("|")[1:-1]]
    assert len(cells) == len(COLUMNS) and cells[10] == "0.7500" and cells[12] == "-"


def test_a_pretrained_model_gets_its_boolean_flag() -> None:
    from scripts.results_table import train_command
    from training.fitting.config import make_config

    config = make_config("efficientnet_lite0", "tuned", pretrained=True).to_dict()
    assert "--pretrained" in train_command("efficientnet_lite0", config)
    assert "--pretrained" not in train_command("cnn", make_config("cnn", "tuned").to_dict())
