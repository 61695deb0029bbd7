"""What a search keeps in its folder (``<storage>/<name>/``) besides Ray's own files, and how to read it.

- ``tunelab.json``: where the search's parent run is (tracking URI, experiment, run id), to resume,
  sync, list and report it;
- ``search.yaml``: the resolved search file, as run;
- ``optuna_journal.log``: the Optuna study (journal storage);
- ``mlflow_pending.json``: present while MLflow lacks records of some trials.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna

from tunelab import spaces
from tunelab.search._searcher import open_storage

STATE_FILE = "tunelab.json"
SEARCH_FILE = "search.yaml"
STUDY_FILE = "optuna_journal.log"
PENDING_FILE = "mlflow_pending.json"


def experiment_dir(search: spaces.Search) -> Path:
    return search.storage / search.spec.name


def study_storage(exp_dir: Path) -> str:
    return str(exp_dir / STUDY_FILE)


def load_study(exp_dir: Path, name: str | None = None) -> optuna.Study:
    """The Optuna study of the search in ``exp_dir`` (named like its folder unless ``name``)."""
    return optuna.load_study(study_name=name or exp_dir.name, storage=open_storage(study_storage(exp_dir)))


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
