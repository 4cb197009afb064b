"""An unreachable broker or database: one line naming the URL (password masked), nothing written."""

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from cli.main import cli
from db.schema import Job
from db.session import session_scope
from tests.conftest import make_xray

DEAD_BROKER = "redis://:hunter2@127.0.0.1:1/0"
DEAD_DB = "postgresql+psycopg://cxrq:hunter2@127.0.0.1:1/cxrq"


def fails(*args: object) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "hunter2" not in result.output
    return result.output


def _job_count() -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Job))


def test_broker_down_names_it_and_writes_no_job(db_url, tiny_dataset, monkeypatch) -> None:
    monkeypatch.setenv("CXRQ_BROKER_URL", DEAD_BROKER)
    out = fails("train", "--arch", "cnn", "--data", tiny_dataset)
    assert "cannot reach broker redis://:***@127.0.0.1:1/0" in out and "start Redis" in out
    assert len(out.strip().splitlines()) == 1
    assert _job_count() == 0
    assert "cannot reach broker" in fails("worker")


def test_database_down_names_it(monkeypatch, tmp_path: Path) -> None:
    from db.session import dispose_engines

    dispose_engines()
    monkeypatch.setenv("CXRQ_DATABASE_URL", DEAD_DB)
    monkeypatch.delenv("CXRQ_BROKER_URL", raising=False)
    make_xray(tmp_path / "a.jpeg", False, 0)
    for args in (("score", tmp_path), ("report", "models"), ("status", "1"), ("db", "upgrade")):
        out = fails(*args)
        assert "cannot reach database postgresql+psycopg://cxrq:***@127.0.0.1:1/cxrq" in out, out


def test_worker_refuses_to_start_without_a_broker(db_url) -> None:
    assert "CXRQ_BROKER_URL is not set" in CliRunner().invoke(cli, ["worker"]).output


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///{tmp}/garbage.db", "cannot be used (file is not a database); restore it"),
        ("mysql://cxrq:hunter2@localhost/cxrq", "cxrq supports sqlite:///PATH and postgresql"),
        ("sqlite:////proc/no/such/cxrq.db", "cannot create folder /proc/no"),
    ],
)
def test_an_unusable_database_is_one_line(monkeypatch, tmp_path: Path, url, message) -> None:
    from db.session import dispose_engines

    (tmp_path / "garbage.db").write_text("garbage\n")
    dispose_engines()
    monkeypatch.setenv("CXRQ_DATABASE_URL", url.format(tmp=tmp_path))
    out = fails("report", "jobs")
    assert message in out and len(out.strip().splitlines()) == 1
    dispose_engines()
