"""Every command that changes a row leaves an audit entry: the click tree is walked, so a new
command must be named here as writing (and is then run and checked) or as reading only."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from cli.main import cli
from db.audit import audit_entries
from db.governance import AuditEntry
from db.session import session_scope
from tests.conftest import make_dataset, make_xray
from tests.gateway.nodes import twins
from tests.helpers import job_id_of, run, site_folder

# command -> the audit action it writes
WRITES = {
    "train": "train",
    "score": "score",
    "evaluate": "evaluate",
    "calibrate": "calibrate",
    "ensemble create": "ensemble-create",
    "ensemble fit": "ensemble-fit",
    "model promote": "promote",
    "cancel": "cancel",
    "export": "export",
    "listen": "listen",
    "db upgrade": "db-upgrade",
}
# `worker` changes rows only through the jobs it runs, and audits them there (model-stored,
# site-profile, drift-alarm); the rest read.
READS = {"worker", "status", "model history"}


def _leaves(group: click.Group, prefix: str = "") -> set[str]:
    out = set()
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            out |= _leaves(command, f"{path} ")
        else:
            out.add(path)
    return out


def test_every_command_is_named_as_writing_or_reading() -> None:
    leaves = _leaves(cli)
    reports = {c for c in leaves if c.startswith("report ")}
    assert leaves - reports == set(WRITES) | READS, "name a new command in WRITES or READS"


def _actions() -> list[str]:
    with session_scope() as s:
        return [e.action for e in audit_entries(s)]


def _model_id(arch: str) -> int:
    from sqlalchemy import select

    from db.schema import Model

    with session_scope() as s:
        return s.scalars(select(Model.id).where(Model.arch == arch)).one()


def _listen_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model: int) -> None:
    from gateway.listener import Listener

    monkeypatch.setattr(Listener, "wait", lambda self: self.stop())  # start, then stop at once
    run("listen", "--host", "127.0.0.1", "--port", 0, "--spool", tmp_path / "spool",
        "--model", model)  # fmt: skip


def test_every_writing_command_leaves_an_audit_entry(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.jobs import ScoreParams, create_score_job

    monkeypatch.setenv("CXRQ_ACTOR", "dr-audit")
    data = make_dataset(tmp_path / "data", per_class=20, images_per_patient=1)
    for arch in ("cnn", "mlp"):
        run("train", "--arch", arch, "--data", data, "--epochs", 1, "--img-size", 32,
            "--preset", "seed")  # fmt: skip
    cnn, mlp = _model_id("cnn"), _model_id("mlp")
    run("model", "promote", cnn, "--as", "default", "--why", "first one in use")
    sources = [make_xray(tmp_path / "src" / f"x{i}.png", i % 2 == 0, seed=i) for i in range(3)]
    twins(sources, tmp_path / "dicom")
    scored = job_id_of(run("score", tmp_path / "dicom", "--explain", "all"))
    run("evaluate", cnn, "--data", data / "train")
    site = site_folder(tmp_path / "site")
    run("calibrate", cnn, "--data", site, "--site", "st-marys", "--target-sensitivity", 0.9)
    run("ensemble", "create", "pair", "--member", f"{cnn}=1", "--member", f"{mlp}=1")
    run("ensemble", "fit", "pair", "--folds", 2)
    run("export", scored, "--dicom", tmp_path / "out")
    pending = create_score_job(ScoreParams(str(site)), [[str(sources[0])]], str(cnn))
    run("cancel", pending.id)
    _listen_once(monkeypatch, tmp_path, cnn)
    run("db", "upgrade")
    actions = set(_actions())
    missing = {command for command, action in WRITES.items() if action not in actions}
    assert not missing, f"no audit entry from: {missing}"
    assert {"model-stored", "site-profile"} <= actions  # what the jobs themselves changed
    with session_scope() as s:
        entries = audit_entries(s)
        assert {e.actor for e in entries} == {"dr-audit"}
        assert all(isinstance(e, AuditEntry) and e.at is not None for e in entries)
        promote = next(e for e in entries if e.action == "promote")
        assert (promote.model_id, promote.alias, promote.why) == (
            cnn,
            "default",
            "first one in use",
        )
