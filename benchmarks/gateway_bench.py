"""The DICOM gateway measured: intake over loopback into the spool, and how soon a one-image
study's SR is in the PACS after the association's release.

    python -m benchmarks.gateway_bench [--small 300] [--large 24] [--studies 5]

Intake: DCMTK's storescu (a real modality) sends the same files to cxrq's receiver (fsync,
rename and folder fsync before each success) and, side by side as the plain baseline, to
DCMTK's own storescp (writes each file, no fsync), alternating, best of three. Files: 512 x 512
16-bit instances, and full-size 2500 x 2048 16-bit ones (10 MB). Latency: `cxrq listen`
embedded (scoring in its own process, model warm after a first study) sends to an Orthanc on
loopback; the clock runs from storescu's exit (the association released) until Orthanc's REST
API lists the SR.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from benchmarks.common import SHARED, machine


def _instances(folder: Path, n: int, shape: tuple[int, int]) -> list[Path]:
    """n complete DX chest PA instances of 16-bit noise-free ramps (content does not matter)."""
    from pydicom.uid import generate_uid

    from training.data.dicom_write import chest_twin

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, size=shape, dtype=np.uint8)
    study = generate_uid()
    paths = []
    for i in range(n):
        path = folder / f"i{i:04d}.dcm"
        chest_twin(path, np.roll(base, i, axis=1), study_uid=study, bits=16, instance_number=i + 1)
        paths.append(path)
    return paths


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _storescu(port: int, called: str, paths: list[Path]) -> float:
    start = time.perf_counter()
    cmd = ["storescu", "-aec", called, "127.0.0.1", str(port), *map(str, paths)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"storescu failed: {done.stderr[-500:]}")
    return time.perf_counter() - start


def _cxrq_receiver(spool: Path, port: int):
    from gateway.receiver import Receiver, ReceiverLimits
    from gateway.spool import Spool
    from gateway.studies import Studies

    store = Spool(spool, 10**12)
    tempfile.tempdir = str(store.tmp)  # as the listener does: received files land in the spool
    receiver = Receiver(store, Studies(3600, lambda *_: None), ReceiverLimits())
    return receiver.start("CXRQ", "127.0.0.1", port)


def intake(paths: list[Path], work: Path, rounds: int = 3) -> dict[str, float]:
    """Best-of-rounds seconds to send `paths` to cxrq's receiver and to DCMTK's storescp."""
    cxrq_port, dcmtk_port = _free_port(), _free_port()
    server = _cxrq_receiver(work / "spool", cxrq_port)
    (work / "storescp").mkdir()
    scp = subprocess.Popen(
        ["storescp", "-od", str(work / "storescp"), "-aet", "STORESCP", str(dcmtk_port)]
    )
    time.sleep(0.5)
    best = {"cxrq": float("inf"), "storescp": float("inf")}
    try:
        for _ in range(rounds):
            best["cxrq"] = min(best["cxrq"], _storescu(cxrq_port, "CXRQ", paths))
            best["storescp"] = min(best["storescp"], _storescu(dcmtk_port, "STORESCP", paths))
    finally:
        server.shutdown()
        scp.terminate()
        scp.wait()
    return best


def _orthanc(work: Path) -> tuple[subprocess.Popen, int, int]:
    dicom_port, http_port = _free_port(), _free_port()
    config = {
        "DicomAet": "ORTHANC",
        "DicomPort": dicom_port,
        "HttpPort": http_port,
        "StorageDirectory": str(work / "orthanc"),
        "IndexDirectory": str(work / "orthanc"),
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
    }
    (work / "orthanc.json").write_text(json.dumps(config))
    log = open(work / "orthanc.log", "wb")  # noqa: SIM115 - the process keeps it
    process = subprocess.Popen(["Orthanc", str(work / "orthanc.json")], stdout=log, stderr=log)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{http_port}/system", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    return process, dicom_port, http_port


def _sr_count(http_port: int, study_uid: str) -> int:
    body = {"Level": "Series", "Query": {"StudyInstanceUID": study_uid, "Modality": "SR"}}
    request = urllib.request.Request(
        f"http://127.0.0.1:{http_port}/tools/find",
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as r:
        return len(json.loads(r.read()))


def sr_latency(work: Path, studies: int) -> list[float]:
    """Seconds from release to the SR in Orthanc, for `studies` one-image studies (after one
    study that warms the model)."""
    from PIL import Image

    from benchmarks.common import store_untrained_model
    from training.data.dicom_write import chest_twin

    work.mkdir(parents=True, exist_ok=True)
    os.environ["CXRQ_DATABASE_URL"] = f"sqlite:///{work / 'bench.db'}"
    os.environ.pop("CXRQ_BROKER_URL", None)
    model_id = store_untrained_model("googlenet", 64)
    orthanc, dicom_port, _http = _orthanc(work)
    port = _free_port()
    cmd = [
        sys.executable,
        "-c",
        "from cli.main import main; main()",
        "listen",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--spool",
        str(work / "listen-spool"),
        "--model",
        str(model_id),
        "--send-to",
        f"ORTHANC@127.0.0.1:{dicom_port}",
        "--explain",
        "all",
    ]
    log = open(work / "listen.log", "wb")  # noqa: SIM115 - the process keeps it
    listener = subprocess.Popen(cmd, stdout=log, stderr=log)
    source = sorted((SHARED / "fullres" / "PNEUMONIA").glob("*.jpeg"))[0]
    gray = np.array(Image.open(source).convert("L"))
    seconds = []
    try:
        while b"listening as" not in (work / "listen.log").read_bytes():
            time.sleep(0.2)
        for i in range(studies + 1):
            ds = chest_twin(work / f"study{i}.dcm", gray)
            _storescu(port, "CXRQ", [work / f"study{i}.dcm"])
            released = time.perf_counter()
            while _sr_count(_http, ds.StudyInstanceUID) == 0:
                if time.perf_counter() - released > 120:
                    raise SystemExit(f"no SR after 120 s; see {work / 'listen.log'}")
                time.sleep(0.05)
            if i:  # the first study loads the model
                seconds.append(time.perf_counter() - released)
    finally:
        listener.terminate()
        listener.wait()
        orthanc.terminate()
        orthanc.wait()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=300, help="512 x 512 instances to send")
    parser.add_argument("--large", type=int, default=24, help="2500 x 2048 instances to send")
    parser.add_argument("--studies", type=int, default=5, help="one-image studies timed")
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = []
        for name, n, shape in (
            ("512 x 512, 16-bit", args.small, (512, 512)),
            ("2500 x 2048, 16-bit", args.large, (2500, 2048)),
        ):
            paths = _instances(work / f"in-{n}", n, shape)
            mb = sum(p.stat().st_size for p in paths) / 1e6
            (work / name[:3]).mkdir()
            best = intake(paths, work / name[:3])
            for who, secs in best.items():
                rows.append((name, who, n, secs, n / secs, mb / secs))
        print("| instances | receiver | n | seconds (best of 3) | instances/s | MB/s |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name, who, n, secs, rate, mbs in rows:
            print(f"| {name} | {who} | {n} | {secs:.2f} | {rate:.0f} | {mbs:.0f} |")
        latency = sr_latency(work / "latency", args.studies) if args.studies else []
        if latency:
            print(
                f"SR in Orthanc after release, {len(latency)} one-image studies: median "
                f"{statistics.median(latency):.2f} s, max {max(latency):.2f} s"
            )


if __name__ == "__main__":
    main()
