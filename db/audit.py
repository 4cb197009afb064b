"""The audit trail: who did what, to which job, model, site or alias, when and why.

from db.audit import record
record(session, "promote", model_id=5, alias="default", why="beat model 3 on site A")

Every command that writes a row records one entry in the same transaction as its rows, so a
change and its entry land together or not at all. The table refuses UPDATE and DELETE (its
triggers, migration 0010); on PostgreSQL workers log in as a role that can only add to it.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.governance import AuditEntry

ACTOR_LIMIT = 64  # the column's width


def current_actor() -> str:
    """CXRQ_ACTOR when set (a service account, a person behind a shared login), else the OS
    user running the command."""
    actor = (os.environ.get("CXRQ_ACTOR") or "").strip()
    if not actor:
        try:
            actor = getpass.getuser()
        except (KeyError, OSError):  # a container user with no passwd entry
            actor = f"uid:{os.getuid()}"
    return actor[:ACTOR_LIMIT]


def record(
    session: Session,
    action: str,
    *,
    job_id: int | None = None,
    model_id: int | None = None,
    site: str | None = None,
    alias: str | None = None,
    why: str | None = None,
    detail: dict[str, Any] | None = None,
    actor: str | None = None,
) -> AuditEntry:
    """Add one entry to the trail (committed with the caller's session)."""
    entry = AuditEntry(
        actor=(actor or current_actor())[:ACTOR_LIMIT],
        action=action,
        job_id=job_id,
        model_id=model_id,
        site=site or None,
        alias=alias,
        why=why,
        detail=detail or {},
    )
    session.add(entry)
    session.flush()
    return entry


@dataclass(frozen=True)
class AuditFilter:
    action: str | None = None
    actor: str | None = None
    job_id: int | None = None
    model_id: int | None = None
    site: str | None = None
    since: datetime | None = None
    limit: int = 200


def audit_entries(session: Session, where: AuditFilter = AuditFilter()) -> list[AuditEntry]:
    """The newest entries first, narrowed by the filter."""
    query = select(AuditEntry)
    for column, value in (
        (AuditEntry.action, where.action),
        (AuditEntry.actor, where.actor),
        (AuditEntry.job_id, where.job_id),
        (AuditEntry.model_id, where.model_id),
        (AuditEntry.site, where.site),
    ):
        if value is not None:
            query = query.where(column == value)
    if where.since is not None:
        query = query.where(AuditEntry.at >= where.since)
    query = query.order_by(AuditEntry.id.desc()).limit(where.limit)
    return list(session.scalars(query))
