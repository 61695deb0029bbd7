"""cluster.yaml, checked offline: Ray's own launcher validation, then the properties the design fixes.

`ray up` runs `prepare_config` (merge with the provider's defaults.yaml, fold setup_commands into the
head and worker lists, check docker, fill per-type min/max workers), then asks AWS for instance
resources, then `validate_config` (Ray's JSON schema plus cross-field checks), then the AWS bootstrap.
The two local steps are called here in the same order; the AWS steps, and boto3, are not needed.
Properties are read from the prepared config, because that is what the launcher runs: a list left out
of the file is filled from Ray's defaults (whose head start command binds the dashboard to 0.0.0.0).
"""

from __future__ import annotations

import copy
import fnmatch
import re
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from tunelab._private import ray_cluster_config

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_YAML = ROOT / "cluster.yaml"
TOKEN = "~/.ray/auth_token"
LOOPBACK = "127.0.0.1"

COMMAND_LISTS = (
    "initialization_commands",
    "setup_commands",
    "head_setup_commands",
    "worker_setup_commands",
    "head_start_ray_commands",
    "worker_start_ray_commands",
)


def _validate(raw: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` does to the file before touching AWS; returns the prepared config."""
    return ray_cluster_config(raw)


def _commands(cfg: dict[str, Any], *lists: str) -> list[str]:
    """The shell commands of the named lists (all of them by default), node-type overrides included."""
    lists = lists or COMMAND_LISTS
    out = [cmd for key in lists for cmd in cfg.get(key) or []]
    for node_type in cfg["available_node_types"].values():
        out += [cmd for key in lists for cmd in node_type.get(key) or []]
    return out


def _worker_types(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in cfg["available_node_types"].items() if k != cfg["head_node_type"]}


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture(scope="module")
def prepared(raw) -> dict[str, Any]:
    return _validate(raw)


def test_ray_accepts_the_file_without_aws(raw):
    had_boto3 = "boto3" in sys.modules
    _validate(raw)
    assert had_boto3 or "boto3" not in sys.modules, "validation imported boto3: it would need AWS"


@pytest.mark.parametrize(
    "break_it, match",
    [
        (lambda c: c.__setitem__("max_worker", c.pop("max_workers")), "'max_worker' was unexpected"),
        (lambda c: c.__setitem__("idle_timeout_minutes", "10"), "is not of type 'number'"),
        (lambda c: c["available_node_types"]["gpu_worker"].__setitem__("min_worker", 0), "'min_worker'"),
        # Node resources are whole numbers in Ray's schema; fractional GPUs belong to a trial.
        (lambda c: c["available_node_types"]["gpu_worker"]["resources"].__setitem__("GPU", 0.5), "0.5"),
        (lambda c: c["provider"]["security_group"].__setitem__("IpPermission", []), "'IpPermission'"),
    ],
    ids=["misspelt top-level key", "wrong type", "misspelt node-type key", "fractional node GPU",
         "misspelt security-group key"],
)
def test_ray_rejects_a_broken_copy(raw, break_it, match):
    broken = copy.deepcopy(raw)
    break_it(broken)
    with pytest.raises(jsonschema.ValidationError, match=match):
        _validate(broken)


def test_ray_rejects_more_min_workers_than_the_cluster_allows(raw):
    broken = copy.deepcopy(raw)
    broken["available_node_types"]["gpu_worker"]["min_workers"] = broken["max_workers"] + 1
    with pytest.raises(ValueError, match="max_workers"):
        _validate(broken)


def test_dashboard_and_mlflow_listen_on_loopback_only(prepared):
    commands = _commands(prepared)
    assert not [c for c in commands if "0.0.0.0" in c]

    head_start = _commands(prepared, "head_start_ray_commands")
    dashboard = [h for c in head_start for h in re.findall(r"--dashboard-host[= ](\S+)", c)]
    assert dashboard and all(h.strip("'\"") == LOOPBACK for h in dashboard), dashboard
    assert any(re.search(r"--dashboard-port[= ]8265\b", c) for c in head_start)
    # A worker runs no dashboard head; were one started, it must not bind elsewhere either.
    assert all(h.strip("'\"") == LOOPBACK for c in commands for h in re.findall(r"--dashboard-host[= ](\S+)", c))

    servers = [c.split("mlflow server", 1)[1] for c in commands if "mlflow server" in c]
    assert len(servers) == 1, servers
    hosts = re.findall(r"(?:--host|-h)[= ](\S+)", servers[0])
    assert [h.strip("'\"") for h in hosts] == [LOOPBACK]
    assert re.search(r"--port[= ]5000\b", servers[0])
    # Artifacts served by the same server from the head's disk (the runs: see the test below).
    assert re.search(r"--artifacts-destination[= ]\S*\$HOME/", servers[0])
    assert not [c for c in _commands(prepared, "worker_setup_commands", "worker_start_ray_commands")
                if "mlflow" in c]
    assert any("mlflow server" in c for c in _commands(prepared, "head_setup_commands", "head_start_ray_commands"))


def test_the_auth_token_is_mounted_on_every_node(prepared):
    # file_mounts go to the head, then from the head to each worker: every node gets the token.
    assert prepared["file_mounts"].get(TOKEN) == TOKEN
    for pattern in prepared.get("rsync_exclude") or []:
        assert not any(fnmatch.fnmatch(part, pattern.rstrip("/")) for part in (".ray", "auth_token")), pattern


@pytest.mark.parametrize("start", ["head_start_ray_commands", "worker_start_ray_commands"])
def test_ray_starts_with_token_auth(prepared, start):
    # Each command runs in its own shell, so the variable must be set on the line that starts Ray.
    starts = [c for c in _commands(prepared, start) if re.search(r"\bray start\b", c)]
    assert len(starts) == 1, starts
    assert "RAY_AUTH_MODE=token" in starts[0]


def test_workers_join_the_head_on_its_private_address(prepared):
    (start,) = [c for c in _commands(prepared, "worker_start_ray_commands") if "ray start" in c]
    assert "--address=$RAY_HEAD_IP:6379" in start


def test_gpu_workers_autoscale_within_the_cluster_limit(raw, prepared):
    # Ray fills a missing top-level max_workers from its defaults (2) without a word: require it here.
    assert isinstance(raw.get("max_workers"), int) and raw["max_workers"] >= 1
    gpu = {k: v for k, v in _worker_types(prepared).items() if v["resources"].get("GPU", 0) >= 1}
    assert gpu, "no worker type offers a GPU"
    for name, node_type in gpu.items():
        # Ray checks only the sum of min_workers against max_workers, not min <= max per type.
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"] <= prepared["max_workers"], name
        assert node_type["resources"].get("CPU", 0) >= 1, name
    head = prepared["available_node_types"][prepared["head_node_type"]]
    assert head["max_workers"] == 0
    assert head["resources"].get("GPU", 0) == 0 and head["resources"].get("CPU") == 0  # no trial on the head


def test_setup_installs_the_wheel_with_its_pins(prepared):
    # `make wheel` puts the wheel and the pins in dist/, which every node gets as ~/tunelab-dist.
    assert prepared["file_mounts"].get("~/tunelab-dist") == "dist"
    assert "cp constraints.txt dist/" in (ROOT / "Makefile").read_text()
    for key in ("head_setup_commands", "worker_setup_commands"):  # setup_commands folded into both
        commands = _commands(prepared, key)
        assert any(
            re.search(r"pip install[^&;|]*-c ~/tunelab-dist/constraints\.txt[^&;|]* ~/tunelab-dist/tunelab-\*\.whl", c)
            for c in commands
        ), key
        # Every install but pip's own upgrade goes through the pins.
        steps = [s for c in commands for s in re.split(r"&&|\|\||;", c) if "pip install" in s]
        assert all(re.search(r"-c \S*constraints\.txt", s) for s in steps if "--upgrade pip" not in s), steps
    # The head's autoscaler launches workers through boto3, which Ray's replaced defaults used to install.
    assert any("pip install" in c and "boto3" in c for c in _commands(prepared, "head_setup_commands"))


@pytest.mark.parametrize("local_only", [".venv", "runs", "mlruns", "__pycache__", "tokens"])
def test_local_state_is_not_synced(prepared, local_only):
    excludes = prepared.get("rsync_exclude") or []
    assert any(fnmatch.fnmatch(local_only, p.rstrip("/")) for p in excludes), excludes


def test_security_group_opens_nothing_but_ssh(prepared):
    # Ray's own group allows the cluster's nodes to each other and SSH; IpPermissions adds to that.
    for rule in prepared["provider"].get("security_group", {}).get("IpPermissions", []):
        assert (rule.get("IpProtocol"), rule.get("FromPort"), rule.get("ToPort")) == ("tcp", 22, 22), rule
    for name, node_type in prepared["available_node_types"].items():
        # A group of one's own would bypass the rules above; this file leaves the group to Ray.
        assert "SecurityGroupIds" not in node_type["node_config"], name


def test_mlflow_keeps_its_runs_in_postgresql_and_asks_for_logins(prepared):
    setup = _commands(prepared, "head_setup_commands")
    (start,) = [c for c in _commands(prepared, "head_start_ray_commands") if "mlflow server" in c]
    server = start.split("mlflow server", 1)[1]
    # Debian/Ubuntu's PostgreSQL, installed only if missing (each setup line runs again on `ray up`).
    assert any(re.search(r"dpkg -s postgresql .*\|\|.*apt-get install -y -qq postgresql", c) for c in setup)
    # Runs and users in two databases on the Unix socket (peer authentication: no password anywhere).
    assert re.search(r'--backend-store-uri[= ]"?postgresql:///mlflow\?host=/var/run/postgresql', server)
    assert any("createdb" in c and "mlflow mlflow_auth" in c for c in setup)
    (ini,) = [c for c in setup if "basic_auth.ini" in c]
    assert "database_uri = postgresql:///mlflow_auth?host=/var/run/postgresql" in ini
    assert not any(re.search(r"postgresql://[^/\s]*:[^@\s]*@", c) for c in _commands(prepared))
    # PostgreSQL keeps Debian's default, localhost only: nothing here widens listen_addresses.
    assert not any("listen_addresses" in c or "pg_hba" in c for c in _commands(prepared))
    # MLflow's basic-auth app, configured by the file above; the admin's password is drawn on the head,
    # never written in this file.
    assert re.search(r"--app-name[= ]basic-auth\b", server)
    assert 'MLFLOW_AUTH_CONFIG_PATH="$HOME/mlflow/basic_auth.ini"' in start
    assert 'MLFLOW_AUTH_ADMIN_PASSWORD="$(cat ~/mlflow/admin_password)"' in start
    assert any("test -s ~/mlflow/admin_password ||" in c and "umask 077" in c for c in setup)
    assert "admin_password =" not in " ".join(setup)
