"""A search against a real `mlflow server`: unreachable at launch, killed mid-search, `tunelab sync`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from _procs import TINY_SETS, free_port
from tunelab import _mlflow
from tunelab.trainables import metrics
from tunelab.trainables import tags

pytestmark = pytest.mark.slow


class Server:
    """`mlflow server` on 127.0.0.1 with a SQLite store that outlives the process."""

    def __init__(self, folder: Path):
        self.folder, self.port, self.proc = folder, free_port(), None
        self.uri = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1", "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
             "--artifacts-destination", str(self.folder / "artifacts")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.folder)
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.time() > deadline or self.proc.poll() is not None:
                self.kill()
                pytest.fail(f"mlflow server did not come up: {self.proc.stdout.read().decode()[-2000:]}")
            time.sleep(1)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


@pytest.fixture
def server(tmp_path):
    folder = tmp_path / "server"
    folder.mkdir()
    s = Server(folder)
    s.start()
    yield s
    s.kill()


def _tunelab(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tunelab", *args], capture_output=True, text=True,
                          timeout=600, **kw)


def test_an_unreachable_server_at_launch_stops_before_anything_starts(tmp_path, data_dir):
    port = free_port()  # nothing listens there
    proc = _tunelab("run", "spaces/ptb_smoke.yaml", *TINY_SETS, "--set", f"tracking.uri=http://127.0.0.1:{port}",
                    "--storage", str(tmp_path), env={**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "tracking.uri" in err[0] and f"127.0.0.1:{port}" in err[0], proc.stderr
    assert list(tmp_path.iterdir()) == []  # no experiment folder, no trial


def test_server_killed_mid_search_then_sync_replays_without_duplicates(server, tmp_path, data_dir):
    storage = tmp_path / "runs"
    driver = subprocess.Popen(
        [sys.executable, "-m", "tunelab", "run", "spaces/ptb_smoke.yaml", *TINY_SETS, "--set", "epochs=3",
         "--set", "scheduler.max_t=3", "--set", "budget.trials=4", "--set", f"tracking.uri={server.uri}",
         "--storage", str(storage)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        client = _mlflow.client_for(server.uri)
        deadline = time.time() + 240
        while True:  # wait until MLflow holds some reports, then take the server away
            state_file = storage / "ptb-smoke" / "tunelab.json"
            if state_file.exists():
                state = json.loads(state_file.read_text())
                kids = _mlflow.children(client, state["experiment_id"], state["parent_run_id"])
                if any(metrics.VAL_PPL in r.data.metrics for r in kids):
                    break
            if time.time() > deadline or driver.poll() is not None:
                pytest.fail(f"no report reached MLflow:\n{driver.communicate()[0][-3000:]}")
            time.sleep(1)
        server.kill()
        out = driver.communicate(timeout=600)[0]
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert driver.returncode == 0, out[-3000:]
    assert "ptb-smoke: 4 trials" in out  # the trials went on without MLflow
    assert "tunelab sync ptb-smoke" in out
    assert (storage / "ptb-smoke" / "mlflow_pending.json").exists()

    server.start()  # the same database, back again
    proc = _tunelab("sync", "ptb-smoke", "--storage", str(storage))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert not (storage / "ptb-smoke" / "mlflow_pending.json").exists()

    def histories() -> dict[str, list[int]]:
        kids = _mlflow.children(client, state["experiment_id"], state["parent_run_id"])
        return {r.data.tags[tags.TRIAL_ID]: [m.step for m in client.get_metric_history(r.info.run_id, metrics.VAL_PPL)]
                for r in kids}

    first = histories()
    assert len(first) == 4
    for trial_dir in (storage / "ptb-smoke").glob("train_*"):
        rows = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
        assert first[rows[0]["trial_id"]] == [r["training_iteration"] for r in rows]
    kids = _mlflow.children(client, state["experiment_id"], state["parent_run_id"])
    assert all(r.data.tags[tags.STATUS] in (metrics.COMPLETED, metrics.STOPPED_EARLY, metrics.STATUS_DIVERGED)
               for r in kids)
    parent = client.get_run(state["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["tunelab.best_trial_id"] in first

    assert _tunelab("sync", "ptb-smoke", "--storage", str(storage)).returncode == 0
    assert histories() == first  # a second sync adds nothing
