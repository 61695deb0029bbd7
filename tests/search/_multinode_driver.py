"""The child-process half of test_multinode.py: a search on a several-node Ray cluster on this machine.

    python tests/search/_multinode_driver.py SCENARIO WORKDIR

builds a ``ray.cluster_utils.Cluster`` (every node a raylet of its own on this one machine), runs the
scenario's search on it with ``search.run(s, address=cluster.address)`` and writes what the test checks
to ``WORKDIR/summary.json``. It runs in its own process (and session) so that the cluster never meets
the local Ray that the rest of the suite shares in-process, and so the test can kill all of it at once.

Scenarios:
    placement: a head with no CPUs, a node declaring one GPU (that does not exist) and a CPU-only node;
        rnn trials asking for {cpu: 1, gpu: 0.25}.
    node_loss: a head with no CPUs and two one-CPU nodes; checkpointing synthetic trials; the node
        running a trial that has checkpointed twice is killed mid-search.

Which node ran a trial: every node here has the same hostname and IP, so Tune's own ``hostname`` and
``node_ip`` in a result cannot tell. Each result does carry the ``pid`` of the trial's actor, and the
GCS actor table (``tunelab._private.ray_actors``: ``ray._private.state.actors()``, the table behind ``ray.util.state.list_actors``,
read straight from the GCS because the state API needs the dashboard, which is off) gives every
actor's pid, node id, start and end time, dead ones included.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from tunelab import _private, search  # noqa: E402
from tunelab import spaces  # noqa: E402

SMOKE = spaces.CATALOGUE / "ptb_smoke.yaml"
LOAD = spaces.CATALOGUE / "synthetic_load.yaml"
TINY_RNN = ["hidden_size=32", "train_fraction=0.01", "eval_fraction=0.05", "cell=lstm"]


def _node_args(**kw) -> dict:
    # No dashboard (2 cores), and the dashboard agent on a free port: Ray gives every head the fixed
    # port 52365 (RayParams.dashboard_agent_listen_port), which a local `ray.init()` elsewhere on this
    # machine already holds. Cluster.add_node frees it only for worker nodes (ray/cluster_utils.py).
    return {"include_dashboard": False, "dashboard_agent_listen_port": None, **kw}


def _actors() -> list[dict]:
    out = []
    for info in _private.ray_actors():
        out.append({
            "pid": info["Pid"], "node_id": info["Address"]["NodeID"], "state": info["State"],
            "class_name": info["ActorClassName"], "start_ms": info["StartTime"], "end_ms": info["EndTime"],
            "death_cause": str(info.get("DeathCause") or "")[:300],
        })
    return out


def _trials(exp_dir: Path) -> list[dict]:
    """Every trial of the search with the rows Ray wrote to its result.json."""
    out = []
    for trial in tune.ExperimentAnalysis(str(exp_dir)).trials:
        rows = []
        path = Path(trial.path) / "result.json"
        for line in path.read_text().splitlines() if path.exists() else []:
            r = json.loads(line)
            rows.append({k: r.get(k) for k in ("trial_id", "pid", "training_iteration", "epoch", "timestamp",
                                               "time_total_s", "wall_s", "val_loss", "val_ppl", "hostname",
                                               "node_ip")})
        out.append({"trial_id": trial.trial_id, "status": trial.status,
                    "num_failures": trial.run_metadata.num_failures, "rows": rows})
    return out


def _outcome(outcome) -> dict:
    return {
        "experiment_dir": str(outcome.experiment_dir), "tracking_uri": outcome.tracking_uri,
        "parent_run_id": outcome.parent_run_id, "counts": outcome.counts(),
        "trials": [{"trial_id": t.trial_id, "status": t.status, "iterations": t.iterations} for t in outcome.trials],
    }


@ray.remote(num_cpus=1, num_gpus=0.25)
def _gpu_probe() -> dict:
    """What a worker holding a quarter of the declared GPU sees: what the rnn trials saw."""
    import torch

    return {
        "node_id": ray.get_runtime_context().get_node_id(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "gpu_ids": [str(i) for i in ray.get_gpu_ids()],
        "torch_cuda_available": torch.cuda.is_available(),
    }


def _connect(cluster: Cluster) -> None:
    # The driver joins the cluster itself: search.run then leaves Ray connected when it returns (it
    # disconnects only from a Ray it started), and the state API still answers what ran where.
    ray.init(address=cluster.address, configure_logging=False)


def placement(cluster: Cluster, workdir: Path) -> dict:
    gpu = cluster.add_node(num_cpus=4, num_gpus=1)
    cpu = cluster.add_node(num_cpus=4)
    cluster.wait_for_nodes()
    s = spaces.load(SMOKE, [*TINY_RNN, "epochs=2", "scheduler.name=fifo", "budget.trials=4",
                            "budget.max_concurrent=4", "resources.cpu=1", "resources.gpu=0.25",
                            f"storage={workdir}"])
    _connect(cluster)
    outcome = search.run(s, address=cluster.address)
    return {
        "nodes": {"head": cluster.head_node.node_id, "gpu": gpu.node_id, "cpu": cpu.node_id},
        "outcome": _outcome(outcome), "trials": _trials(outcome.experiment_dir), "actors": _actors(),
        "probe": ray.get(_gpu_probe.remote(), timeout=120),
    }


def node_loss(cluster: Cluster, workdir: Path) -> dict:
    keep = cluster.add_node(num_cpus=1)
    lose = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    s = spaces.load(LOAD, ["epochs=5", "sleep_s=1", "checkpoint=true", "scheduler.name=fifo", "budget.trials=3",
                           "budget.max_concurrent=2", "budget.max_failures=1", f"storage={workdir}"])
    exp_dir = workdir / s.spec.name
    fault: dict = {}

    def kill_when_checkpointed() -> None:
        """Remove `lose` once a trial on it has reported (and so checkpointed) twice."""
        deadline = time.time() + 120
        while time.time() < deadline and not fault:
            time.sleep(0.2)
            if not ray.is_initialized():
                continue
            try:
                pids = {a["pid"] for a in _actors() if a["node_id"] == lose.node_id and a["state"] == "ALIVE"}
            except Exception:  # the driver is still connecting
                continue
            for path in exp_dir.glob("*/result.json"):
                rows = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
                mine = [r for r in rows if r.get("pid") in pids]
                if mine and mine[-1]["training_iteration"] >= 2:
                    fault.update(trial_id=mine[-1]["trial_id"], pid=mine[-1]["pid"],
                                 iteration=mine[-1]["training_iteration"], at=time.time())
                    # SIGKILL, as a machine that vanishes: no graceful drain. Tune does not wait for the
                    # GCS to declare the node dead (its health checks take 20 s or more with Ray's
                    # defaults, kept here): the driver's call into the trial's actor fails at once
                    # (ActorUnavailableError, socket closed), which counts as one failure of the trial.
                    cluster.remove_node(lose, allow_graceful=False)
                    fault["removed_after_s"] = time.time() - fault["at"]
                    return

    watcher = threading.Thread(target=kill_when_checkpointed, daemon=True)
    watcher.start()
    _connect(cluster)
    outcome = search.run(s, address=cluster.address)
    watcher.join(timeout=5)
    return {
        "nodes": {"head": cluster.head_node.node_id, "keep": keep.node_id, "lose": lose.node_id},
        "fault": fault, "outcome": _outcome(outcome), "trials": _trials(outcome.experiment_dir),
        "actors": _actors(),
    }


SCENARIOS = {"placement": placement, "node_loss": node_loss}


def main(scenario: str, workdir: Path) -> int:
    fn = SCENARIOS[scenario]
    started = time.time()
    # The head takes no trial: a trial is placed only by the resources the worker nodes declare.
    cluster = Cluster(initialize_head=True, head_node_args=_node_args(num_cpus=0))
    summary: dict = {"scenario": scenario, "address": cluster.address}
    try:
        summary.update(fn(cluster, workdir))
        summary["ok"] = True
    except BaseException:
        summary.update(ok=False, error=traceback.format_exc())
    finally:
        summary["wall_s"] = time.time() - started
        (workdir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
        ray.shutdown()
        cluster.shutdown()
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2]).resolve()))
