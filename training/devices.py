"""Which torch device a process trains and scores on, from one setting (CXRQ_DEVICE or
`cxrq worker --device`), resolved where it is used: in each worker pool process after the fork,
never in a parent that forks (initialising CUDA before a fork breaks the children).

    from training.devices import resolve_device, device_name
    device = resolve_device("auto")   # cuda:0 when a GPU is visible, else cpu
    device_name(device)               # "cuda:0" / "cpu": what rows and logs record

Choices: auto (default), cpu, cuda (the current CUDA device), cuda:N.
"""

from __future__ import annotations

import re

import torch

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_SPEC = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


class DeviceError(ValueError):
    user_error = True  # the CLI prints str(exc) as one line, no traceback


def check_device_spec(spec: str) -> str:
    """The spec normalised (lower case, stripped), or DeviceError when it is not a device name.
    Checks the spelling only, so a parent process can validate without touching CUDA."""
    text = (spec or "auto").strip().lower()
    match = _SPEC.match(text)
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise DeviceError(f"unknown device {spec!r}; use {DEVICE_CHOICES}")
    return text


def resolve_device(spec: str = "auto") -> torch.device:
    """The device a spec names on this machine; DeviceError (one line) when it names a GPU that
    is not there. `auto` is the first visible CUDA device, else the CPU."""
    text = check_device_spec(spec)
    if text == "auto":
        return torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(f"device {text} asked for, but this machine has no CUDA device visible")
    index = int(text.split(":")[1]) if ":" in text else torch.cuda.current_device()
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceError(f"device cuda:{index} asked for, but {count} CUDA device(s) are visible")
    return torch.device("cuda", index)


def device_name(device: torch.device) -> str:
    """The name a row records: "cpu" or "cuda:N"."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index}"
    return device.type


def describe(device: torch.device) -> str:
    """A log line's name for the device: "cuda:0 (NVIDIA H200)", or "cpu (2 threads)"."""
    if device.type == "cuda":
        return f"{device_name(device)} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def prepare(device: torch.device) -> None:
    """Per-process settings for running on `device`: the current CUDA device, cuDNN's search
    for the fastest convolutions (the input shapes are fixed), and TF32 left as torch's
    default (off for matmul) unless a caller chooses otherwise."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
