"""Every CXRQ_* setting, read from the environment in this one place.

| variable | default | meaning |
| --- | --- | --- |
| CXRQ_DATABASE_URL | sqlite:///<user data dir>/cxrq.db | SQLAlchemy URL of the results database |
| CXRQ_WORKER_DATABASE_URL | unset (CXRQ_DATABASE_URL) | `cxrq worker`'s login: not the owner |
| CXRQ_ACTOR | the OS user | who the audit trail names for this command's changes |
| CXRQ_BROKER_URL | unset (embedded: run jobs in the CLI process) | Celery broker, e.g. redis://… |
| CXRQ_DATA | unset | default dataset folder for `cxrq train` |
| CXRQ_CACHE_DIR | <user cache dir> | local cache of model weights and decoded images |
| CXRQ_TORCH_THREADS | cores / worker concurrency | torch threads per worker pool process |
| CXRQ_WORKER_CONCURRENCY | 1 | pool processes of this worker (`cxrq worker` sets it for them) |
| CXRQ_DEVICE | auto (first GPU, else CPU) | torch device of training and scoring: cpu, cuda:N |
| CXRQ_PATIENT_SALT | unset (no patient hash) | key of the salted hash of a DICOM file's PatientID |
| CXRQ_VISIBILITY_TIMEOUT | 14400 (4 h) | seconds before the broker redelivers an unacked task |
| CXRQ_LEASE_SECONDS | 30 | a unit of work whose lease is not renewed for this long is re-sent |
| CXRQ_METRICS_PORT | 9808 | `cxrq worker`: port of its Prometheus /metrics; 0 turns metrics off |
| CXRQ_METRICS_BIND | 127.0.0.1 | `cxrq worker`: address of /metrics (compose: 0.0.0.0) |
| CXRQ_AE_TITLE | CXRQ | `cxrq listen`: this receiver's AE title |
| CXRQ_DICOM_PORT | 11112 | `cxrq listen`: the port it listens on |
| CXRQ_DICOM_ALLOW | unset (any) | `cxrq listen`: calling AE titles allowed, comma-separated |
| CXRQ_SEND_TO | unset | results are C-STOREd to AE@HOST:PORT |
| CXRQ_STOW_URL | unset | results are sent by STOW-RS to this DICOMweb URL |
| CXRQ_SPOOL_DIR | <user data dir>/spool | received instances, kept until their results are sent |
| CXRQ_SPOOL_MAX_BYTES | 10 GiB | a spool this full answers "out of resources" (0xA700) |
| CXRQ_SPOOL_RETENTION | 604800 (7 days) | seconds an instance is kept once its results are sent |
| CXRQ_STUDY_IDLE_SECONDS | 10 | a study with no new instance for this long is scored |
| CXRQ_MAX_ASSOCIATIONS | 10 | associations served at once |
| CXRQ_MAX_INSTANCE_BYTES | 512 MiB | a larger instance is refused |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from platformdirs import user_cache_dir, user_data_dir
from sqlalchemy.engine import make_url


@dataclass(frozen=True)
class Settings:
    database_url: str
    worker_database_url: str | None  # `cxrq worker`'s login, when not the owner's
    broker_url: str | None
    data_dir: str | None
    cache_dir: Path
    visibility_timeout: int
    lease_seconds: float
    worker_concurrency: int
    torch_threads: int | None  # None: the cores shared out between the pool processes
    # auto | cpu | cuda | cuda:N; resolved in the process that runs torch (training.devices)
    device: str
    # None: rows keep no patient hash, since an unsalted hash of a short hospital number is
    # undone by trying them all.
    patient_salt: str | None
    metrics_port: int  # 0: no metrics (worker.metrics stays off)
    # Loopback unless a container opens it to its network: the counts are for operators only.
    metrics_bind: str


def default_database_url() -> str:
    return f"sqlite:///{Path(user_data_dir('cxrq')) / 'cxrq.db'}"


def get_settings() -> Settings:
    """Read the environment now (not at import) so tests and subprocesses can change it."""
    return Settings(
        database_url=os.environ.get("CXRQ_DATABASE_URL") or default_database_url(),
        worker_database_url=os.environ.get("CXRQ_WORKER_DATABASE_URL") or None,
        broker_url=os.environ.get("CXRQ_BROKER_URL") or None,
        data_dir=os.environ.get("CXRQ_DATA") or None,
        cache_dir=Path(os.environ.get("CXRQ_CACHE_DIR") or user_cache_dir("cxrq")),
        visibility_timeout=int(os.environ.get("CXRQ_VISIBILITY_TIMEOUT") or 4 * 3600),
        lease_seconds=float(os.environ.get("CXRQ_LEASE_SECONDS") or 30),
        worker_concurrency=int(os.environ.get("CXRQ_WORKER_CONCURRENCY") or 1),
        torch_threads=int(threads) if (threads := os.environ.get("CXRQ_TORCH_THREADS")) else None,
        device=(os.environ.get("CXRQ_DEVICE") or "auto").strip(),
        patient_salt=os.environ.get("CXRQ_PATIENT_SALT") or None,
        metrics_port=int(os.environ.get("CXRQ_METRICS_PORT") or 9808),
        metrics_bind=(os.environ.get("CXRQ_METRICS_BIND") or "127.0.0.1").strip(),
    )


@dataclass(frozen=True)
class GatewaySettings:
    """`cxrq listen`'s settings (the command's options override them)."""

    ae_title: str
    port: int
    allow: tuple[str, ...]  # empty: any calling AE title
    send_to: str | None
    stow_url: str | None
    spool_dir: Path
    spool_max_bytes: int
    spool_retention: float
    study_idle_seconds: float
    max_associations: int
    max_instance_bytes: int


def gateway_settings() -> GatewaySettings:
    env = os.environ.get
    allow = tuple(a.strip() for a in (env("CXRQ_DICOM_ALLOW") or "").split(",") if a.strip())
    return GatewaySettings(
        ae_title=env("CXRQ_AE_TITLE") or "CXRQ",
        port=int(env("CXRQ_DICOM_PORT") or 11112),
        allow=allow,
        send_to=env("CXRQ_SEND_TO") or None,
        stow_url=env("CXRQ_STOW_URL") or None,
        spool_dir=Path(env("CXRQ_SPOOL_DIR") or Path(user_data_dir("cxrq")) / "spool"),
        spool_max_bytes=int(env("CXRQ_SPOOL_MAX_BYTES") or 10 * 2**30),
        spool_retention=float(env("CXRQ_SPOOL_RETENTION") or 7 * 86400),
        study_idle_seconds=float(env("CXRQ_STUDY_IDLE_SECONDS") or 10),
        max_associations=int(env("CXRQ_MAX_ASSOCIATIONS") or 10),
        max_instance_bytes=int(env("CXRQ_MAX_INSTANCE_BYTES") or 512 * 2**20),
    )


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, safe to print."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL (a broker URL, say): mask by hand
        scheme, sep, rest = url.partition("://")
        creds, at, host = rest.rpartition("@")
        if not sep or not at or ":" not in creds:
            return url
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
