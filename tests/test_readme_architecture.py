"""The README's architecture table names every module of every package it lists, and no other."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _table() -> dict[str, set[str]]:
    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        match = re.match(r"\| `([a-z_/]+/)` \|.*\| (`.*`) \|$", line)
        if match:
            rows[match.group(1)] = set(re.findall(r"`([a-z_0-9]+)`", match.group(2)))
    return rows


def test_the_readme_architecture_table_agrees_with_the_tree() -> None:
    table = _table()
    assert {"training/data/", "worker/", "db/", "cli/"} <= set(table)
    for package, listed in table.items():
        modules = {p.stem for p in (ROOT / package).glob("*.py") if p.stem != "__init__"}
        assert listed == modules, f"{package}: README lists {sorted(listed ^ modules)} wrongly"
    subpackages = {f"training/{p.parent.name}/" for p in (ROOT / "training").glob("*/__init__.py")}
    assert subpackages <= set(table), "a training/ subpackage is missing from the README"
