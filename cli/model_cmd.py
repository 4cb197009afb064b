"""`cxrq model promote|history`: a person names which model serves, and every change is kept."""

from __future__ import annotations

import click

from cli.errors import friendly_errors
from cli.output import emit, format_option

HISTORY_COLUMNS = ("at", "actor", "alias", "site", "from_model_id", "to_model_id", "why")


@click.group()
def model() -> None:
    """Named versions of models: promote one to an alias, see every alias change.

    Example: cxrq model promote 7 --as default --why "best AUC on our labelled set"
    """


@model.command("promote")
@click.argument("model_ref", metavar="MODEL")
@click.option("--as", "alias", required=True, help="the alias: default, challenger, ...")
@click.option("--site", default=None, help="set it for one site (a site alias wins there)")
@click.option("--why", required=True, help="the reason, kept in the audit trail")
def promote(model_ref: str, alias: str, site: str | None, why: str) -> None:
    """Point an alias at MODEL (an id or an alias; a name or arch that names one model).

    `cxrq score` without --model uses the `default` alias (a site's own first); training
    never moves an alias. A site alias needs the model calibrated for that site.

    Example: cxrq model promote 7 --as default --site st-marys --why "calibrated 2026-12-01"
    """
    with friendly_errors():
        from db.aliases import promote as set_alias
        from db.lookups import resolve_model
        from db.session import session_scope

        with session_scope() as s:
            found = resolve_model(s, model_ref)
            entry = set_alias(s, found, alias, site, why)
            before = entry.detail["from_model_id"]
            where = f" at site {site}" if site else ""
            moved = "set" if before is None else f"moved from model {before}"
            click.echo(f"alias {alias}{where} -> model {found.id} ({found.name}); {moved}")


@model.command("history")
@click.option("--alias", default=None, help="one alias's changes")
@click.option("--site", default=None, help="one site's changes")
@format_option
def history(alias: str | None, site: str | None, fmt: str) -> None:
    """Every alias change, newest first: when, who, which alias and site, from which model to
    which, and why (read from the audit trail, which cannot be altered).

    Example: cxrq model history --alias default
    """
    with friendly_errors():
        from db.aliases import alias_history
        from db.session import session_scope

        with session_scope() as s:
            rows = [
                {
                    "at": e.at.isoformat(timespec="seconds"),
                    "actor": e.actor,
                    "alias": e.alias,
                    "site": e.site or "(all)",
                    "from_model_id": e.detail.get("from_model_id"),
                    "to_model_id": e.detail.get("to_model_id"),
                    "why": e.why,
                }
                for e in alias_history(s, alias, site)
            ]
        emit(rows, fmt, HISTORY_COLUMNS)
