"""Turning the errors a user can fix into one line and a non-zero exit, without a traceback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

# (module, class): looked up only in modules already imported, so naming them costs nothing
# at start-up; an error class whose module was never imported cannot have been raised.
_USER_ERRORS = (
    ("db.session", "DatabaseError"),
    ("db.store", "NotFoundError"),
    ("training.data_files", "DataLayoutError"),
    ("training.models", "UnknownModelError"),
    ("training.config", "UnknownPresetError"),
    ("training.train_loop", "TrainingDataError"),
    ("worker.dispatch", "BrokerError"),
)


def _user_error_types() -> tuple[type[BaseException], ...]:
    found = []
    for module, name in _USER_ERRORS:
        if module in sys.modules and hasattr(sys.modules[module], name):
            found.append(getattr(sys.modules[module], name))
    return tuple(found)


@contextmanager
def friendly_errors() -> Iterator[None]:
    try:
        yield
    except click.ClickException:
        raise
    except Exception as exc:
        if isinstance(exc, _user_error_types()):
            raise click.ClickException(str(exc)) from None
        raise
