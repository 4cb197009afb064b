"""The precision of a run (`cxrq train --precision auto|fp32|bf16|fp16`): what each choice
becomes on a CPU, which it refuses in one line, what old configs' `amp` flag maps to, and the
fp16 loss scaler kept per optimizer."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from sqlalchemy import func, select

from db.schema import Job, Model
from db.session import session_scope
from tests.helpers import run
from training.fitting import precision
from training.fitting.config import PRESETS, TrainConfig, make_config
from training.fitting.loop import grad_scaler, make_optimizer
from training.fitting.precision import PrecisionError, autocast_dtype, precision_used

CPU = torch.device("cpu")
CUDA = torch.device("cuda")  # only named: nothing here runs on it


def _config(choice: str) -> TrainConfig:
    return TrainConfig(arch="cnn", precision=choice)


@pytest.fixture()
def native(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)


@pytest.fixture()
def emulated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)


def test_fp32_is_no_autocast(native: None) -> None:
    assert precision_used(_config("fp32"), CPU) == "fp32"
    assert autocast_dtype(_config("fp32"), CPU) is None


def test_auto_is_bf16_where_native(native: None) -> None:
    assert precision_used(_config("auto"), CPU) == "bf16"
    assert autocast_dtype(_config("auto"), CPU) is torch.bfloat16


def test_auto_falls_back_to_fp32_where_bf16_is_emulated(emulated: None) -> None:
    assert precision_used(_config("auto"), CPU) == "fp32"
    assert autocast_dtype(_config("auto"), CPU) is None


def test_bf16_where_native(native: None) -> None:
    assert autocast_dtype(_config("bf16"), CPU) is torch.bfloat16


def test_bf16_refused_where_emulated(emulated: None) -> None:
    with pytest.raises(PrecisionError, match="^bf16 is not native on this CPU; use fp32 or auto$"):
        autocast_dtype(_config("bf16"), CPU)


def test_bf16_on_a_gpu_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert precision_used(_config("auto"), CUDA) == "fp32"
    with pytest.raises(PrecisionError, match="not native on this GPU"):
        precision_used(_config("bf16"), CUDA)


def test_fp16_needs_cuda(native: None) -> None:
    with pytest.raises(PrecisionError) as err:
        autocast_dtype(_config("fp16"), CPU)
    assert str(err.value) == "fp16 needs a CUDA device; use fp32 or bf16"
    assert autocast_dtype(_config("fp16"), CUDA) is torch.float16


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(PrecisionError, match="choose one of auto, fp32, bf16, fp16"):
        precision_used(_config("int8"), CPU)


def test_presets_that_had_amp_get_auto() -> None:
    assert make_config("cnn", "seed").precision == "fp32"
    assert make_config("cnn", "tuned").precision == "auto"
    assert make_config("cnn", "external").precision == "auto"
    assert make_config("cnn", "external", precision="fp32").precision == "fp32"
    assert all("amp" not in p for p in PRESETS.values())


@pytest.mark.parametrize(("amp", "expected"), [(True, "auto"), (False, "fp32")])
def test_old_configs_amp_flag_maps_to_a_precision(amp: bool, expected: str) -> None:
    old = {k: v for k, v in make_config("googlenet").to_dict().items() if k != "precision"}
    config = TrainConfig.from_dict({**old, "amp": amp})
    assert config.precision == expected
    assert "amp" not in config.to_dict()


def test_stored_precision_wins_over_a_stray_amp() -> None:
    assert TrainConfig.from_dict({"arch": "cnn", "precision": "bf16", "amp": False}).precision == (
        "bf16"
    )
    assert TrainConfig.from_dict({"arch": "cnn"}).precision == "fp32"  # neither: the default
    config = make_config("cnn", precision="bf16")
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_fp16_has_one_scaler_per_optimizer_kept_across_epochs() -> None:
    model = torch.nn.Linear(2, 1)
    optimizer = make_optimizer(model, _config("fp16"))
    assert grad_scaler(optimizer, None) is None
    assert grad_scaler(optimizer, torch.bfloat16) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA is not available": the scaler disables itself
        first = grad_scaler(optimizer, torch.float16)
        assert isinstance(first, torch.amp.GradScaler)
        assert grad_scaler(optimizer, torch.float16) is first
        other = make_optimizer(model, _config("fp16"))
        assert grad_scaler(other, torch.float16) is not first


def _train(data: Path, *options: str, ok: bool = True) -> str:
    args = ["train", "--arch", "cnn", "--data", data, "--epochs", "1", "--img-size", "32"]
    return run(*args, "--batch-size", "8", "--max-per-class", "6", *options, ok=ok)


def _one_line_refusal(out: str, message: str) -> None:
    assert out.strip().splitlines() == [f"Error: {message}"]
    with session_scope() as s:  # refused before any row exists
        assert s.scalar(select(func.count()).select_from(Job)) == 0


def test_cli_refuses_fp16_on_a_cpu(db_url: str, tiny_dataset: Path, native: None) -> None:
    out = _train(tiny_dataset, "--precision", "fp16", ok=False)
    _one_line_refusal(out, "fp16 needs a CUDA device; use fp32 or bf16")


def test_cli_refuses_emulated_bf16(
    db_url: str, tiny_dataset: Path, emulated: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = _train(tiny_dataset, "--precision", "bf16", ok=False)
    _one_line_refusal(out, "bf16 is not native on this CPU; use fp32 or auto")


def test_cli_rejects_an_unknown_precision(db_url: str, tiny_dataset: Path) -> None:
    out = _train(tiny_dataset, "--precision", "fp8", ok=False)
    assert "'fp8' is not one of 'auto', 'fp32', 'bf16', 'fp16'" in out


def test_cli_stores_the_precision_asked_for(db_url: str, tiny_dataset: Path, native: None) -> None:
    assert "model 1 stored" in _train(tiny_dataset, "--precision", "bf16")
    assert "model 2 stored" in _train(tiny_dataset)  # external preset: auto
    with session_scope() as s:
        stored = [m.config["precision"] for m in s.scalars(select(Model).order_by(Model.id))]
    assert stored == ["bf16", "auto"]


def test_help_names_the_choices() -> None:
    out = run("train", "--help")
    assert "--precision [auto|fp32|bf16|fp16]" in out


def test_cli_module_and_config_name_the_same_choices() -> None:
    from cli import train_cmd
    from training.fitting.config import PRECISIONS

    assert train_cmd.PRECISIONS == PRECISIONS
    assert set(precision.DTYPES) | {"auto"} == set(PRECISIONS)
