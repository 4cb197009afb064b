"""The reaper: sends again the work that no live worker holds, and closes jobs that are over.

Every `cxrq worker` runs it in a thread of its main process, each lease/3 seconds:
- a unit whose lease ran out (its worker was killed, its machine died) is sent again, so a
  crashed worker's chunk is back in the queue within about 1.3 leases (40 s by default), where
  the broker's own redelivery waits for the visibility timeout (hours, so a long training is never
  handed out twice);
- a unit sent a lease ago and never claimed, while its queue is empty, had its message lost
  (Redis restarted without persistence): it is sent again;
- a job whose units are all done, or that was cancelled with nothing running, is closed (a
  worker that lost the database at that moment left it open).
Several reapers may run at once: each re-send is won by one conditional update, and duplicate
messages are harmless because a unit runs only under its lease.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from db import work
from db.schema import Job
from db.session import session_scope
from db.settings import get_settings
from worker import metrics

log = logging.getLogger("cxrq.reaper")

SendFn = Callable[[str, int, list[int]], None]  # (job kind, job id, unit ids)


def _resend(send: SendFn, units: list, why: str) -> int:
    sent = 0
    for unit, kind in units:
        with session_scope() as s:
            won = work.take_for_resend(s, unit)
        if won:
            send(kind, unit.job_id, [unit.id])
            log.warning("job %s: unit %s sent again (%s)", unit.job_id, unit.id, why)
            sent += 1
    return sent


def settle_job(job_id: int) -> None:
    with session_scope() as s:
        job = s.get(Job, job_id)
        kind, cancel = job.kind, job.cancel_requested
        if kind != "score":
            if cancel:
                work.cancel_if_idle(s, job, "cancelled")
            return
    from worker.settle import settle

    settle(job_id)


def reap_once(send: SendFn, queue_is_empty: Callable[[str], bool]) -> int:
    """One pass; returns how many units were sent again."""
    lease = get_settings().lease_seconds
    with session_scope() as s:
        expired, lost = work.expired_units(s), work.lost_units(s, grace_s=lease)
        to_settle = work.jobs_to_settle(s)
    sent = _resend(send, expired, "its lease ran out: the worker holding it stopped")
    metrics.count_resends("lease_expired", sent)
    empty = {kind: queue_is_empty(kind) for kind in {kind for _, kind in lost}}
    lost = [(unit, kind) for unit, kind in lost if empty[kind]]
    resent = _resend(send, lost, "never claimed and its queue is empty: the message was lost")
    metrics.count_resends("message_lost", resent)
    sent += resent
    for job_id in to_settle:
        settle_job(job_id)
    return sent


def run_forever(send: SendFn, queue_is_empty: Callable[[str], bool], stop: threading.Event) -> None:
    interval = get_settings().lease_seconds / 3
    while not stop.wait(interval):
        try:
            reap_once(send, queue_is_empty)
        except Exception:  # a database or broker blip: the next pass tries again
            log.exception("reaper pass failed")
