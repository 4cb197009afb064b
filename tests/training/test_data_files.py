from pathlib import Path

import pytest

from tests.conftest import make_xray
from training.data_files import (
    DataLayoutError,
    find_splits,
    label_from_path,
    list_images,
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
