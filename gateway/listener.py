"""`cxrq listen`'s process: the receiver, the studies it groups, and one thread that turns closed
studies into jobs and keeps the outbox and the spool moving.

    listener = Listener(ListenConfig(spool_dir=Path("/var/lib/cxrq/spool"), port=11112))
    listener.start()   # serving; listener.stop() closes open studies and stops
    listener.wait()

On start it scores what a stopped listener left: spooled instances no job took (their study
was still open) and, in embedded mode, jobs it had begun. In embedded mode the listener runs
the jobs and sends their results; in queued mode the workers do, and the listener still sends
anything overdue (a PACS that came back, a worker that died) so nothing waits on one process.
"""

from __future__ import annotations

import logging
import queue
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from db.dicom_rows import open_gateway_jobs, retention_due
from db.schema import utcnow
from db.session import session_scope
from db.settings import get_settings
from gateway import outbox
from gateway.intake import IntakeConfig, resume_embedded, spooled_studies, submit_study
from gateway.receiver import Receiver, ReceiverLimits
from gateway.spool import Spool
from gateway.studies import Received, Studies
from worker import dispatch

log = logging.getLogger("cxrq.gateway")
TICK_S = 0.5  # how often idle studies, the outbox and the spool are looked at


@dataclass(frozen=True)
class ListenConfig:
    spool_dir: Path
    ae_title: str = "CXRQ"
    host: str = "0.0.0.0"
    port: int = 11112
    limits: ReceiverLimits = field(default_factory=ReceiverLimits)
    intake: IntakeConfig = field(default_factory=IntakeConfig)
    spool_max_bytes: int = 10 * 2**30
    spool_retention: float = 7 * 86400
    study_idle_s: float = 10.0


class Listener:
    def __init__(self, config: ListenConfig) -> None:
        self.config = config
        self.spool = Spool(config.spool_dir, config.spool_max_bytes)
        self.studies = Studies(config.study_idle_s, self._closed)
        self.receiver = Receiver(self.spool, self.studies, config.limits)
        self._closed_studies: queue.Queue[tuple[str, list[Received]] | None] = queue.Queue()
        self._stop = threading.Event()
        self._server = None
        self._thread: threading.Thread | None = None
        self._old_tempdir: str | None = None

    def _closed(self, study_uid: str, batch: list[Received]) -> None:
        self._closed_studies.put((study_uid, batch))

    def start(self) -> None:
        self.spool.clear_tmp()
        # pynetdicom writes each received data set to a temporary file: put it in the spool, on
        # the same filesystem, so keeping it is a rename, not a copy.
        self._old_tempdir, tempfile.tempdir = tempfile.tempdir, str(self.spool.tmp)
        for study_uid, batch in spooled_studies(self.spool).items():
            log.info("study %s: %d spooled instance(s) left unscored", study_uid, len(batch))
            self._closed(study_uid, batch)
        if dispatch.is_queued():
            self._resend_open_jobs()
        self._thread = threading.Thread(target=self._run, name="cxrq-intake", daemon=True)
        self._thread.start()
        cfg = self.config
        self._server = self.receiver.start(cfg.ae_title, cfg.host, cfg.port)
        log.info("listening as %s on %s:%d", cfg.ae_title, cfg.host, cfg.port)

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self.config.port

    def stop(self) -> None:
        """Stop receiving, score the studies still open, and stop the intake thread."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self.studies.close_all()
        self._closed_studies.put(None)
        if self._thread is not None:
            self._thread.join()
        tempfile.tempdir = self._old_tempdir

    def wait(self) -> None:
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(1.0)

    def _run(self) -> None:
        last_resume, last_sweep = 0.0, 0.0
        while True:
            try:
                item = self._closed_studies.get(timeout=TICK_S)
            except queue.Empty:
                item = ()
            if item is None:
                return
            try:
                if item:
                    self._score(*item)
                self.studies.close_idle()
                now = time.monotonic()
                if not dispatch.is_queued() and now - last_resume > get_settings().lease_seconds:
                    last_resume = now
                    self._resume()
                if now - last_sweep > 5 * TICK_S:
                    last_sweep = now
                    if self.config.intake.destinations:
                        outbox.queue_ended()
                        outbox.deliver()
                    self._expire_spool()
            except Exception:  # the intake thread must outlive any one study's failure
                log.exception("intake failed; it goes on with the next study")

    def _score(self, study_uid: str, batch: list[Received]) -> None:
        job_id = submit_study(study_uid, batch, self.config.intake)
        if job_id is None or dispatch.is_queued():
            return
        result = dispatch.run_scoring(job_id)
        log.info("job %d %s", job_id, result["state"])
        outbox.deliver_job(job_id)

    def _resend_open_jobs(self) -> None:
        """Queued mode: a listener stopped between creating a job and queueing it left units no
        worker was sent; send every open job's waiting units again (a unit runs once however
        many messages arrive)."""
        with session_scope() as s:
            jobs = open_gateway_jobs(s)
        for job_id in jobs:
            dispatch.submit(job_id, "score")

    def _resume(self) -> None:
        with session_scope() as s:
            jobs = open_gateway_jobs(s)
        resume_embedded(jobs)
        for job_id in jobs:
            outbox.deliver_job(job_id)

    def _expire_spool(self) -> None:
        cutoff = utcnow() - timedelta(seconds=self.config.spool_retention)
        with session_scope() as s:
            for row in retention_due(s, cutoff):
                self.spool.delete(Path(row.path))
                row.deleted_at = utcnow()
