"""Test nodes for the gateway: complete chest twins of tiny X-rays, a DICOM sender (pynetdicom
SCU) and an Orthanc PACS started from Debian's package on loopback ports."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data.dicom_write import chest_twin

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def twins(sources: list[Path], folder: Path, study_uid: str | None = None, **spec) -> list[Path]:
    """One complete DX chest PA instance per source image, all in one study."""
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    out = []
    for i, src in enumerate(sources):
        gray = np.array(Image.open(src).convert("L"))
        path = folder / f"twin{i}.dcm"
        chest_twin(path, gray, study_uid, series_uid, instance_number=i + 1, **spec)
        out.append(path)
    return out


def send(port: int, paths: list[Path], calling: str = "MODALITY", called: str = "CXRQ") -> list:
    """C-STORE each file over one association; returns each status (None: no answer)."""
    import pydicom
    from pynetdicom import AE

    ae = AE(ae_title=calling)
    datasets = [pydicom.dcmread(p) for p in paths]
    for uid in sorted({str(ds.SOPClassUID) for ds in datasets}):
        syntaxes = sorted({str(ds.file_meta.TransferSyntaxUID) for ds in datasets})
        ae.add_requested_context(uid, syntaxes)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        return ["rejected"] * len(paths)
    statuses = []
    for ds in datasets:
        try:
            status = assoc.send_c_store(ds)
            statuses.append(int(status.Status) if "Status" in status else None)
        except ValueError:  # no accepted context for its class: not negotiated
            statuses.append("not negotiated")
    assoc.release()
    return statuses


@dataclass
class Orthanc:
    """An Orthanc PACS on loopback: its AE title, DICOM port and REST/DICOMweb URL."""

    folder: Path
    aet: str = "ORTHANC"
    dicom_port: int = 0
    http_port: int = 0
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def destination(self) -> str:
        return f"{self.aet}@127.0.0.1:{self.dicom_port}"

    def start(self) -> None:
        self.dicom_port = self.dicom_port or free_port()
        self.http_port = self.http_port or free_port()
        config = {
            "Name": "cxrq-test",
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "index"),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "Plugins": [str(DICOMWEB_PLUGIN)] if DICOMWEB_PLUGIN.exists() else [],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        (self.folder / "orthanc.json").write_text(json.dumps(config))
        log = open(self.folder / "orthanc.log", "ab")  # noqa: SIM115 - the process keeps it
        self.process = subprocess.Popen(
            [ORTHANC, str(self.folder / "orthanc.json")], stdout=log, stderr=log
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.get("/system")
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"Orthanc did not start: see {self.folder / 'orthanc.log'}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=5) as r:
            return json.loads(r.read())

    def post(self, path: str, body: dict):
        request = urllib.request.Request(
            self.url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as r:
            return json.loads(r.read())

    def file(self, instance_id: str) -> bytes:
        with urllib.request.urlopen(f"{self.url}/instances/{instance_id}/file", timeout=5) as r:
            return r.read()


def need_orthanc() -> None:
    if not Path(ORTHANC).exists():
        pytest.fail("Orthanc is not installed: apt-get install orthanc orthanc-dicomweb")
