"""The torch device of this process: CXRQ_DEVICE (or `cxrq worker --device`) resolved once,
in the process that runs torch. A worker's pool children resolve it after the fork
(celery_app's worker_process_init); the embedded CLI resolves it on first use.

    from worker.device import process_device, process_device_name
    model.to(process_device()); unit row records process_device_name()
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from db.settings import get_settings
from training.devices import describe, device_name, prepare, resolve_device

if TYPE_CHECKING:  # the tensor work is training's; this module only keeps the choice
    import torch

log = logging.getLogger(__name__)
_resolved: dict[str, torch.device] = {}  # spec -> device, once per process


def process_device() -> torch.device:
    """The device this process trains and scores on (DeviceError, one line, if it is absent)."""
    spec = get_settings().device
    if spec not in _resolved:
        device = resolve_device(spec)
        prepare(device)
        log.info("torch device: %s (CXRQ_DEVICE=%s)", describe(device), spec)
        _resolved[spec] = device
    return _resolved[spec]


def process_device_name() -> str:
    """The name a work unit records: "cpu" or "cuda:N"."""
    return device_name(process_device())
