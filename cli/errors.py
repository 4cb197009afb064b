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
        if getattr(type(exc), "user_error", False):
            raise click.ClickException(str(exc)) from None
        raise
