"""A terminal progress bar fed by (done, total, message) callbacks from jobs."""

from __future__ import annotations

import sys
from typing import Any

import click


class ProgressBar:
    """Created on the first callback, when the total is known; closes itself at the end."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._bar: Any = None
        self._done = 0

    def __call__(self, done: int, total: int, message: str) -> None:
        if self._bar is None or self._bar.length != total:
            self.close()
            self._bar = click.progressbar(
                length=max(total, 1),
                label=self.label,
                file=sys.stderr,
                show_pos=True,
                item_show_func=lambda item: item,
            )
            self._bar.__enter__()
            self._done = 0
        self._bar.update(max(done - self._done, 0), message)
        self._done = done
        if done >= total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
