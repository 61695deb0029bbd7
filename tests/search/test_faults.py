"""Faults a user can cause, driven as a user causes them: real signals to a real `tunelab` process,
two terminals starting one search, a disk that fills up, a space with no feasible config (an
objective the trainable never reports: test_function_trainable.py). Each ends with one line, an exit status that says what
happened, and records that say it too (README: "When things fail")."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from optuna.trial import TrialState

from tunelab import _mlflow
from tunelab.search import load_study
from tunelab.trainables import metrics
from tunelab.trainables import tags

# Six trials of three half-second epochs, two at a time, checkpointed at every report.
SEARCH = """\
name: faults
trainable: synthetic
metric: val_loss
mode: min
fixed: {epochs: 3, sleep_s: 0.5, checkpoint: true}
space:
  x: {uniform: [-1.0, 1.0]}
  y: {uniform: [-1.0, 1.0]}
sampler:   {name: tpe, seed: 0, n_startup_trials: 3}
scheduler: {name: fifo}
budget:    {trials: 6, max_concurrent: 2}
resources: {cpu: 1, gpu: 0}
data:      {corpus: none}
"""
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def _tunelab(*args: str) -> list[str]:
    return [sys.executable, "-m", "tunelab", *args]


def _start(tmp_path: Path, *args: str, log: str = "driver.log") -> subprocess.Popen:
    out = open(tmp_path / log, "w")
    return subprocess.Popen(_tunelab(*args), stdout=out, stderr=subprocess.STDOUT, env=ENV, cwd=tmp_path,
                            start_new_session=True)


def _cli(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(_tunelab(*args), capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=timeout,
                          start_new_session=True)


class _Search:
    """What a search in ``storage`` has recorded so far, read as a user would (MLflow, the study)."""

    def __init__(self, storage: Path, name: str = "faults"):
        self.storage, self.name = storage, name
        self._client = None

    @property
    def state(self) -> dict | None:
        path = self.storage / self.name / "tunelab.json"
        return json.loads(path.read_text()) if path.exists() else None

    @property
    def client(self):
        if self._client is None:
            self._client = _mlflow.client_for(self.state["tracking_uri"])
        return self._client

    def children(self) -> list:
        if self.state is None:
            return []
        return _mlflow.children(self.client, self.state["experiment_id"], self.state["parent_run_id"])

    def parent(self):
        return self.client.get_run(self.state["parent_run_id"])

    def steps(self) -> int:
        """The reports logged so far, all trials together."""
        return sum(int(r.data.metrics.get("training_iteration", 0)) for r in self.children())


def _wait_for(driver: subprocess.Popen, log: Path, moment, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if driver.poll() is not None:
            pytest.fail(f"the search ended before the fault:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(Exception):  # MLflow's database is being made
            if moment():
                return
        time.sleep(0.3)
    pytest.fail(f"the moment never came:\n{log.read_text()[-3000:]}")


def _distinct_and_one_run_each(search: _Search) -> tuple[int, int, int]:
    """Every config the study asked is distinct, and each trial that ran has exactly one child run;
    returns (configs asked, distinct configs, child runs)."""
    study = load_study(search.storage / search.name)
    asked = [tuple(sorted(t.params.items())) for t in study.trials]
    kids = search.children()
    by_config = {}
    for run in kids:
        if not run.data.params:  # killed before its first report, which carries them
            continue
        key = tuple(sorted((k, float(run.data.params[k])) for k in ("x", "y")))
        by_config.setdefault(key, []).append(run)
    for t in study.trials:
        if t.state == TrialState.COMPLETE:
            key = tuple(sorted((k, float(str(v))) for k, v in t.params.items()))
            assert len(by_config.get(key, [])) == 1, (t.number, t.params, len(by_config.get(key, [])))
    return len(asked), len(set(asked)), len(kids)


# The three moments, each with a different way to die: as soon as the first trial starts (the others
# asked or pending, none reported); once trials have reported (mid-way); once two have ended (the
# next ones starting). Each moment, once reached, stays reached: a slow machine cannot miss it.
MOMENTS = {
    "pending": (signal.SIGKILL, lambda s: len(s.children()) >= 1),
    "mid-trial": (signal.SIGTERM, lambda s: s.steps() >= 1),
    "between-trials": (signal.SIGINT, lambda s: sum(
        r.data.tags.get(tags.STATUS) == metrics.COMPLETED for r in s.children()) >= 2),
}


@pytest.mark.slow
@pytest.mark.parametrize("moment", list(MOMENTS))
def test_a_search_stopped_at_any_moment_resumes_without_repeating_a_config(tmp_path, moment):
    (tmp_path / "s.yaml").write_text(SEARCH)
    sig, reached = MOMENTS[moment]
    search = _Search(tmp_path / "runs")
    driver = _start(tmp_path, "run", "s.yaml", "--storage", "runs")
    _wait_for(driver, tmp_path / "driver.log", lambda: reached(search))
    if sig == signal.SIGKILL:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started
    else:
        os.kill(driver.pid, sig)  # the driver alone, as a terminal's Ctrl-C or `kill` does
    assert driver.wait(timeout=120) == (-signal.SIGKILL if sig == signal.SIGKILL else 130)
    out = (tmp_path / "driver.log").read_text()
    before = _distinct_and_one_run_each(search)

    listing = _cli(tmp_path, "ls", "--storage", "runs").stdout.splitlines()
    assert listing[1].split()[:2] == ["faults", "INTERRUPTED"], listing
    if sig != signal.SIGKILL:  # the driver closed its records and said so
        assert "Traceback" not in out
        assert f"tunelab: interrupted ({signal.Signals(sig).name}): " in out and " resume faults --storage " in out
        parent = search.parent()
        assert parent.info.status == "KILLED" and parent.data.tags["tunelab.state"] == "INTERRUPTED"
        statuses = [(r.info.status, r.data.tags[tags.STATUS]) for r in search.children()]
        assert ("KILLED", metrics.INTERRUPTED) in statuses, statuses
        assert all(s in (("FINISHED", metrics.COMPLETED), ("KILLED", metrics.INTERRUPTED)) for s in statuses)

    ended = sum(r.data.tags.get(tags.STATUS) == metrics.COMPLETED for r in search.children())
    resumed = _cli(tmp_path, "resume", "faults", "--storage", "runs")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    after = _distinct_and_one_run_each(search)
    print(f"\n{moment} ({signal.Signals(sig).name}): configs asked, distinct, child runs: before {before}, "
          f"after {after}")
    asked, distinct, _ = after
    assert asked == distinct
    study = load_study(tmp_path / "runs" / "faults")
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 6
    assert all(t.state.is_finished() for t in study.trials)
    assert all(r.info.status != "RUNNING" for r in search.children())
    parent = search.parent()
    assert parent.info.status == "FINISHED" and parent.data.tags["tunelab.state"] == "FINISHED"
    # The summary logged last is the one MLflow shows: 6 completed, none stopped early or interrupted.
    assert parent.data.metrics[f"n_{metrics.COMPLETED}"] == 6
    assert parent.data.metrics[f"n_{metrics.INTERRUPTED}"] == 0
    assert parent.data.metrics[f"n_{metrics.STOPPED_EARLY}"] == 0
    if sig != signal.SIGKILL:  # the console goes on counting from the trials that had ended
        first = re.search(r"^\[(\d+)/6 ", resumed.stdout, re.M)
        assert first and int(first.group(1)) == ended + 1, (ended, resumed.stdout[:2000])


def _listeners(root: psutil.Process) -> list[tuple[psutil.Process, tuple[str, int]]]:
    found = []
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            found += [(proc, (c.laddr.ip, c.laddr.port)) for c in proc.net_connections(kind="inet")
                      if c.status == psutil.CONN_LISTEN]
    return found


def _serves_metrics(ip: str, port: int) -> bool:
    host = "127.0.0.1" if ip in ("0.0.0.0", "::") else (f"[{ip}]" if ":" in ip else ip)
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=2) as answer:
            return b"ray_" in answer.read(1 << 20)
    except Exception:  # noqa: BLE001 - a gRPC port, or nothing HTTP: not a metrics exporter
        return False


@pytest.mark.slow
def test_sigterm_stops_the_ray_it_started_at_once_and_no_metrics_are_served_meanwhile(tmp_path):
    (tmp_path / "s.yaml").write_text(SEARCH)
    search = _Search(tmp_path / "runs")
    driver = _start(tmp_path, "run", "s.yaml", "--storage", "runs")
    _wait_for(driver, tmp_path / "driver.log", lambda: search.steps() >= 1)
    root = psutil.Process(driver.pid)
    listening = _listeners(root)
    assert listening, "Ray's processes listen on some ports"
    exposed = [(p.name(), addr) for p, addr in listening if not addr[0].startswith("127.") and addr[0] != "::1"
               and _serves_metrics(*addr)]
    # The node's exporter (the dashboard agent's, on a port of its own) is off. What is left beyond the
    # loopback address is the autoscaler's and the dashboard head's own Prometheus servers, on Ray's
    # fixed ports, which no setting of ray.init turns off or binds to loopback (README: left as is).
    from ray.dashboard.consts import DASHBOARD_METRIC_PORT

    from tunelab._private import ray_autoscaler_metric_port

    assert not [e for e in exposed if e[0].startswith("ray::") or e[1][1] not in (ray_autoscaler_metric_port(),
                                                                                  DASHBOARD_METRIC_PORT)], exposed
    ray_procs = root.children(recursive=True)
    os.kill(driver.pid, signal.SIGTERM)
    assert driver.wait(timeout=120) == 130
    gone, alive = psutil.wait_procs(ray_procs, timeout=10)
    assert not alive, [(p.pid, p.name()) for p in alive]


@pytest.mark.slow
def test_two_terminals_start_one_search_at_once_and_one_is_refused(tmp_path):
    """Three starts at once on a new results root: two of one name (one runs, the other is refused
    before it writes anything) and one of another name (both make MLflow's database: both succeed)."""
    small = SEARCH.replace("trials: 6", "trials: 2").replace("epochs: 3, sleep_s: 0.5", "epochs: 1, sleep_s: 0")
    (tmp_path / "s.yaml").write_text(small)
    starts = [_start(tmp_path, "run", "s.yaml", "--storage", "runs", *extra, log=f"{i}.log")
              for i, extra in enumerate([[], [], ["--name", "other"]])]
    codes = [p.wait(timeout=300) for p in starts]
    logs = [(tmp_path / f"{i}.log").read_text() for i in range(3)]
    assert sorted(codes[:2]) == [0, 2] and codes[2] == 0, (codes, logs)
    refused = logs[codes.index(2)]
    assert refused.strip().splitlines() == [
        f"tunelab: error: s.yaml: name: the search 'faults' in {tmp_path / 'runs'} is already running in another "
        "process; wait for it to end, or stop it"]
    for name in ("faults", "other"):
        search = _Search(tmp_path / "runs", name)
        assert len(search.children()) == 2 and search.parent().info.status == "FINISHED"
        assert len(list((tmp_path / "runs" / name).glob("experiment_state*.json"))) == 1
        client = search.client
        assert len(client.search_runs([search.state["experiment_id"]], "tags.`tunelab.spec_hash` != ''")) == 1


def test_a_space_with_no_feasible_config_is_refused_before_anything_starts(tmp_path):
    proc = _cli(tmp_path, "run", "ptb_smoke", "--storage", "runs", "--set", "constraints.params=[0, 10]", timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("tunelab: error: ") and ": constraints: no config of the space is feasible" in line
    assert "params" in line
    assert not (tmp_path / "runs").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB file system of its own (tmpfs): what a full disk is, for real."""
    disk = tmp_path / "disk"
    disk.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True, text=True)
    if made.returncode != 0:
        # As root (CI, this project's machines) the mount must work: a refusal fails the test. Only an
        # unprivileged user cannot make a file system that this process and the driver both see (a user
        # namespace's mount would be the driver's alone), so there the test cannot run.
        assert os.geteuid() != 0, f"mounting a 4 MB tmpfs as root failed: {made.stderr.strip()}"
        pytest.skip(f"cannot mount a small tmpfs without root: {made.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.slow
def test_a_full_disk_interrupts_the_search_in_one_line_and_it_resumes_once_there_is_room(tmp_path, small_disk):
    (tmp_path / "s.yaml").write_text(SEARCH)
    search = _Search(small_disk)
    db = tmp_path / "mlflow.db"  # the tracking database elsewhere: what fills is the results' disk
    driver = _start(tmp_path, "run", "s.yaml", "--storage", str(small_disk), "--set", f"tracking.uri=sqlite:///{db}")
    search._client = _mlflow.client_for(f"sqlite:///{db}")
    _wait_for(driver, tmp_path / "driver.log", lambda: search.steps() >= 2)
    with open(small_disk / "filler", "wb") as f:  # the disk fills up
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * (64 << 10))
                f.flush()
    assert driver.wait(timeout=120) == 3
    out = (tmp_path / "driver.log").read_text()
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("tunelab: error:")]
    assert len(errors) == 1 and "the disk is full" in errors[0] and " resume faults --storage " in errors[0]
    parent = search.parent()
    assert parent.info.status == "KILLED" and parent.data.tags["tunelab.state"] == "INTERRUPTED"
    assert all(r.info.status != "RUNNING" for r in search.children())

    (small_disk / "filler").unlink()  # room again
    resumed = _cli(tmp_path, "resume", "faults", "--storage", str(small_disk))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert search.parent().info.status == "FINISHED"
    asked, distinct, _ = _distinct_and_one_run_each(search)
    assert asked == distinct
    assert sum(t.state == TrialState.COMPLETE for t in load_study(small_disk / "faults").trials) == 6
