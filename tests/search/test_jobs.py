"""`tunelab submit/status/logs/stop` against a real Ray head with token authentication.

The head is started here with `ray start --head --block` on 127.0.0.1, its own ports and its own temp
folder (so a local `ray.init()` elsewhere in the suite never finds and joins it), and stopped by
killing its process group (`ray stop` would also stop the suite's shared local Ray).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from _procs import TINY_SETS, free_port
from tunelab import _mlflow
from tunelab.trainables import metrics
from tunelab.trainables import tags

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
ANYWHERE = """\
# A search file kept outside the project (tests/search/test_jobs.py): its text travels with the job.
name: job-anywhere
trainable: synthetic
metric: val_loss
mode: min
fixed: {epochs: 2}
space:
  x: {uniform: [-1.0, 1.0]}
scheduler: {name: fifo}
budget: {trials: 2, max_concurrent: 2}
data: {corpus: none, dir: DATA_DIR}
"""


@pytest.fixture(scope="module")
def head(data_dir):
    token = secrets.token_hex(32)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, TUNELAB_DATA=str(data_dir),
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", RAY_USAGE_STATS_ENABLED="0")
    temp = tempfile.mkdtemp(prefix="rh", dir="/tmp")  # short: Ray's socket paths have a length limit
    dash = free_port()
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
         f"--port={free_port()}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         "--num-cpus=2", f"--temp-dir={temp}", "--include-dashboard=true",
         # The agent's HTTP port is fixed (52365) by default, and the suite's own local Ray holds it:
         # without a port of its own the head's agent cannot start, and neither can any job.
         f"--dashboard-agent-listen-port={free_port()}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 120
        while _http_status(f"{address}/api/jobs/", token) != 200:
            if time.time() > deadline or proc.poll() is not None:
                pytest.fail(f"the Ray head did not come up:\n{_drain(proc)}")
            time.sleep(1)
        yield address, env
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if proc.poll() is None:
                os.killpg(proc.pid, sig)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
        shutil.rmtree(temp, ignore_errors=True)


def _drain(proc) -> str:
    proc.kill()
    return proc.stdout.read().decode(errors="replace")[-3000:]


def _http_status(url: str, token: str | None) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def _tunelab(env, *args, check=True, cwd=None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "tunelab", *args], env=env, capture_output=True,
                          text=True, timeout=120, cwd=cwd)
    if check:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


def _wait_for(env, address, job_id, states, timeout=300) -> dict:
    deadline = time.time() + timeout
    while True:
        info = json.loads(_tunelab(env, "status", job_id, "--address", address).stdout)
        if info["status"] in states:
            return info
        if time.time() > deadline:
            logs = _tunelab(env, "logs", job_id, "--address", address, check=False).stdout
            pytest.fail(f"job {job_id} stayed {info['status']}:\n{logs[-3000:]}")
        time.sleep(2)


def test_submit_runs_the_search_as_a_job_and_mlflow_has_its_runs(head, tmp_path):
    address, env = head
    proc = _tunelab(env, "submit", "spaces/ptb_smoke.yaml", "--address", address, *TINY_SETS,
                    "--set", "epochs=2", "--set", "scheduler.max_t=2", "--set", "budget.trials=3",
                    "--name", "job-smoke", "--storage", str(tmp_path))
    job_id = proc.stdout.strip()
    assert job_id.startswith("raysubmit_"), proc.stdout
    info = _wait_for(env, address, job_id, {"SUCCEEDED", "FAILED", "STOPPED"})
    assert info["status"] == "SUCCEEDED", _tunelab(env, "logs", job_id, "--address", address).stdout[-3000:]
    assert info["search"] == "job-smoke"
    assert "job-smoke: 3 trials" in _tunelab(env, "logs", job_id, "--address", address).stdout

    state = json.loads((tmp_path / "job-smoke" / "tunelab.json").read_text())
    client = _mlflow.client_for(f"sqlite:///{tmp_path / 'mlflow.db'}")
    kids = _mlflow.children(client, state["experiment_id"], state["parent_run_id"])
    assert len(kids) == 3
    assert all(r.data.tags[tags.STATUS] in (metrics.COMPLETED, metrics.STOPPED_EARLY) for r in kids)
    assert client.get_run(state["parent_run_id"]).info.status == "FINISHED"


def test_stop_ends_a_running_search(head, tmp_path):
    address, env = head
    job_id = _tunelab(env, "submit", "spaces/ptb_smoke.yaml", "--address", address, *TINY_SETS,
                      "--set", "epochs=50", "--set", "scheduler.name=fifo", "--set", "budget.trials=2",
                      "--name", "job-long", "--storage", str(tmp_path)).stdout.strip()
    _wait_for(env, address, job_id, {"RUNNING"}, timeout=120)
    deadline = time.time() + 120  # stop once trials train, so it is a search that is stopped
    while not list(tmp_path.glob("job-long/train_*")) and time.time() < deadline:
        time.sleep(1)
    assert _tunelab(env, "stop", job_id, "--address", address).stdout.strip() == f"{job_id}: stopping"
    assert _wait_for(env, address, job_id, {"STOPPED", "FAILED", "SUCCEEDED"}, timeout=120)["status"] == "STOPPED"
    assert _tunelab(env, "stop", job_id, "--address", address).stdout.strip() == f"{job_id}: had already ended"


def test_the_head_refuses_requests_without_the_token(head):
    address, env = head
    assert _http_status(f"{address}/api/jobs/", None) == 401
    assert _http_status(f"{address}/api/jobs/", "0" * 64) == 403
    no_token = {k: v for k, v in env.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    proc = _tunelab(no_token, "status", "raysubmit_x", "--address", address, check=False)
    assert proc.returncode == 1
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "Authentication required" in err[0], proc.stderr


def test_a_bad_search_file_is_refused_before_anything_is_sent(head, tmp_path):
    address, env = head
    before = _jobs_listed(address, env["RAY_AUTH_TOKEN"])
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path("spaces/ptb_smoke.yaml").read_text().replace("trainable: rnn", "trainable: rnnn"))
    proc = _tunelab(env, "submit", str(bad), "--address", address, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and str(bad) in proc.stderr and "trainable" in proc.stderr
    # A data folder given relative to where tunelab runs, outside the folder sent, cannot travel.
    (tmp_path / "ptb").mkdir()
    (tmp_path / "project").mkdir()
    local = tmp_path / "local.yaml"
    local.write_text(ANYWHERE.replace("DATA_DIR", "../ptb"))
    proc = _tunelab(env, "submit", str(local), "--address", address, check=False, cwd=tmp_path / "project")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert f"{local}: data.dir: '../ptb' ({tmp_path / 'ptb'}) cannot travel with the job" in proc.stderr
    assert _jobs_listed(address, env["RAY_AUTH_TOKEN"]) == before


def test_a_search_file_from_any_folder_travels_with_the_job(head, tmp_path):
    address, env = head
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    # data.dir relative to where tunelab runs, inside that folder: the job gets it at the same place in its
    # copy of the folder, which it must find for the search file to load there.
    (folder / "mydata").mkdir()
    (folder / "mydata" / "notes.txt").write_text("a lab's data")
    text = ANYWHERE.replace("DATA_DIR", "./mydata")
    (folder / "my_search.yaml").write_text(text)
    storage = tmp_path / "runs"
    job_id = _tunelab({**env, "MLFLOW_TRACKING_USERNAME": "alice"}, "submit",
                      "my_search.yaml", "--address", address, "--storage", str(storage), cwd=folder).stdout.strip()
    info = _wait_for(env, address, job_id, {"SUCCEEDED", "FAILED", "STOPPED"})
    assert info["status"] == "SUCCEEDED", _tunelab(env, "logs", job_id, "--address", address).stdout[-3000:]
    job_env = _job_info(address, env["RAY_AUTH_TOKEN"], job_id)["runtime_env"]["env_vars"]
    assert job_env["TUNELAB_SEARCH_TEXT"] == text and job_env["MLFLOW_TRACKING_USERNAME"] == "alice"

    state = json.loads((storage / "job-anywhere" / "tunelab.json").read_text())
    client = _mlflow.client_for(f"sqlite:///{storage / 'mlflow.db'}")
    assert len(_mlflow.children(client, state["experiment_id"], state["parent_run_id"])) == 2
    parent = state["parent_run_id"]
    (tmp_path / "artifact").mkdir()
    logged = client.download_artifacts(parent, "search/my_search.yaml", str(tmp_path / "artifact"))
    assert Path(logged).read_text() == text  # the file as written here, run there
    resolved = (storage / "job-anywhere" / "search.yaml").read_text()
    assert "dir: mydata" in resolved


def _jobs_listed(address: str, token: str) -> int:
    req = urllib.request.Request(f"{address}/api/jobs/", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return len(json.load(r))


def _job_info(address: str, token: str, job_id: str) -> dict:
    req = urllib.request.Request(f"{address}/api/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)
