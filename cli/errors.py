"""Turning the errors a user can fix into one line and a non-zero exit, without a traceback.

Each package marks such exception classes with `user_error = True`; the CLI needs no list of
them, so a new one cannot be forgotten here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click


@contextmanager
def friendly_errors() -> Iterator[None]:
    try:
        yield
    except click.ClickException:
        raise
    except Exception as exc:
        if not getattr(type(exc), "user_error", False):
            raise
        raise click.ClickException(_not_found(exc) or str(exc)) from None


# A command's id argument -> what to say when it is past the database's integer range.
_NOT_FOUND = {
    "job_ref": "no job {}; `cxrq report jobs` lists them",
    "model_ref": "no model with id {}; `cxrq report models` lists them",
}


def _not_found(exc: Exception) -> str | None:
    """The "no job N" line when a command's JOB_REF (or model id) was a number past the
    database's integer range: the database layer only knows that some number was, not which."""
    if not getattr(type(exc), "out_of_range", False):
        return None
    ctx = click.get_current_context(silent=True)
    for param, message in _NOT_FOUND.items():
        ref = ctx.params.get(param) if ctx else None
        if isinstance(ref, str) and ref.isdigit():
            return message.format(ref)
    return None
