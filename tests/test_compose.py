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
from sqlalchemy import text
from sqlalchemy.engine import make_url

from cli.main import cli
from db.audit import audit_entries
from db.session import session_scope
from tests.conftest import make_xray
from tests.worker.conftest import wait_for

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_only_flower_prometheus_and_the_dicom_listener_publish_a_port_on_loopback(
    compose: dict,
) -> None:
    services = compose["services"]
    wanted = {"redis", "postgres", "migrate", "worker", "worker-gpu0", "worker-gpu1", "flower"}
    assert wanted | {"prometheus"} <= set(services)
    published = {name: s["ports"] for name, s in services.items() if "ports" in s}
    assert published == {
        "flower": ["127.0.0.1:${FLOWER_PORT:-5555}:5555"],
        "prometheus": ["127.0.0.1:${PROMETHEUS_PORT:-9090}:9090"],
        # Modalities must reach it, so .env may open it; by default it is loopback too.
        "listen": ["${CXRQ_DICOM_BIND:-127.0.0.1}:${CXRQ_DICOM_PORT:-11112}:11112"],
    }
    assert services["listen"]["profiles"] == ["dicom"]  # opt-in
    # The workers read the spooled instances at the path the listener wrote them.
    assert "dicom-spool:/spool" in services["worker"]["volumes"]
    assert services["listen"]["command"] == ["listen", "--spool", "/spool"]


def test_base_images_are_variables_with_the_public_images_as_defaults(compose: dict) -> None:
    services = compose["services"]
    assert services["redis"]["image"] == "${REDIS_IMAGE:-redis:7-alpine}"
    assert services["postgres"]["image"] == "${POSTGRES_IMAGE:-postgres:16-alpine}"
    for name in ("migrate", "worker", "worker-gpu0", "flower", "cli"):
        assert services[name]["image"] == "${CXRQ_IMAGE:-cxrq:latest}"
        args = services[name]["build"]["args"]
        assert args == {
            "PYTHON_IMAGE": "${PYTHON_IMAGE:-python:3.11-slim}",
            "PIP_OFFLINE": "${PIP_OFFLINE:-0}",
        }
    assert services["prometheus"]["image"] == "${PROMETHEUS_IMAGE:-prom/prometheus:v2.53.0}"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in dockerfile
    assert "FROM ${PYTHON_IMAGE}" in dockerfile


def test_secrets_come_from_the_environment(compose: dict) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for name in ("REDIS_PASSWORD", "POSTGRES_PASSWORD", "WORKER_DB_PASSWORD", "FLOWER_BASIC_AUTH"):
        assert "${" + name + ":?" in text  # `:?` refuses an empty value as well as a missing one
    assert "change-me" not in text
    # The Redis password never reaches a command line (`ps` shows those to every user): it is
    # configuration on redis-server's stdin, expanded by the container's shell ($$).
    redis = compose["services"]["redis"]
    assert "--requirepass" not in str(redis["command"])
    assert redis["command"][:2] == ["sh", "-c"]
    script = redis["command"][2]
    assert "exec redis-server - <<EOF" in script and 'requirepass "$$REDIS_PASSWORD"' in script
    assert "REDISCLI_AUTH=" in redis["healthcheck"]["test"][1]
    assert "-a " not in redis["healthcheck"]["test"][1]


