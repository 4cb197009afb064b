import os
from pathlib import Path

import pytest

from tests.conftest import make_xray
from training.data.data_files import (
    DataLayoutError,
    find_splits,
    folder_label,
    label_from_path,
    list_images,
    list_images_report,
    patient_id,
)


@pytest.mark.parametrize(
    ("name", "patient"),
    [
        ("person1000_bacteria_2931.jpeg", "person1000"),
        ("person1000_virus_1681.jpeg", "person1000"),
        ("IM-0553-0001.jpeg", "im-553"),
        ("IM-0553-0001-0002.jpeg", "im-553"),
        ("NORMAL2-IM-0553-0001.jpeg", "im-553"),
        ("scan.png", "file:scan.png"),
    ],
)
def test_patient_id_from_file_name(name: str, patient: str) -> None:
    assert patient_id(Path("/x") / name) == patient


def test_label_from_innermost_class_folder() -> None:
    assert label_from_path("/a/NORMAL/PNEUMONIA/x.jpeg") == 1
    assert label_from_path("/a/normal/x.jpeg") == 0
    assert label_from_path("/a/b/x.jpeg") is None


def test_list_images_is_recursive_and_case_insensitive(tmp_path: Path) -> None:
    for name in ("a/one.JPEG", "a/b/two.jpg", "three.png", "notes.txt", "a/.hidden.jpeg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    names = [p.name for p in list_images(tmp_path)]
    assert sorted(names) == ["one.JPEG", "three.png", "two.jpg"]


def test_find_splits_with_and_without_split_folders(tmp_path: Path) -> None:
    make_xray(tmp_path / "flat" / "NORMAL" / "IM-0001-0001.jpeg", False, 0)
    make_xray(tmp_path / "flat" / "PNEUMONIA" / "person1_virus_1.jpeg", True, 1)
    flat = find_splits(tmp_path / "flat")
    assert list(flat) == ["train"]
    assert sorted(i.label for i in flat["train"]) == [0, 1]

    make_xray(tmp_path / "split" / "train" / "normal" / "IM-0001-0001.jpeg", False, 0)
    make_xray(tmp_path / "split" / "train" / "pneumonia" / "person1_virus_1.jpeg", True, 1)
    make_xray(tmp_path / "split" / "test" / "NORMAL" / "IM-0002-0001.jpeg", False, 2)
    split = find_splits(tmp_path / "split")
    assert set(split) == {"train", "test"}
    assert split["train"][1].patient == "person1"


def test_find_splits_errors_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(DataLayoutError, match="does not exist"):
        find_splits(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataLayoutError, match="neither train/ nor NORMAL/"):
        find_splits(tmp_path / "empty")
    make_xray(tmp_path / "one" / "NORMAL" / "IM-0001-0001.jpeg", False, 0)
    with pytest.raises(DataLayoutError, match="both NORMAL/ and PNEUMONIA/"):
        find_splits(tmp_path / "one")


def _touch(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def test_a_loop_link_adds_nothing(tmp_path: Path) -> None:
    _touch(tmp_path / "NORMAL" / "a.jpeg", tmp_path / "PNEUMONIA" / "b.jpeg")
    (tmp_path / "NORMAL" / "loop").symlink_to("..")
    assert list_images(tmp_path) == [tmp_path / "NORMAL/a.jpeg", tmp_path / "PNEUMONIA/b.jpeg"]


def test_two_loop_links_finish_and_list_each_file_once(tmp_path: Path) -> None:
    _touch(tmp_path / "x" / "a.jpeg", tmp_path / "y" / "b.png")
    (tmp_path / "x" / "up").symlink_to("..")  # each loops through the other
    (tmp_path / "y" / "up").symlink_to("..")
    (tmp_path / "x" / "to_y").symlink_to("../y")
    assert list_images(tmp_path) == [tmp_path / "x/a.jpeg", tmp_path / "y/b.png"]


def test_a_linked_folder_outside_the_root_is_scanned(tmp_path: Path) -> None:
    _touch(tmp_path / "elsewhere" / "NORMAL" / "a.jpeg")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "linked").symlink_to(tmp_path / "elsewhere")
    assert list_images(tmp_path / "root") == [tmp_path / "root/linked/NORMAL/a.jpeg"]


def test_a_file_linked_twice_is_listed_once_under_the_first_link(tmp_path: Path) -> None:
    _touch(tmp_path / "outside" / "scan.jpeg")
    (tmp_path / "root" / "NORMAL").mkdir(parents=True)
    (tmp_path / "root" / "NORMAL" / "a.jpeg").symlink_to(tmp_path / "outside" / "scan.jpeg")
    (tmp_path / "root" / "NORMAL" / "b.jpeg").symlink_to(tmp_path / "outside" / "scan.jpeg")
    (tmp_path / "root" / "PNEUMONIA").mkdir()
    os.link(tmp_path / "outside" / "scan.jpeg", tmp_path / "root" / "PNEUMONIA" / "hard.jpeg")
    assert list_images(tmp_path / "root") == [
        tmp_path / "root/NORMAL/a.jpeg",  # the label comes from the link's folder
        tmp_path / "root/PNEUMONIA/hard.jpeg",  # a hard link is a file of its own
    ]


def test_unreadable_folders_are_reported_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _touch(*(tmp_path / d / f"{i}.jpeg" for d in ("NORMAL", "PNEUMONIA") for i in range(3)))
    locked = tmp_path / "PNEUMONIA"
    real_scandir = os.scandir

    # Tests run as root, which reads a chmod 000 folder anyway: refuse it the way the OS would.
    def scandir(path: str = ".") -> object:
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    images, unreadable = list_images_report(tmp_path)
    assert [p.parent.name for p in images] == ["NORMAL"] * 3
    assert unreadable == [(locked, "Permission denied")]
    assert list_images_report(tmp_path / "missing") == (
        [],
        [(tmp_path / "missing", "No such file or directory")],
    )


def test_folder_label_ignores_folders_above_the_scored_one(tmp_path) -> None:
    root = tmp_path / "NORMAL" / "scans"
    assert folder_label(root / "PNEUMONIA" / "a.jpeg", root) == "PNEUMONIA"
    assert folder_label(root / "a.jpeg", root) is None
    assert folder_label(tmp_path / "NORMAL" / "a.jpeg", tmp_path / "NORMAL") == "NORMAL"
