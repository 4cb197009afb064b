"""Cutting a folder into chunks of image paths; no torch here, so the CLI can plan cheaply."""

from __future__ import annotations

from pathlib import Path

from training.data_files import list_images

DEFAULT_CHUNK_SIZE = 256


def plan_chunks(folder: str | Path, chunk_size: int = DEFAULT_CHUNK_SIZE) -> list[list[str]]:
    """Every image below folder as absolute path strings, in chunks of chunk_size.

    Symlinked files keep their path inside folder (their true label comes from it).
    """
    paths = [str(p) for p in list_images(Path(folder).resolve())]
    return [paths[i : i + chunk_size] for i in range(0, len(paths), chunk_size)]
