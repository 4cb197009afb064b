"""The one scoring call: a chunk of files and a scorer -> answers, each DICOM header read once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

import training.data.dicom_identity as dicom_identity
from training.data.dicom_write import DicomSpec, write_dicom
from training.data.preprocess import Normalizer
from training.models.checkpoint import ModelBundle
from training.models.registry import create_model
from training.scoring.chunk import Scorer, score_chunk


def _folder(root: Path) -> list[str]:
    (root / "PNEUMONIA").mkdir(parents=True)
    gray = np.tile(np.arange(48, dtype=np.uint8) * 5, (48, 1))
    paths = []
    for i in range(3):
        paths.append(root / "PNEUMONIA" / f"film{i}.dcm")
        write_dicom(paths[-1], gray, DicomSpec(bits=12, patient_id=f"MRN-{i}"))
    Image.fromarray(gray).save(root / "PNEUMONIA" / "plain.png")
    (root / "PNEUMONIA" / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 8)
    return sorted(str(p) for p in (root / "PNEUMONIA").iterdir())


def test_a_chunk_answers_every_file_and_reads_each_dicom_header_once(tmp_path, monkeypatch):
    torch.manual_seed(0)
    bundle = ModelBundle(create_model("cnn", 32).eval(), "cnn", 32, Normalizer())
    paths = _folder(tmp_path / "scan")
    reads = []
    real = dicom_identity.read_dataset
    monkeypatch.setattr(
        dicom_identity, "read_dataset", lambda p, **kw: reads.append(p) or real(p, **kw)
    )
    answers = score_chunk(Scorer([bundle], ["model:1"]), paths, tmp_path / "scan", salt="s")
    rows = {Path(r["path"]).name: r for r in answers.predictions}
    assert set(rows) == {"film0.dcm", "film1.dcm", "film2.dcm", "plain.png", "broken.dcm"}
    assert all(rows[f"film{i}.dcm"]["sop_instance_uid"] for i in range(3))
    assert len({rows[f"film{i}.dcm"]["patient_hash"] for i in range(3)}) == 3
    assert "sop_instance_uid" not in rows["plain.png"] and rows["plain.png"]["error"] is None
    assert rows["broken.dcm"]["error"] and rows["broken.dcm"]["prob"] is None
    assert all(r["true_label"] == "PNEUMONIA" for r in rows.values())
    # the files that decoded gave their headers with their pixels; only the broken one is read
    assert [Path(p).name for p in reads] == ["broken.dcm"]
