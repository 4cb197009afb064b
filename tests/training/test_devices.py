"""The device setting: spelling checked without touching CUDA, absent GPUs named in one line."""

import pytest
import torch

from training.devices import DeviceError, check_device_spec, device_name, resolve_device


@pytest.mark.parametrize(
    ("spec", "normal"),
    [("auto", "auto"), ("", "auto"), (" CPU ", "cpu"), ("cuda", "cuda"), ("cuda:3", "cuda:3")],
)
def test_device_names_are_normalised(spec: str, normal: str) -> None:
    assert check_device_spec(spec) == normal


@pytest.mark.parametrize("spec", ["gpu", "cpu:1", "cuda:x", "auto:0", "mps"])
def test_a_misspelt_device_is_one_line_naming_the_choices(spec: str) -> None:
    with pytest.raises(DeviceError, match=r"unknown device .*; use auto, cpu, cuda or cuda:N"):
        check_device_spec(spec)
    assert DeviceError.user_error


def test_auto_is_the_first_gpu_or_else_the_cpu() -> None:
    expected = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert device_name(resolve_device("auto")) == expected
    assert resolve_device("cpu") == torch.device("cpu")


def test_a_gpu_that_is_not_there_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match=r"^device cuda:0 asked for, but this machine has no"):
        resolve_device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(DeviceError, match=r"^device cuda:2 asked for, but 2 CUDA device\(s\)"):
        resolve_device("cuda:2")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
