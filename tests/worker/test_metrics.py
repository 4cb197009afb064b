"""Worker metrics: a real `cxrq worker` with two pool processes scrapes as one, and embedded mode
never turns metrics on."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import add_tiny_model, incoming_folder, job_id_of, job_row, run
from tests.worker.conftest import ROOT, wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(port: int) -> dict[str, float] | None:
    """Every sample of the worker's /metrics by name and labels, or None while it is not up."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
    except OSError:
        return None
    samples = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def _images_by_pid(folder: Path) -> dict[int, float]:
    """cxrq_images_scored_total as each process of the worker wrote it to its own file."""
    found: dict[int, float] = {}
    for path in folder.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            if json.loads(key)[1] == "cxrq_images_scored_total":
                found[pid] = found.get(pid, 0) + value
    return found


def test_a_real_worker_exports_the_sum_of_its_pool_processes(
    workers, tiny_checkpoint, tmp_path
) -> None:
    model_id = add_tiny_model(tiny_checkpoint)
    port, tmp = _free_port(), tmp_path / "tmp"
    tmp.mkdir()
    # TMPDIR: the worker makes its multiprocess folder there, where this test can read it.
    proc = workers.start("score", 2, env={"CXRQ_METRICS_PORT": str(port), "TMPDIR": str(tmp)})
    wait_for(lambda: _scrape(port) is not None, 60, "/metrics", workers.logs)
    assert f"metrics: http://127.0.0.1:{port}/metrics" in workers.logs()

    folder = incoming_folder(tmp_path)  # 12 images, one of them not an image at all
    out = run("score", folder, "--model", model_id, "--chunk-size", 1, "--wait")
    job = job_row(job_id_of(out))
    assert job.state == "succeeded" and job.progress_total == 12, out + workers.logs()

    def settled() -> dict[str, float] | None:  # a unit counts just after its rows commit
        samples = _scrape(port) or {}
        return samples if samples.get("cxrq_unit_seconds_count{}") == 12 else None

    samples = wait_for(settled, 10, "12 units in /metrics", workers.logs)
    assert samples["cxrq_images_scored_total{scorer=model}"] == 12
    assert samples["cxrq_image_errors_total{scorer=model}"] == 1  # broken.jpeg
    assert samples["cxrq_unit_seconds_bucket{le=+Inf}"] == 12
    assert samples["cxrq_unit_seconds_sum{}"] > 0
    # Both pool processes scored, each into its own file; the endpoint added them up.
    (multiproc,) = tmp.glob("cxrq-metrics-*")
    by_pid = _images_by_pid(multiproc)
    children = set(workers.children(proc))
    assert len([pid for pid, n in by_pid.items() if n and pid in children]) == 2, by_pid
    assert sum(by_pid.values()) == 12

    workers.stop_all()
    assert not multiproc.exists()  # a worker's counts never leak into the next start


EMBEDDED = """
import sys
from worker import metrics
metrics.count_unit("model:1", [{"scorer": "model:1", "error": "x"}], 0.5)
metrics.count_unit("model:1", None)  # not even bad input raises
metrics.count_renewal(True)
metrics.count_resends("lease_expired", 2)
metrics.count_drift_verdict("drift")
metrics.process_exited(1)
assert not metrics.enabled() and not metrics.serve(9808, "127.0.0.1")
from cli.main import cli
cli(sys.argv[1:], standalone_mode=False)
assert "prometheus_client" not in sys.modules, "embedded mode imported prometheus_client"
"""


def test_embedded_mode_never_turns_metrics_on(db_url, tiny_checkpoint, tmp_path) -> None:
    """Counting calls are no-ops, and a whole embedded score job runs without prometheus_client
    (in a fresh interpreter, so no other test has imported it)."""
    model_id = add_tiny_model(tiny_checkpoint)
    folder = incoming_folder(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", EMBEDDED, "score", str(folder), "--model", str(model_id)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "12 images" in done.stdout, done.stdout


def test_a_failing_count_never_reaches_the_caller(tmp_path) -> None:
    """With metrics on, a count that raises inside prometheus_client is logged and dropped."""
    script = (
        "from worker import metrics\n"
        "assert metrics.prepare()\n"
        "metrics.count_unit('model:1', None, 0.1)\n"
        "metrics.count_resends('lease_expired', -1)  # counters refuse to go down\n"
        "metrics.count_unit('model:1', [{'scorer': 'model:1'}], 0.1)\n"
        "assert metrics.serve(int(__import__('sys').argv[1]), '127.0.0.1')\n"
        "import urllib.request\n"
        "url = f'http://127.0.0.1:{__import__(\"sys\").argv[1]}/metrics'\n"
        "print(urllib.request.urlopen(url).read().decode())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(_free_port())],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'cxrq_images_scored_total{scorer="model"} 1.0' in done.stdout, done.stdout
    assert "cxrq_unit_seconds_count 1.0" in done.stdout
    assert not list(tmp_path.glob("cxrq-metrics-*"))  # removed at exit
