"""Riding out a database outage: retry a step with back-off instead of losing finished work."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from db.session import DatabaseError

T = TypeVar("T")

DB_OUTAGE_BUDGET_S = 900.0  # how long a worker keeps finished work waiting for the database


def backoff(attempt: int) -> float:
    """Seconds before retry number `attempt` (0-based): 1, 2, 4, ... capped at 30."""
    return float(min(30, 2**attempt))


def with_db_retry(step: Callable[[], T], budget_s: float = DB_OUTAGE_BUDGET_S) -> T:
    """step(), retried while the database is unreachable, for up to budget_s seconds."""
    deadline, attempt = time.monotonic() + budget_s, 0
    while True:
        try:
            return step()
        except DatabaseError:
            wait = backoff(attempt)
            if time.monotonic() + wait > deadline:
                raise
            time.sleep(wait)
            attempt += 1
