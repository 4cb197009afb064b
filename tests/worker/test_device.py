"""Where work runs: one device per process, recorded on every unit it claims."""

import pytest
import torch
from click.testing import CliRunner
from sqlalchemy import select

from cli.main import cli
from db.schema import WorkUnit
from db.session import session_scope
from tests.helpers import add_tiny_model, incoming_folder, make_score_job
from worker.score_job import run_scoring_job
from worker.train_job import run_training_job

HERE = "cuda:0" if torch.cuda.is_available() else "cpu"


def test_every_unit_records_the_device_that_scored_it(db_url, tiny_checkpoint, tmp_path) -> None:
    job_id, unit_ids = make_score_job(incoming_folder(tmp_path), add_tiny_model(tiny_checkpoint))
    assert len(unit_ids) == 3
    assert run_scoring_job(job_id)["state"] == "succeeded"
    with session_scope() as s:
        devices = [u.device for u in s.scalars(select(WorkUnit).where(WorkUnit.job_id == job_id))]
    assert devices == [HERE] * 3
    result = CliRunner().invoke(cli, ["report", "job", str(job_id)])
    assert f"ran on       {HERE} (3 units)" in result.output, result.output


def test_a_training_records_its_device_on_its_unit_and_job(db_url, tiny_dataset) -> None:
    from db.schema import Job
    from training.fitting.config import make_config
    from worker.jobs import TrainParams, create_train_job

    config = make_config("cnn", img_size=32, epochs=1, batch_size=8)
    job_id = create_train_job(TrainParams(config, str(tiny_dataset))).id
    assert run_training_job(job_id) is not None
    with session_scope() as s:
        [unit] = s.scalars(select(WorkUnit).where(WorkUnit.job_id == job_id)).all()
        assert unit.device == HERE
        assert s.get(Job, job_id).state == "succeeded"


def test_cxrq_device_chooses_the_device_of_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker import device

    monkeypatch.setenv("CXRQ_DEVICE", "cpu")
    assert device.process_device_name() == "cpu"
    monkeypatch.setenv("CXRQ_DEVICE", "tpu")
    from training.devices import DeviceError

    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        device.process_device()


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("gpu", "unknown device 'gpu'; use auto, cpu, cuda or cuda:N"),
        ("cuda:7", "device cuda:7 asked for, but"),
    ],
)
def test_a_worker_for_a_device_that_is_not_there_stops_with_one_line(
    device: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CXRQ_BROKER_URL", "redis://127.0.0.1:1/0")  # never reached
    result = CliRunner().invoke(cli, ["worker", "--device", device])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert message in lines[-1], result.output
    assert "Traceback" not in result.output
