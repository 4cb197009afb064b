"""docker-compose.yml: its structure, its schema (when docker-compose is installed), and each
service's command run by hand against the local Redis and PostgreSQL (there is no Docker engine
in CI)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from base64 import b64encode
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cli.main import cli
from tests.conftest import make_xray
from tests.worker.conftest import wait_for

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_only_flower_publishes_a_port_and_only_on_loopback(compose: dict) -> None:
    services = compose["services"]
    assert {"redis", "postgres", "migrate", "worker", "worker-gpu", "flower"} <= set(services)
    published = {name: s["ports"] for name, s in services.items() if "ports" in s}
    assert published == {"flower": ["127.0.0.1:5555:5555"]}


def test_secrets_come_from_the_environment(compose: dict) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert "${REDIS_PASSWORD:?" in text and "${POSTGRES_PASSWORD:?" in text
    assert "change-me" not in text
    redis = compose["services"]["redis"]
    assert "--requirepass" in redis["command"] and "healthcheck" in redis


def test_workers_scale_and_see_data_at_the_cli_path(compose: dict) -> None:
    worker = compose["services"]["worker"]
    assert "container_name" not in worker  # a fixed name would stop --scale worker=N
    # Same path inside as outside: the CLI resolves a path, every worker opens that path.
    data_mount = worker["volumes"][0]
    assert data_mount.startswith("${CXRQ_DATA_DIR:?") and data_mount.endswith(
        ":${CXRQ_DATA_DIR}:ro"
    )
    gpu = compose["services"]["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert gpu == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_compose_file_passes_the_schema() -> None:
    for profiles in ([], ["--profile", "gpu", "--profile", "cli"]):
        subprocess.run(
            ["docker-compose", "--env-file", ".env.example", *profiles, "config", "-q"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )


def _cxrq(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_migrate_then_worker_commands_serve_a_job(compose, postgres_url, broker_url, tmp_path):
    services = compose["services"]
    assert services["migrate"]["command"] == ["db", "upgrade"]
    _cxrq(*services["migrate"]["command"])  # the one-shot service, by hand

    worker_cmd = [
        sys.executable,
        "-c",
        "from cli.main import cli; cli()",
        *services["worker"]["command"],
    ]
    log = tmp_path / "worker.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            worker_cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        data = tmp_path / "data"
        for i in range(6):
            make_xray(data / "train" / "NORMAL" / f"IM-{i:04d}-0001.jpeg", False, i)
            make_xray(data / "train" / "PNEUMONIA" / f"person{i}_virus_{i}.jpeg", True, 10 + i)
        out = _cxrq(
            "train",
            "--arch",
            "mlp",
            "--data",
            str(data),
            "--epochs",
            "1",
            "--img-size",
            "32",
            "--wait",
        )
        assert "validation: F1" in out
        assert "succeeded" in _cxrq("score", str(data), "--wait")
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def test_flower_command_serves_its_page_behind_basic_auth(compose, broker_url, tmp_path):
    flower = compose["services"]["flower"]
    port = "15555"
    cmd = [*flower["entrypoint"][:-1], f"--port={port}", "--address=127.0.0.1"]
    env = {**os.environ, "FLOWER_BASIC_AUTH": "admin:pw"}
    cmd[0] = str(Path(sys.executable).with_name("celery"))
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:

        def status(auth: str | None) -> int | None:
            request = urllib.request.Request(url)
            if auth:
                request.add_header("Authorization", "Basic " + b64encode(auth.encode()).decode())
            try:
                return urllib.request.urlopen(request, timeout=2).status
            except urllib.error.HTTPError as exc:
                return exc.code
            except OSError:
                return None

        assert wait_for(lambda: status(None), 30, "flower", lambda: "") == 401
        assert status("admin:pw") == 200
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        time.sleep(0.1)
