"""What a search keeps in its folder (``<storage>/<name>/``) besides Ray's own files, and how to read it.

- ``tunelab.json``: where the search's parent run is (tracking URI, experiment, run id), to resume,
  sync, list and report it;
- ``search.yaml``: the resolved search file, as run;
- ``optuna_journal.log``: the Optuna study (journal storage);
- ``mlflow_pending.json``: present while MLflow lacks records of some trials;
- ``.tunelab.lock``: locked (``flock``) by the one process that runs, resumes or syncs the search
  (``claim``); the kernel lets go of it when that process ends, however it ends;
- ``.tunelab.reserve``: 8 MB kept free for the search's last save while it runs, given back if the
  disk fills.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import optuna

from tunelab import spaces
from tunelab.search._errors import SearchRunningError
from tunelab.search._searcher import open_storage

STATE_FILE = "tunelab.json"
SEARCH_FILE = "search.yaml"
STUDY_FILE = "optuna_journal.log"
PENDING_FILE = "mlflow_pending.json"
LOCK_FILE = ".tunelab.lock"
RESERVE_FILE = ".tunelab.reserve"  # room kept for the search's last save while it runs (``_ends.Interruption``)


@contextlib.contextmanager
def claim(exp_dir: Path, name: str) -> Iterator[None]:
    """Hold the search's folder for this process: of two processes that claim one name at once, one
    gets it and the other ``SearchRunningError`` before it has written anything.

    A search that stops with an exception before it recorded itself (``STATE_FILE``: bad input, a
    tracking server that cannot be used) leaves no folder behind: the ones made here are removed.
    """
    made = [d for d in (exp_dir, *exp_dir.parents) if not d.exists()]
    exp_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(exp_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SearchRunningError(f"the search {name!r} in {exp_dir.parent} is already running in another "
                                 "process; wait for it to end, or stop it") from None
    try:
        yield
    except BaseException:
        if made and not (exp_dir / STATE_FILE).exists():
            shutil.rmtree(exp_dir, ignore_errors=True)
            for d in made[1:]:
                with contextlib.suppress(OSError):
                    d.rmdir()  # only if nothing else was written there
        raise
    finally:
        os.close(fd)  # releases the lock


def is_running(exp_dir: Path) -> bool:
    """Whether a process holds the search's folder now (``claim``)."""
    try:
        fd = os.open(exp_dir / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def experiment_dir(search: spaces.Search) -> Path:
    return search.storage / search.spec.name


def study_storage(exp_dir: Path) -> str:
    return str(exp_dir / STUDY_FILE)


def load_study(exp_dir: Path, name: str | None = None) -> optuna.Study:
    """The Optuna study of the search in ``exp_dir`` (named like its folder unless ``name``)."""
    return optuna.load_study(study_name=name or exp_dir.name, storage=open_storage(study_storage(exp_dir)))


def find_study(exp_dir: Path, name: str | None = None) -> optuna.Study | None:
    """The search's study, or None where there is none yet: the search stopped before its searcher's
    first suggestion (a Ctrl-C or a failed write as the fit began)."""
    try:
        return load_study(exp_dir, name)
    except KeyError:  # Optuna's word for a study the storage does not hold
        return None


def read_state(storage: Path, name: str) -> dict:
    """What ``tunelab run`` recorded about search ``name``: its tracking URI, experiment, parent run.

    Raises:
        spaces.SpecError: no search of that name under ``storage``.
    """
    root = Path(storage).expanduser().resolve()
    state_path = root / name / STATE_FILE
    if not state_path.exists():
        raise spaces.SpecError(str(root), "name", f"no search named {name!r} under {root}")
    return json.loads(state_path.read_text())


def write_state(exp_dir: Path, state: dict) -> None:
    (exp_dir / STATE_FILE).write_text(json.dumps(state, indent=2))


def tracking_uri(storage: Path, name: str | None) -> str:
    """The tracking URI of search ``name``, or the results root's default database."""
    if name is None:
        return f"sqlite:///{Path(storage).expanduser().resolve() / 'mlflow.db'}"
    return read_state(storage, name)["tracking_uri"]
