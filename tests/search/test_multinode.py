"""Searches on a several-node Ray cluster (issue 5): placement by resources, and losing a node.

The nodes are ``ray.cluster_utils.Cluster`` nodes (a raylet and object store each) on this one machine.
The cluster lives in a child process, ``_multinode_driver.py``, which runs the search on it with
``search.run(s, address=cluster.address)`` and writes a JSON summary; these tests assert on that summary,
on the MLflow store and on the Optuna study it leaves behind. The child has a Ray temp folder of its own
(``RAY_TMPDIR``): a cluster's head writes its address to ``<temp>/ray/ray_current_cluster``
(``Cluster.add_node``, ray/cluster_utils.py), and a plain ``ray.init()``, such as the suite's
``ray_session`` fixture or another test session on this machine, reads that file and would join this
cluster instead of starting its own (``get_ray_address_from_environment``, ray/_private/services.py).
The child runs in a session of its own; whatever of it outlives it is killed, by process group and by
its temp folder, so a failed or timed-out test leaves no raylet behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tunelab import _mlflow
from tunelab.search import load_study
from tunelab.trainables import metrics
from tunelab.trainables import tags

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("_multinode_driver.py")
TIMEOUT_S = 240  # each scenario takes 40-60 s on 2 cores; the rest is room for a busy machine


def _ours(ray_tmp: str) -> list[int]:
    """Live processes of the child's cluster: every one inherited the child's RAY_TMPDIR."""
    marker = f"RAY_TMPDIR={ray_tmp}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                env = Path(f"/proc/{entry}/environ").read_bytes()
            except OSError:  # gone, or not ours to read
                continue
            if marker in env.split(b"\0"):
                pids.append(int(entry))
    return pids


def _kill_leftovers(proc: subprocess.Popen, ray_tmp: str) -> list[int]:
    """SIGKILL the child's process group and anything else still carrying its RAY_TMPDIR; returns the
    pids that outlived a few seconds' grace after the child ended (cluster.shutdown() should leave none)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.time() + 5
    while (left := _ours(ray_tmp)) and time.time() < deadline:
        time.sleep(0.5)
    for _ in range(20):
        for pid in _ours(ray_tmp):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not _ours(ray_tmp):
            break
        time.sleep(0.5)
    try:  # the group itself (every member is ours): nothing should remain, but never leave a raylet
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return left


def _drive(scenario: str, tmp_path: Path) -> dict:
    """Run one scenario of the driver in a child process; its summary, or a failure with its log."""
    workdir = tmp_path / scenario
    workdir.mkdir()
    # Short on purpose: Ray puts its Unix sockets under it, and socket paths are limited to 107 bytes.
    ray_tmp = tempfile.mkdtemp(prefix="rmn", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    log_path = workdir / "driver.log"
    timed_out = False
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, str(DRIVER), scenario, str(workdir)], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            left = _kill_leftovers(proc, ray_tmp)
            shutil.rmtree(ray_tmp, ignore_errors=True)
    tail = log_path.read_text()[-4000:]
    if timed_out:
        pytest.fail(f"{scenario}: the driver ran past {TIMEOUT_S} s and was killed\n{tail}")
    summary_path = workdir / "summary.json"
    if not summary_path.exists():
        pytest.fail(f"{scenario}: the driver wrote no summary (exit {proc.returncode})\n{tail}")
    summary = json.loads(summary_path.read_text())
    assert summary["ok"], f"{summary.get('error')}\n{tail}"
    assert not left, f"cluster processes outlived cluster.shutdown(): {left}"
    return summary


def _max_overlap(intervals: list[tuple[int, int]]) -> int:
    """The most intervals open at one instant."""
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda e: (e[0], e[1]))
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def _records(outcome: dict):
    client = _mlflow.client_for(outcome["tracking_uri"])
    parent = client.get_run(outcome["parent_run_id"])
    return client, parent, _mlflow.children(client, parent.info.experiment_id, outcome["parent_run_id"])


