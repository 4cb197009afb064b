"""Model aliases: the names a person gives models (`cxrq model promote`), and their history.

    with session_scope() as s:
        promote(s, model, "default", site=None, why="best external AUC")  # audited
        target = alias_target(s, "default", site="st-marys")  # the site's, else the global one

An alias is global (site "") or for one site; a site alias wins over the global one of the
same name at that site. Scoring without --model uses `default`: nothing is ever picked by a
score, and training never moves an alias. Every change is an audit entry (action "promote"),
which is also the alias history.
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.audit import AuditFilter, audit_entries, current_actor, record
from db.governance import AuditEntry, ModelAlias
from db.schema import Ensemble, Model, utcnow
from db.sites import profile_for

DEFAULT = "default"
PROMOTE = "promote"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


class AliasError(ValueError):
    """An alias that cannot be set; str() is one line that says what to do."""

    user_error = True


def alias_target(session: Session, name: str, site: str | None = None) -> ModelAlias | None:
    """The alias `name` at `site` (its own first, then the global one); None when unset."""
    scopes = [site, ""] if site else [""]
    for scope in scopes:
        found = session.scalars(
            select(ModelAlias).where(ModelAlias.name == name, ModelAlias.site == scope)
        ).first()
        if found is not None:
            return found
    return None


def aliases(session: Session) -> list[ModelAlias]:
    return list(session.scalars(select(ModelAlias).order_by(ModelAlias.name, ModelAlias.site)))


def aliases_of(session: Session, model_id: int) -> list[str]:
    """'default', 'challenger@st-marys': the aliases that name a model now."""
    rows = session.scalars(select(ModelAlias).where(ModelAlias.model_id == model_id))
    return [a.name + (f"@{a.site}" if a.site else "") for a in rows]


def check_alias_name(session: Session, name: str) -> None:
    """AliasError unless `name` can be an alias: not a number, not a model's, arch's or
    ensemble's name (a reference must never mean two things)."""
    if not _NAME.match(name):
        raise AliasError(
            f"alias {name!r} must start with a letter and hold only letters, digits, '.', "
            "'_' or '-' (64 at most)"
        )
    if session.scalars(select(Model.id).where(Model.name == name)).first() is not None:
        raise AliasError(f"{name!r} is a model's name; choose another alias name")
    if session.scalars(select(Model.id).where(Model.arch == name)).first() is not None:
        raise AliasError(f"{name!r} is an arch; choose another alias name")
    if session.scalars(select(Ensemble.id).where(Ensemble.name == name)).first() is not None:
        raise AliasError(f"{name!r} is an ensemble's name; choose another alias name")


def check_not_alias(session: Session, name: str) -> None:
    """AliasError when a new model would take an alias's name."""
    if session.scalars(select(ModelAlias.id).where(ModelAlias.name == name)).first():
        raise AliasError(f"{name!r} is an alias (`cxrq model history`); name the model otherwise")


def promote(session: Session, model: Model, name: str, site: str | None, why: str) -> AuditEntry:
    """Point alias `name` (at `site`, or globally) at `model`, with an audit entry."""
    if not why.strip():
        raise AliasError("say why with --why: the reason is kept in the audit trail")
    check_alias_name(session, name)
    if model.site is not None:
        raise AliasError(
            f"model {model.id} is adapted to site {model.site}; it scores only through that "
            f"site's profile: promote its parent, model {model.parent_id}"
        )
    if site:
        profile_for(session, site, model)  # SiteError: this model was not calibrated there
    scope = site or ""
    alias = session.scalars(
        select(ModelAlias).where(ModelAlias.name == name, ModelAlias.site == scope)
    ).first()
    previous = None if alias is None else alias.model_id
    if previous == model.id:
        raise AliasError(f"alias {name} already names model {model.id}")
    actor = current_actor()
    if alias is None:
        alias = ModelAlias(name=name, site=scope, model_id=model.id, set_by=actor, why=why)
        session.add(alias)
    else:
        alias.model_id, alias.set_by, alias.why, alias.set_at = model.id, actor, why, utcnow()
    return record(
        session,
        PROMOTE,
        model_id=model.id,
        site=site,
        alias=name,
        why=why,
        detail={"from_model_id": previous, "to_model_id": model.id},
        actor=actor,
    )


def alias_history(
    session: Session, name: str | None = None, site: str | None = None, limit: int = 200
) -> list[AuditEntry]:
    """Every alias change, newest first (from the audit trail, which cannot be altered)."""
    entries = audit_entries(session, AuditFilter(action=PROMOTE, site=site, limit=limit))
    return [e for e in entries if name is None or e.alias == name]
