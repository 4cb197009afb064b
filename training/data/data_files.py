"""Finding labelled X-rays on disk and the patient each one belongs to.

Layouts understood (class folders are matched case-insensitively):
    ROOT/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg   (any split may be missing)
    ROOT/{NORMAL,PNEUMONIA}/*.jpeg                     (treated as the train split)
Images are JPEG, PNG or DICOM (.dcm, .dicom, or no extension and the DICM marker).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from training.data.dicom import is_dicom
from training.data.dicom_identity import header_patient_id

CLASSES = ("NORMAL", "PNEUMONIA")  # index 1 is the positive class
KIND_LABELS = ("BACTERIAL", "VIRAL")  # kind codes 0 and 1 (kind_code)
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
SPLITS = ("train", "val", "test")

_PERSON = re.compile(r"^(person\d+)_", re.IGNORECASE)
# NORMAL files are IM-0553-0001.jpeg, IM-0553-0001-0002.jpeg or NORMAL2-IM-0553-0001.jpeg.
# The NORMAL2- batch reuses IM numbers; we group both under one id because over-grouping
# can only make validation stricter, while under-grouping could leak a patient.
_IM = re.compile(r"(?:^|-)IM-(\d+)", re.IGNORECASE)


class DataLayoutError(ValueError):
    """The folder is not a dataset cxrq understands."""

    user_error = True  # the CLI prints str(exc) as one line, no traceback


@dataclass(frozen=True)
class LabeledImage:
    path: str
    label: int  # 0 = NORMAL, 1 = PNEUMONIA
    patient: str


def patient_id(path: str | Path) -> str:
    """Patient key: a DICOM's PatientID when its header has one, else parsed from the file name;
    a name with no patient is its own patient. A header ID is kept as a hash, so a split or a
    log line holds no ID in the clear (nothing stores these keys)."""
    if is_dicom(path) and (header_id := header_patient_id(path)):
        return "dicom:" + hashlib.sha256(header_id.encode()).hexdigest()[:24]
    name = Path(path).name
    if m := _PERSON.match(name):
        return m.group(1).lower()
    if m := _IM.search(name):
        return f"im-{int(m.group(1))}"
    return f"file:{name}"


_KIND = re.compile(r"_(bacteria|virus)_", re.IGNORECASE)


def pneumonia_kind(path: str | Path) -> str | None:
    """'bacteria' or 'virus' from a `personN_bacteria_M` / `personN_virus_M` name, else None."""
    m = _KIND.search(Path(path).name)
    return m.group(1).lower() if m else None


KIND_CODES = {"bacteria": 0, "virus": 1}  # -1: not a pneumonia of known kind


def kind_code(path: str | Path, label: int) -> int:
    """0 bacterial, 1 viral for a PNEUMONIA image (label 1) whose name gives its kind; else -1."""
    return KIND_CODES.get(pneumonia_kind(path), -1) if label == 1 else -1


def is_image_file(path: Path) -> bool:
    """JPEG/PNG by extension, DICOM by extension or, without one, by its DICM marker."""
    if path.name.startswith("."):
        return False
    return path.suffix.lower() in IMAGE_SUFFIXES or is_dicom(path)


def list_images(folder: str | Path) -> list[Path]:
    """Every image file below folder, recursively, sorted, following symlinks (see
    list_images_report, which also names the folders that could not be read)."""
    return list_images_report(folder)[0]


def list_images_report(folder: str | Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(every image file below folder, sorted; [(folder it could not read, one-line reason)]).

    Symlinked folders and files are followed, yet each real folder is walked once (a `loop ->
    ..` link adds nothing) and each real file is listed once, under the first path that
    reaches it in the walk's sorted order: labels come from that path, so a file linked into
    NORMAL/ keeps the NORMAL label. Hard links are separate files and are all listed."""
    unreadable: list[tuple[Path, str]] = []

    def skipped(exc: OSError) -> None:
        unreadable.append((Path(exc.filename or folder), exc.strerror or str(exc)))

    seen_dirs: set[tuple[int, int]] = set()
    with contextlib.suppress(OSError):  # an unreadable root is reported by os.walk below
        seen_dirs.add(_dir_key(folder))
    seen_files: set[str] = set()
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, onerror=skipped, followlinks=True):
        dirnames[:] = [d for d in sorted(dirnames) if _first_visit(dirpath, d, seen_dirs, skipped)]
        real_dir = os.path.realpath(dirpath)
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if not is_image_file(Path(path)):
                continue
            real = os.path.realpath(path) if os.path.islink(path) else os.path.join(real_dir, name)
            if real not in seen_files:
                seen_files.add(real)
                found.append(Path(path))
    return sorted(found), unreadable


def _dir_key(path: str | Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _first_visit(
    parent: str, name: str, seen: set[tuple[int, int]], skipped: Callable[[OSError], None]
) -> bool:
    """True the first time the walk reaches this real folder, by whatever path."""
    try:
        key = _dir_key(os.path.join(parent, name))
    except OSError as exc:
        skipped(exc)
        return False
    if key in seen:
        return False
    seen.add(key)
    return True


def label_from_path(path: str | Path) -> int | None:
    """1/0 when a folder on the path is PNEUMONIA/NORMAL (the innermost one wins), else None."""
    for part in reversed(Path(path).parts[:-1]):
        upper = part.upper()
        if upper in CLASSES:
            return CLASSES.index(upper)
    return None


def folder_label(path: Path, folder: Path) -> str | None:
    """NORMAL/PNEUMONIA when the scored folder, or a folder inside it, is named so."""
    inside = path.relative_to(folder.parent) if path.is_relative_to(folder.parent) else path
    label = label_from_path(inside)
    return None if label is None else CLASSES[label]


def _class_dirs(folder: Path) -> dict[int, Path]:
    dirs = {}
    for child in folder.iterdir() if folder.is_dir() else []:
        if child.is_dir() and child.name.upper() in CLASSES:
            dirs[CLASSES.index(child.name.upper())] = child
    return dirs


def _labeled_images(folder: Path) -> list[LabeledImage]:
    items = []
    for label, class_dir in sorted(_class_dirs(folder).items()):
        for path in list_images(class_dir):
            items.append(LabeledImage(str(path.resolve()), label, patient_id(path)))
    return items


def find_splits(root: str | Path) -> dict[str, list[LabeledImage]]:
    """Map split name -> labelled images; raise DataLayoutError with a fix-it message."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataLayoutError(f"data folder {root} does not exist; pass --data or set CXRQ_DATA")
    split_dirs = {s: root / s for s in SPLITS if (root / s).is_dir()}
    if not split_dirs:
        if not _class_dirs(root):
            raise DataLayoutError(
                f"{root} holds neither train/ nor NORMAL/ and PNEUMONIA/ folders; "
                "expected ROOT/train/{NORMAL,PNEUMONIA}/*.jpeg"
            )
        split_dirs = {"train": root}
    splits = {name: _labeled_images(folder) for name, folder in split_dirs.items()}
    train = splits.get("train", [])
    if {item.label for item in train} != {0, 1}:
        raise DataLayoutError(
            f"{split_dirs.get('train', root)} needs images in both NORMAL/ and PNEUMONIA/"
        )
    return splits


def fingerprint(items: list[LabeledImage]) -> str:
    """A hash of file names, sizes and labels: stable when the folder moves, not when it changes."""
    digest = hashlib.sha256()
    for item in sorted(items, key=lambda i: (Path(i.path).name, i.label)):
        size = os.stat(item.path).st_size
        digest.update(f"{Path(item.path).name}\t{size}\t{item.label}\n".encode())
    return digest.hexdigest()