def _settings(path: Path) -> dict[str, str]:
    """KEY=value lines of an env file."""
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_env_example_ships_no_usable_secret() -> None:
    env = _settings(ROOT / ".env.example")
    for name in ("REDIS_PASSWORD", "POSTGRES_PASSWORD", "WORKER_DB_PASSWORD", "FLOWER_BASIC_AUTH"):
        assert env[name] == "", f"{name} must be empty in .env.example: compose refuses it so"


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_compose_refuses_the_example_env_until_secrets_are_set(tmp_path: Path) -> None:
    env = dict(os.environ)
    for name in ("REDIS_PASSWORD", "POSTGRES_PASSWORD", "WORKER_DB_PASSWORD", "FLOWER_BASIC_AUTH"):
        env.pop(name, None)
    refused = subprocess.run(
        ["docker-compose", "--env-file", ".env.example", "config", "-q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0 and "in .env" in refused.stderr

    generated = tmp_path / "env"
    subprocess.run(
        ["scripts/compose/make_env.sh", str(generated)], cwd=ROOT, check=True, capture_output=True
    )
    assert generated.stat().st_mode & 0o077 == 0  # readable by its owner only
    secrets = _settings(generated)
    assert len(secrets["REDIS_PASSWORD"]) == len(secrets["POSTGRES_PASSWORD"]) == 48
    assert len(secrets["WORKER_DB_PASSWORD"]) == 48
    assert len(secrets["CXRQ_PATIENT_SALT"]) == 48
    assert secrets["FLOWER_BASIC_AUTH"].startswith("admin:")
    subprocess.run(
        ["docker-compose", "--env-file", str(generated), "config", "-q"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )


def test_workers_log_in_as_a_role_that_does_not_own_the_tables(compose: dict) -> None:
    env = compose["x-cxrq-env"]

    def user(url: str) -> str:  # the login before the password's ${...}
        return url.split("://", 1)[1].split(":", 1)[0]

    assert user(env["CXRQ_WORKER_DATABASE_URL"]) == "cxrq_worker" != user(env["CXRQ_DATABASE_URL"])
    for name in ("migrate", "worker", "worker-gpu0", "worker-gpu1"):  # grants it, logs in as it
        assert "CXRQ_WORKER_DATABASE_URL" in compose["services"][name]["environment"]


def test_workers_scale_and_see_data_at_the_cli_path(compose: dict) -> None:
    worker = compose["services"]["worker"]
    assert "container_name" not in worker  # a fixed name would stop --scale worker=N
    # Same path inside as outside: the CLI resolves a path, every worker opens that path.
    data_mount = worker["volumes"][0]
    assert data_mount.startswith("${CXRQ_DATA_DIR:?") and data_mount.endswith(
        ":${CXRQ_DATA_DIR}:ro"
    )


WORKERS = ("worker", "worker-gpu0", "worker-gpu1")
PROMETHEUS_CONFIG = ROOT / "scripts" / "compose" / "prometheus" / "prometheus.yml"


def test_workers_serve_metrics_to_the_compose_network_only(compose: dict) -> None:
    """Scaled replicas cannot share a host port: /metrics is exposed inside the network, bound
    to all the container's addresses, and no worker publishes anything."""
    services = compose["services"]
    runs_worker = {n for n, s in services.items() if s.get("command", [None])[0] == "worker"}
    assert runs_worker == set(WORKERS)
    for name in WORKERS:
        service = services[name]
        assert "ports" not in service, name
        assert service["expose"] == ["9808"], name
        env = service["environment"]
        assert (env["CXRQ_METRICS_PORT"], env["CXRQ_METRICS_BIND"]) == ("9808", "0.0.0.0"), name
        assert env["CXRQ_BROKER_URL"] == services["flower"]["environment"]["CXRQ_BROKER_URL"]


def test_prometheus_scrapes_every_worker_service_by_dns(compose: dict) -> None:
    prometheus = compose["services"]["prometheus"]
    assert "profiles" not in prometheus  # up with the stack, beside Flower
    mount = "./scripts/compose/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro"
    assert mount in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    (job,) = config["scrape_configs"]
    assert "static_configs" not in job  # replicas come and go with --scale
    (dns,) = job["dns_sd_configs"]
    assert (dns["type"], dns["port"], dns["names"]) == ("A", 9808, list(WORKERS))
    relabel = job["relabel_configs"][0]
    assert relabel == {"source_labels": ["__meta_dns_name"], "target_label": "service"}


def test_prometheus_has_a_debian_stand_in_for_offline_machines() -> None:
    build = (ROOT / "scripts" / "compose" / "build_local_images.sh").read_text()
    assert "[prometheus]=cxrq-local/prometheus:2" in build
    assert '[prometheus]="prometheus"' in build  # the Debian package
    assert "for name in python redis postgres prometheus; do" in build
    dockerfile = ROOT / "scripts" / "compose" / "local-images" / "prometheus" / "Dockerfile"
    assert 'ENTRYPOINT ["/usr/bin/prometheus"]' in dockerfile.read_text()  # as prom/prometheus
    test = (ROOT / "scripts" / "compose" / "compose_test.sh").read_text()
    assert 'echo "PROMETHEUS_IMAGE=cxrq-local/prometheus:2"' in test


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_prometheus_config_passes_promtool() -> None:
    done = subprocess.run(
        ["promtool", "check", "config", str(PROMETHEUS_CONFIG)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_gpu_worker_reserves_its_own_card(compose: dict) -> None:
    """`count: 1` on one scaled service would put every replica on the same GPU."""
    services = compose["services"]
    for card in ("0", "1"):
        service = services[f"worker-gpu{card}"]
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "device_ids": [card], "capabilities": ["gpu"]}]
        assert service["profiles"] == ["gpu"]
        # The reserved card is the only one the container sees: cuda:0 inside.
        command = service["command"]
        assert command[command.index("--device") + 1] == "cuda:0"


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_compose_file_passes_the_schema() -> None:
    # .env.example with its empty secrets filled in, as a user's .env would be.
    secrets = {"REDIS_PASSWORD": "r", "POSTGRES_PASSWORD": "p", "FLOWER_BASIC_AUTH": "a:f"}
    secrets["WORKER_DB_PASSWORD"] = "w"
    for profiles in ([], ["--profile", "gpu", "--profile", "cli"]):
        subprocess.run(
            ["docker-compose", "--env-file", ".env.example", *profiles, "config", "-q"],
            cwd=ROOT,
            env={**os.environ, **secrets},
            check=True,
            capture_output=True,
        )


def _cxrq(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_migrate_then_worker_commands_serve_a_job(
    compose, postgres_url, broker_url, worker_role, tmp_path, monkeypatch
):
    """migrate, then a worker that logs in as its own role (as compose sets it): the grants
    `db upgrade` gives that role are enough to train and score."""
    services = compose["services"]
    assert services["migrate"]["command"] == ["db", "upgrade"]
    monkeypatch.setenv("CXRQ_WORKER_DATABASE_URL", worker_role)
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
        with session_scope() as s:
            actions = [e.action for e in audit_entries(s)]
            sessions = s.execute(text("SELECT DISTINCT usename FROM pg_stat_activity")).scalars()
            assert make_url(worker_role).username in set(sessions)  # the worker, logged in
        assert {"db-upgrade", "train", "model-stored", "score"} <= set(actions)
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
