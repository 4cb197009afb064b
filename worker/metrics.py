"""Prometheus metrics of a queued worker, for operators (Flower keeps the queue view).

    CXRQ_METRICS_PORT=9808 cxrq worker        # then: curl http://127.0.0.1:9808/metrics

A Celery worker is a main process and a pool of forked children, so prometheus_client runs in
its multiprocess mode: every process writes its samples to files in a folder made fresh for each
worker start (PROMETHEUS_MULTIPROC_DIR, which must be set before prometheus_client is imported;
files left by an earlier run would add their counts again), and the main process's endpoint
adds them up. Until `prepare` runs, as in embedded mode, tests and `cxrq --help`, every call here
is a no-op and prometheus_client is never imported. Counting never fails the work it counts.

| metric | labels | counts |
| --- | --- | --- |
| cxrq_images_scored_total | scorer (model, ensemble) | images of finished units, errors too |
| cxrq_image_errors_total | scorer | of those, the images stored with an error row |
| cxrq_review_flags_total | reason | answers flagged for review (a row may have several) |
| cxrq_unit_seconds | (histogram) | a score unit: scoring and storing its images |
| cxrq_lease_renewals_total | outcome (renewed, lost) | lease renewals of running units |
| cxrq_reaper_resends_total | reason (lease_expired, message_lost) | units sent again |
| cxrq_drift_verdicts_total | verdict | drift verdicts of settled jobs |
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from types import SimpleNamespace
from typing import Any, TypeVar

log = logging.getLogger("cxrq.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own variable
# A unit is a chunk of images: well under a second on a GPU, minutes on a slow CPU.
UNIT_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

_metrics: SimpleNamespace | None = None  # None: off (embedded mode, or CXRQ_METRICS_PORT=0)
_folder: str | None = None
# Held by every call and across a fork: prometheus_client's own lock, taken by a thread of the
# main process (the reaper's counts) at the moment the pool forks a new child, would stay taken
# in that child for good.
_lock = threading.Lock()
_failed: set[str] = set()

F = TypeVar("F", bound=Callable[..., None])


def _safe(fn: F) -> F:
    """A no-op while metrics are off; a failure is logged, never raised into the work."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        if _metrics is None:
            return
        try:
            with _lock:
                fn(*args, **kwargs)
        except Exception:  # said once per call site: a broken count must not flood the log
            level = logging.DEBUG if fn.__name__ in _failed else logging.WARNING
            _failed.add(fn.__name__)
            log.log(level, "metrics: %s failed", fn.__name__, exc_info=True)

    return wrapper  # type: ignore[return-value]


def enabled() -> bool:
    return _metrics is not None


def prepare() -> str | None:
    """Turn metrics on in the worker's main process, before its pool forks (the children inherit
    them); returns the multiprocess folder, or None when prometheus_client was already imported
    in single-process mode, where counts of the children would be lost."""
    global _metrics, _folder
    if _metrics is not None:
        return _folder
    if "prometheus_client" in sys.modules and not os.environ.get(MULTIPROC_ENV):
        log.warning("metrics off: prometheus_client was imported before the worker set it up")
        return None
    _folder = tempfile.mkdtemp(prefix="cxrq-metrics-")
    os.environ[MULTIPROC_ENV] = _folder
    atexit.register(_remove_folder, _folder, os.getpid())
    os.register_at_fork(
        before=_lock.acquire, after_in_parent=_lock.release, after_in_child=_lock.release
    )
    _metrics = _create()
    return _folder


def _create() -> SimpleNamespace:
    from prometheus_client import Counter, Histogram

    return SimpleNamespace(
        images=Counter("cxrq_images_scored", "Images of finished score units", ["scorer"]),
        errors=Counter("cxrq_image_errors", "Images stored with an error row", ["scorer"]),
        flags=Counter("cxrq_review_flags", "Answers flagged for review", ["reason"]),
        unit_seconds=Histogram(
            "cxrq_unit_seconds",
            "Score units: scoring and storing their images",
            buckets=UNIT_BUCKETS,
        ),
        renewals=Counter("cxrq_lease_renewals", "Lease renewals of running units", ["outcome"]),
        resends=Counter("cxrq_reaper_resends", "Units the reaper sent again", ["reason"]),
        drift=Counter("cxrq_drift_verdicts", "Drift verdicts of settled jobs", ["verdict"]),
    )


def _remove_folder(folder: str, owner: int) -> None:
    if os.getpid() == owner:  # a forked child inherits the hook; the folder is the parent's
        shutil.rmtree(folder, ignore_errors=True)


def serve(port: int, bind: str) -> bool:
    """Serve /metrics, the sum over every process of this worker, from a thread of the calling
    process (the main one, once the pool has forked); False when the port cannot be had."""
    if _metrics is None or not port:
        return False
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=_folder)
    try:
        start_http_server(port, addr=bind, registry=registry)
    except OSError as exc:  # another worker on this host holds it: score on without metrics
        log.warning("metrics: cannot serve on %s:%s (%s); set CXRQ_METRICS_PORT", bind, port, exc)
        return False
    log.info("metrics: serving http://%s:%s/metrics", bind, port)
    return True


@_safe
def process_exited(pid: int) -> None:
    """A pool process is ending: its live-gauge files go (its counters stay in the sums)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, path=_folder)


def _scorer_kind(key: str) -> str:
    return key.partition(":")[0] or "model"  # 'model:3' -> model; ids would explode the series


@_safe
def count_unit(key: str, rows: Iterable[Mapping[str, Any]], seconds: float | None = None) -> None:
    """A score unit stored: the answers of the job's scorer `key` (an ensemble's members' and
    a shadow model's rows are beside them, not counted) and how long it took (None: a unit that
    failed for good)."""
    answers = [r for r in rows if r.get("scorer") == key and not r.get("shadow")]
    kind = _scorer_kind(key)
    _metrics.images.labels(kind).inc(len(answers))
    _metrics.errors.labels(kind).inc(sum(1 for r in answers if r.get("error")))
    for row in answers:
        for reason in filter(None, (row.get("review_reasons") or "").split(",")):
            _metrics.flags.labels(reason).inc()
    if seconds is not None:
        _metrics.unit_seconds.observe(seconds)


@_safe
def count_renewal(renewed: bool) -> None:
    _metrics.renewals.labels("renewed" if renewed else "lost").inc()


@_safe
def count_resends(reason: str, n: int) -> None:
    if n:
        _metrics.resends.labels(reason).inc(n)


@_safe
def count_drift_verdict(verdict: str) -> None:
    """One drift verdict reached when a job settles."""
    _metrics.drift.labels(verdict).inc()