def test_quarter_gpu_trials_pack_four_at_a_time_on_the_gpu_node(tmp_path):
    """Head with no CPUs, a node declaring 4 CPUs and 1 GPU (there is none), a CPU-only node with 4 CPUs;
    4 rnn trials asking for {cpu: 1, gpu: 0.25}, max_concurrent 4."""
    s = _drive("placement", tmp_path)
    nodes, trials = s["nodes"], s["trials"]
    assert len(trials) == 4
    assert all(t["status"] == "TERMINATED" and t["num_failures"] == 0 for t in trials), trials
    assert s["outcome"]["counts"][metrics.COMPLETED] == 4

    # Every node here has the same hostname and IP, so Tune's `node_ip` cannot tell them apart; the
    # trial's actor pid (in every result) looked up in the GCS actor table gives its node id.
    assert len({r["node_ip"] for t in trials for r in t["rows"]}) == 1
    actors = {a["pid"]: a for a in s["actors"]}
    lifetimes = []
    for t in trials:
        (pid,) = {r["pid"] for r in t["rows"]}
        assert actors[pid]["node_id"] == nodes["gpu"], (t["trial_id"], actors[pid])
        lifetimes.append((actors[pid]["start_ms"], actors[pid]["end_ms"]))
    # The four quarter-GPU trials were alive on the one GPU at once, while the CPU-only node, with as
    # many CPUs free, ran nothing.
    assert _max_overlap(lifetimes) == 4, lifetimes
    assert not [a for a in s["actors"] if a["node_id"] == nodes["cpu"]]

    # What those trials saw: Ray set CUDA_VISIBLE_DEVICES to the declared GPU; torch finds no CUDA
    # (no driver, no device) and rnn's device=auto trained on the CPU, as the completed trials show.
    probe = s["probe"]
    assert probe["node_id"] == nodes["gpu"]
    assert probe["cuda_visible_devices"] == "0" and probe["gpu_ids"] == ["0"]
    if not Path("/dev/nvidia0").exists():
        assert probe["torch_cuda_available"] is False

    client, parent, kids = _records(s["outcome"])
    assert len(kids) == 4 and parent.info.status == "FINISHED"


def test_a_lost_node_s_trial_resumes_from_its_checkpoint_on_another_node(tmp_path):
    """Head with no CPUs and two 1-CPU nodes; 3 checkpointing synthetic trials of 5 one-second epochs,
    max_concurrent 2, max_failures 1; the node running a trial that has checkpointed twice is killed."""
    s = _drive("node_loss", tmp_path)
    nodes, fault, outcome = s["nodes"], s["fault"], s["outcome"]
    assert fault, "no trial reached its second checkpoint on the node to be removed"
    trials = {t["trial_id"]: t for t in s["trials"]}
    epochs = list(range(1, 6))

    # budget.trials trials, each counted once, all completed; only the victim failed, once.
    assert len(trials) == 3 and len(outcome["trials"]) == 3
    assert sorted(t["trial_id"] for t in outcome["trials"]) == sorted(trials)
    assert outcome["counts"][metrics.COMPLETED] == 3 and outcome["counts"][metrics.ERROR] == 0
    assert {k: t["num_failures"] for k, t in trials.items()} == {k: int(k == fault["trial_id"]) for k in trials}

    # The victim: its first actor died with the node, the second ran on the surviving node.
    actors = {a["pid"]: a for a in s["actors"]}
    rows = trials[fault["trial_id"]]["rows"]
    pids = list(dict.fromkeys(r["pid"] for r in rows))
    assert len(pids) == 2 and pids[0] == fault["pid"], pids
    assert actors[pids[0]]["node_id"] == nodes["lose"] and actors[pids[0]]["state"] == "DEAD"
    assert actors[pids[1]]["node_id"] == nodes["keep"]
    # Resumed from its checkpoint, not from the start: the new actor's first report is the epoch after
    # the last one before the fault, and every epoch was trained and reported once (5 in all, not 5 + 2).
    before = [r for r in rows if r["pid"] == pids[0]]
    after = [r for r in rows if r["pid"] == pids[1]]
    assert before[-1]["epoch"] >= fault["iteration"] >= 2
    assert after[0]["epoch"] == before[-1]["epoch"] + 1 > 1
    assert [r["epoch"] for r in rows] == [r["training_iteration"] for r in rows] == epochs
    walls = [r["wall_s"] for r in rows]
    assert walls == sorted(walls)  # wall_s went on from the checkpoint's
    # Every other trial ran on the surviving node only.
    for trial_id, t in trials.items():
        if trial_id != fault["trial_id"]:
            assert {actors[r["pid"]]["node_id"] for r in t["rows"]} == {nodes["keep"]}

    # MLflow: one child run per trial, every step once, the victim's epochs 1..5 once each.
    client, parent, kids = _records(outcome)
    assert sorted(r.data.tags[tags.TRIAL_ID] for r in kids) == sorted(trials)
    for run in kids:
        assert run.data.tags[tags.STATUS] == metrics.COMPLETED
        assert [m.step for m in client.get_metric_history(run.info.run_id, metrics.VAL_LOSS)] == epochs
    (victim_run,) = [r for r in kids if r.data.tags[tags.TRIAL_ID] == fault["trial_id"]]
    history = client.get_metric_history(victim_run.info.run_id, metrics.EPOCH)
    assert [(m.step, m.value) for m in history] == [(e, float(e)) for e in epochs]
    assert parent.data.tags["tunelab.n_completed"] == "3" and parent.info.status == "FINISHED"

    # Optuna: three trials told, all COMPLETE; the retry was not a new trial.
    exp_dir = Path(outcome["experiment_dir"])
    study = load_study(exp_dir)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
