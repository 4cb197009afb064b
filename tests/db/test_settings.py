"""Every CXRQ_* setting is read in db.settings, when asked for, with its documented default."""

import pytest

from db.settings import get_settings

WORKER_AND_PRIVACY = ("CXRQ_WORKER_CONCURRENCY", "CXRQ_TORCH_THREADS", "CXRQ_PATIENT_SALT")


def test_worker_and_privacy_settings_default_to_one_process_shared_cores_and_no_hash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in WORKER_AND_PRIVACY:
        monkeypatch.delenv(name, raising=False)
    settings = get_settings()
    assert (settings.worker_concurrency, settings.torch_threads) == (1, None)
    assert settings.patient_salt is None
    monkeypatch.setenv("CXRQ_PATIENT_SALT", "")  # set but empty: still no hash
    assert get_settings().patient_salt is None


def test_worker_and_privacy_settings_are_read_when_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CXRQ_WORKER_CONCURRENCY", "4")
    monkeypatch.setenv("CXRQ_TORCH_THREADS", "3")
    monkeypatch.setenv("CXRQ_PATIENT_SALT", "s3cret")
    settings = get_settings()
    assert (settings.worker_concurrency, settings.torch_threads) == (4, 3)
    assert settings.patient_salt == "s3cret"
