"""Searches as Ray Jobs on a cluster: submit, status, logs, stop.

The search file is checked here, before anything is sent; the project folder goes to the cluster as
the job's ``working_dir`` (results, virtual environments and caches left out), and the job's
entrypoint is ``tunelab run`` on the head, whose driver joins the cluster through the ``RAY_ADDRESS``
the Jobs server gives it. Token authentication (Ray 2.60's default) is Ray's own: with
``RAY_AUTH_MODE=token`` the client sends the token of ``RAY_AUTH_TOKEN`` or ``~/.ray/auth_token``.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Iterator, Sequence
from pathlib import Path

import spaces

PROJECT = Path(__file__).resolve().parents[1]
# Never uploaded: local results and databases, environments, caches, prepared token files.
EXCLUDES = [
    ".venv", "venv", "runs", "mlruns", "mlartifacts", "reports", "tokens", "*.db",
    "__pycache__", ".pytest_cache", "*.egg-info", ".git", "build",
]
# Where results go on the cluster when the search file names no storage: the head's home, which
# outlives the job (its working_dir is a temporary copy).
CLUSTER_STORAGE = "~/tunelab-runs"


class JobError(RuntimeError):
    """The Jobs server refused a request or could not be reached."""


def client(address: str):
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # ConnectionError, RuntimeError (401/403 come back as RuntimeError)
        raise JobError(f"{address}: {_first_line(exc)}") from None


def entrypoint(file: Path, overrides: Sequence[str], name: str | None, storage: str | None) -> str:
    """The shell command the job runs on the head, from the project folder."""
    rel = file.resolve().relative_to(PROJECT)
    args = ["python", "-m", "search.cli", "run", rel.as_posix()]
    for o in overrides:
        args += ["--set", o]
    if name:
        args += ["--name", name]
    cmd = shlex.join(args)
    # The storage is left to the head's shell so that ~ means the head's home.
    return f"{cmd} --storage {storage if storage else CLUSTER_STORAGE}"


def submit(address: str, file: str, overrides: Sequence[str] = (), name: str | None = None,
           storage: str | None = None) -> str:
    """Check the search file here, then send it as a Ray Job; returns the job's submission id."""
    path = Path(file)
    search = spaces.load(path, list(overrides))  # bad input stops here: exit 2, nothing sent
    if not path.resolve().is_relative_to(PROJECT):
        raise spaces.SpecError(str(path), "", f"must lie inside the project folder {PROJECT}, which is "
                               "what travels to the cluster")
    c = client(address)
    try:
        return c.submit_job(
            entrypoint=entrypoint(path, overrides, name, storage or search.spec.storage),
            runtime_env={"working_dir": str(PROJECT), "excludes": EXCLUDES},
            metadata={"tunelab.search": name or search.spec.name, "tunelab.file": path.name},
        )
    except Exception as exc:
        raise JobError(f"{address}: submitting {path}: {_first_line(exc)}") from None


def status(address: str, job_id: str) -> dict:
    info = _call(address, "get_job_info", job_id)
    return {"job_id": job_id, "status": str(info.status), "message": info.message,
            "entrypoint": info.entrypoint, "search": (info.metadata or {}).get("tunelab.search")}


def logs(address: str, job_id: str) -> str:
    return _call(address, "get_job_logs", job_id)


def follow(address: str, job_id: str) -> Iterator[str]:
    """The job's log as it grows, until the job ends."""
    c = client(address)
    agen = c.tail_job_logs(job_id)
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                yield loop.run_until_complete(agen.__anext__())
            except StopAsyncIteration:
                return
    finally:
        loop.run_until_complete(agen.aclose())
        loop.close()


def stop(address: str, job_id: str) -> bool:
    """Ask the job to stop (SIGTERM to the driver, which ends its trials); False if it had ended."""
    return _call(address, "stop_job", job_id)


def _call(address: str, method: str, job_id: str):
    c = client(address)
    try:
        return getattr(c, method)(job_id)
    except Exception as exc:
        raise JobError(f"{address}: job {job_id}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
