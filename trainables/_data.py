"""Where a family's data folder is: the search file's ``data.dir``, else ``$TUNELAB_DATA/<name>``, else
a per-user cache that the family fills by downloading; and how a family's data describes itself
(``DatasetRecord``), which the driver records as the runs' dataset input in MLflow."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunelab.trainables._errors import DataError


@dataclasses.dataclass(frozen=True)
class DatasetRecord:
    """What a family's data is, for the record: the object its ``data_loader`` returns may have a
    method ``dataset_record() -> DatasetRecord``, and the driver logs it on the parent and every trial
    run as an MLflow dataset input (``search._inputs``), without reading the data again.

    Attributes:
        name: the corpus (``ptb``, a token folder's name).
        digest: tells two versions of it apart (a hash of its checksums or its description).
        uri: where it was read from.
        files: the files it consists of.
        profile: sizes and the like (tokens per split, vocabulary size), JSON-ready.
    """

    name: str
    digest: str
    uri: str
    files: tuple[str, ...]
    profile: dict[str, Any]


def find_folder(explicit: str | os.PathLike | None, name: str, fill: Callable[[Path], None]) -> Path:
    """The folder to read a corpus from.

    Args:
        explicit: the search file's ``data.dir`` (must exist when given).
        name: the corpus's folder name under ``$TUNELAB_DATA`` and the cache (``ptb``, ``cifar10``).
        fill: downloads what the cache folder lacks (it is called on every lookup that reaches the
            cache, and returns at once when nothing is missing).
    """
    if explicit is not None:
        folder = Path(explicit).expanduser()
        if not folder.is_dir():
            raise DataError(f"data.dir: {folder} is not a folder")
        return folder
    env = os.environ.get("TUNELAB_DATA")
    if env and (Path(env).expanduser() / name).is_dir():
        return Path(env).expanduser() / name
    cache = cache_folder(name)
    try:
        fill(cache)
    except DataError as exc:  # no network, say: say where the files can be put instead
        where = f"$TUNELAB_DATA={env}" if env else "$TUNELAB_DATA unset"
        raise DataError(f"{exc}; without a download, give the search file's data.dir (a folder holding the files) "
                        f"or set TUNELAB_DATA to a folder holding {name}/ ({where})") from None
    return cache


def cache_folder(name: str) -> Path:
    """``$XDG_CACHE_HOME/tunelab/<name>``, ``~/.cache/tunelab/<name>`` by default."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root).expanduser() / "tunelab" / name
