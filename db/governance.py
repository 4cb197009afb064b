"""The tables of running cxrq as a service: model aliases a person sets, and the append-only
audit trail. Beside db.schema (same Base), so the schema module stays the core tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.schema import Base, utcnow


class ModelAlias(Base):
    """A name a person gave a model (`cxrq model promote`): `default`, `challenger`, globally
    (site "") or for one site. Scoring without --model uses these, never a best-by-score pick."""

    __tablename__ = "model_aliases"
    __table_args__ = (UniqueConstraint("name", "site", name="uq_model_alias"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    site: Mapped[str] = mapped_column(String(128), default="")  # "": every site
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    set_by: Mapped[str] = mapped_column(String(64))
    why: Mapped[str] = mapped_column(Text)
    set_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEntry(Base):
    """Who did what, to which job, model, site or alias, when and why. Append-only: triggers
    refuse UPDATE and DELETE (migration 0010), and workers log in as a role that may only
    INSERT and SELECT here (`cxrq db upgrade` grants it)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32), index=True)  # train, score, promote, ...
    # No FKs: the trail outlives what it names, and a cascade would try to change it.
    job_id: Mapped[int | None] = mapped_column(Integer, index=True)
    model_id: Mapped[int | None] = mapped_column(Integer)
    site: Mapped[str | None] = mapped_column(String(128))
    alias: Mapped[str | None] = mapped_column(String(64))
    why: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
