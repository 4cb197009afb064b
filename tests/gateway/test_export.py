"""`cxrq export JOB --dicom DIR` for a job that `cxrq score` ran on a folder of DICOM files: the
same SR and secondary captures the listener sends, each referencing its source instance."""

from __future__ import annotations

from pathlib import Path

import pydicom

from gateway.sr_facts import sr_facts
from tests.conftest import make_xray
from tests.gateway.nodes import twins
from tests.helpers import add_tiny_model, job_id_of, run


def test_a_scored_dicom_folder_exports_an_sr_per_image_and_an_sc_per_heatmap(
    db_url: str, tiny_checkpoint: dict, tmp_path: Path
) -> None:
    model_id = add_tiny_model(tiny_checkpoint)
    sources = [make_xray(tmp_path / "src" / f"x{i}.png", i % 2 == 0, seed=i) for i in range(3)]
    paths = twins(sources, tmp_path / "folder")
    (tmp_path / "folder" / "notes.png").write_bytes(sources[0].read_bytes())  # not DICOM
    job_id = job_id_of(run("score", tmp_path / "folder", "--model", model_id, "--explain", "all"))
    out = run("export", job_id, "--dicom", tmp_path / "out")
    written = [pydicom.dcmread(p) for p in sorted((tmp_path / "out").glob("*.dcm"))]
    assert f"wrote {len(written)} DICOM object(s)" in out
    by_modality: dict[str, list] = {}
    for ds in written:
        by_modality.setdefault(ds.Modality, []).append(ds)
    sources_uids = {pydicom.dcmread(p).SOPInstanceUID for p in paths}
    assert {sr_facts(ds)["source_sop_instance_uid"] for ds in by_modality["SR"]} == sources_uids
    assert len(by_modality["OT"]) == 3  # every image has a heatmap (--explain all)
    assert {ds.StudyInstanceUID for ds in written} == {pydicom.dcmread(paths[0]).StudyInstanceUID}


def test_export_of_a_job_without_dicom_inputs_says_so(
    db_url: str, tiny_checkpoint: dict, tmp_path: Path
) -> None:
    model_id = add_tiny_model(tiny_checkpoint)
    make_xray(tmp_path / "folder" / "x.png", True, seed=1)
    job_id = job_id_of(run("score", tmp_path / "folder", "--model", model_id))
    out = run("export", job_id, "--dicom", tmp_path / "out", ok=False)
    assert "no scored DICOM input" in out


def test_a_shadow_models_rows_are_never_exported(
    db_url: str, tiny_checkpoint: dict, tmp_path: Path
) -> None:
    model_id = add_tiny_model(tiny_checkpoint)
    shadow_id = add_tiny_model(tiny_checkpoint, name="challenger")
    sources = [make_xray(tmp_path / "src" / f"x{i}.png", i % 2 == 0, seed=i) for i in range(3)]
    twins(sources, tmp_path / "folder")
    out = run("score", tmp_path / "folder", "--model", model_id, "--shadow", shadow_id)
    run("export", job_id_of(out), "--dicom", tmp_path / "out")
    reports = [pydicom.dcmread(p) for p in (tmp_path / "out").glob("*.dcm")]
    reports = [ds for ds in reports if ds.Modality == "SR"]
    assert len(reports) == 3  # one per image: the shadow's rows add none
    assert {sr_facts(ds)["model_id"] for ds in reports} == {model_id}
