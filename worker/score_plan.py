"""Cutting a folder into chunks of image paths; no torch here, so the CLI can plan cheaply."""

from __future__ import annotations

from pathlib import Path

from training.data.data_files import list_images_report

DEFAULT_CHUNK_SIZE = 256


def plan_folder(
    folder: str | Path, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> tuple[list[list[str]], list[tuple[str, str]]]:
    """(every image below folder as absolute path strings in chunks of chunk_size,
    [(folder that could not be read, reason)]).

    Symlinked files keep their path inside folder (their true label comes from it).
    """
    images, unreadable = list_images_report(Path(folder).resolve())
    paths = [str(p) for p in images]
    chunks = [paths[i : i + chunk_size] for i in range(0, len(paths), chunk_size)]
    return chunks, [(str(p), reason) for p, reason in unreadable]


def plan_chunks(folder: str | Path, chunk_size: int = DEFAULT_CHUNK_SIZE) -> list[list[str]]:
    return plan_folder(folder, chunk_size)[0]
