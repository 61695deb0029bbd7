"""Searches as Ray Jobs on a cluster: submit, status, logs, stop.

The search file is checked here, before anything is sent. Its text travels with the job (in the
job's environment, ``TUNELAB_SEARCH_TEXT``), so any file works, wherever it lies: the job writes it
into its working directory and runs it. The folder you submit from (your project: its code, small
data) goes to the cluster as the job's ``working_dir`` (results, virtual environments, caches and
token folders left out), as ``ray job submit --working-dir .`` sends it; tunelab itself is not sent:
every node has the same version installed (``cluster.yaml``), and the entrypoint is ``python -m
tunelab run`` on the head, whose driver joins the cluster through the ``RAY_ADDRESS`` the Jobs
server gives it. A relative ``data.dir`` or ``data.tokens`` travels only if it lies in the part of
that folder that is sent, where the job finds it at the same relative path; any other is refused
before anything is sent. ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``, when set here, go with the
job, so the search's runs are the submitter's on a tracking server with logins.

Token authentication (Ray 2.60's default) is Ray's own: with ``RAY_AUTH_MODE=token`` the client sends
the token of ``RAY_AUTH_TOKEN`` or ``~/.ray/auth_token``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import shlex
from collections.abc import Iterator, Sequence
from pathlib import Path

from tunelab import spaces
from tunelab.trainables import tags

# Never uploaded: local results and databases, environments, caches, prepared token files.
EXCLUDES = [
    ".venv", "venv", "runs", "mlruns", "mlartifacts", "reports", "tokens", "*.db",
    "__pycache__", ".pytest_cache", "*.egg-info", ".git", "build",
]
# Where results go on the cluster when the search file names no storage: the head's home, which
# outlives the job (its working_dir is a temporary copy).
CLUSTER_STORAGE = "~/tunelab-runs"
TEXT_VAR = "TUNELAB_SEARCH_TEXT"  # the search file's text, in the job's environment
SUBMITTED = ".tunelab-submitted"  # where the job writes it, inside its working directory
FORWARDED = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
DATA_PATHS = ("dir", "tokens")  # data keys that name folders


class JobError(RuntimeError):
    """The Jobs server refused a request or could not be reached."""


def client(address: str):
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # ConnectionError, RuntimeError (401/403 come back as RuntimeError)
        raise JobError(f"{address}: {_first_line(exc)}") from None


def entrypoint(file_name: str, overrides: Sequence[str], name: str | None, storage: str | None) -> str:
    """The shell command the job runs on the head, from its copy of the project folder: write the
    search file's text (``$TUNELAB_SEARCH_TEXT``) under its own name, then run it."""
    target = f"{SUBMITTED}/{file_name}"
    args = ["python", "-m", "tunelab", "run", target]
    for o in overrides:
        args += ["--set", o]
    if name:
        args += ["--name", name]
    write = f'mkdir -p {SUBMITTED} && printf "%s" "${TEXT_VAR}" > {shlex.quote(target)}'
    # The storage is left to the head's shell so that ~ means the head's home.
    return f"{write} && {shlex.join(args)} --storage {storage if storage else CLUSTER_STORAGE}"


def submit(address: str, file: str, overrides: Sequence[str] = (), name: str | None = None,
           storage: str | None = None) -> str:
    """Check the search file here, then send it as a Ray Job; returns the job's submission id."""
    path = Path(file)
    search = spaces.load(path, list(overrides))  # bad input stops here: exit 2, nothing sent
    folder = Path.cwd()
    moved = travelling_data(search, folder)  # a data folder that cannot travel stops here too
    env = {TEXT_VAR: search.text, **{k: os.environ[k] for k in FORWARDED if os.environ.get(k)}}
    c = client(address)
    try:
        return c.submit_job(
            entrypoint=entrypoint(Path(search.file).name, [*overrides, *moved], name, storage or search.spec.storage),
            runtime_env={"working_dir": str(folder), "excludes": EXCLUDES, "env_vars": env},
            metadata={tags.JOB_SEARCH: name or search.spec.name, tags.JOB_FILE: str(Path(search.file).resolve()),
                      tags.JOB_VERSION: _version()},
        )
    except Exception as exc:
        raise JobError(f"{address}: submitting {path}: {_first_line(exc)}") from None


def _version() -> str:
    import tunelab

    return tunelab.__version__


def travelling_data(search: spaces.Search, folder: Path | None = None) -> list[str]:
    """``--set`` overrides that give the job each relative data folder relative to its copy of ``folder``.

    Args:
        folder: the folder sent as the job's working directory (default: the current one).

    Raises:
        spaces.SpecError: a relative data folder outside what is sent (``folder``, less EXCLUDES).
    """
    folder = (folder or Path.cwd()).resolve()
    data = search.spec.data.model_dump()
    moved = []
    for key in DATA_PATHS:
        value = data.get(key)
        if not isinstance(value, str) or value.startswith("~") or Path(value).is_absolute():
            continue  # unset, or a path on the cluster
        local = (Path.cwd() / value).resolve()
        if key == "tokens" and not local.exists() and data.get("dir"):
            continue  # looked up under data.dir, there as here
        rel = local.relative_to(folder) if local.is_relative_to(folder) else None
        if rel is None or any(fnmatch.fnmatch(part, pat) for part in rel.parts for pat in EXCLUDES):
            where = (f"outside the folder submitted from ({folder})" if rel is None
                     else "in a part of the folder submitted from that is not sent")
            raise spaces.SpecError(
                search.file, f"data.{key}",
                f"{value!r} ({local}) cannot travel with the job: it is {where}; give a folder that exists "
                f"on the cluster (an absolute path, or ~/... on the head){', or leave data.dir null to use $TUNELAB_DATA there' if key == 'dir' else ''}")
        moved.append(f"data.{key}={rel.as_posix()}")
    return moved


def status(address: str, job_id: str) -> dict:
    info = _call(address, "get_job_info", job_id)
    return {"job_id": job_id, "status": str(info.status), "message": info.message,
            "entrypoint": info.entrypoint, "search": (info.metadata or {}).get(tags.JOB_SEARCH)}


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
