"""Images for the ViT: CIFAR-10 from its official python batches, or scikit-learn's 8×8 digits offline.

NumPy only (no torch): ``load_data`` runs on the driver, once per search, and its ``ImageData`` goes
into Ray's object store, from which every trial reads the same copy (``tune.with_parameters``).
Normalisation and augmentation happen on the trial's device (train.py); here the images stay uint8.

CIFAR-10 (``corpus: cifar10``): the seven files of the official "python version" (data_batch_1..5,
test_batch, batches.meta; pickled dicts with ``data`` N×3072 uint8 rows, RGB planes of 32×32, and
``labels``). The folder is looked up, first match wins:
1. ``data["dir"]`` from the search file, which must exist;
2. ``$TUNELAB_DATA/cifar10``, when that folder exists;
3. the cache, ``$XDG_CACHE_HOME/tunelab/cifar10`` (default ``~/.cache/tunelab/cifar10``), downloading
   the official archive into it first when files are missing; the archive must have torchvision's md5
   (``ARCHIVE_MD5``) before anything is unpacked.
A folder holds the files directly or in ``cifar-10-batches-py/`` (as the archive unpacks). Every file
is checked wherever it came from: it must unpickle (numpy arrays and plain containers only; nothing
else is ever loaded), hold uint8 rows of 3,072 values and labels in [0, 10); and a batch of the
official size (10,000 images) must be the official one (torchvision's per-file md5, ``BATCH_MD5``),
so a damaged copy of the real data is caught while a smaller file in the same format (a slice, the
tests' files) is accepted. Split: the training batches in order, of which the last 5,000 images are
the validation split (the batches are already shuffled); test_batch is the test split.

Digits (``corpus: digits``): ``sklearn.datasets.load_digits``, 1,797 8×8 grey images with values
0..16, shipped with scikit-learn (no download). Fixed split: a permutation drawn with NumPy's
``default_rng(0)``; its first 1,297 images train, the next 250 validate, the last 250 test.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import tarfile
import tempfile
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.trainables import _data
from tunelab.trainables._errors import DataError

CORPORA = ("cifar10", "digits")
DATA_KEYS = ("corpus", "dir")

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"  # as torchvision's CIFAR10.tgz_md5
ARCHIVE_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
BATCH_MD5 = {  # torchvision's CIFAR10.train_list and test_list
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
OFFICIAL_BATCH = 10_000  # images per official batch
CIFAR_VAL = 5_000  # the last images of the training batches
CIFAR_SIDE, CIFAR_CHANNELS, CIFAR_CLASSES = 32, 3, 10
DIGITS_SPLIT = (1_297, 250, 250)  # train, validation, test
DIGITS_SEED = 0


@dataclasses.dataclass(frozen=True)
class ImageData:
    """An image classification corpus, split three ways, as uint8 arrays shared read-only by trials.

    Attributes:
        corpus: "cifar10" or "digits".
        train_x, val_x, test_x: (N, C, H, W) uint8 images (digits: values 0..16).
        train_y, val_y, test_y: (N,) int64 class ids.
        classes: the class names by id.
        mean, std: per-channel mean and standard deviation of the training images, in their raw
            units; trials normalise with them.
        pad: random-crop padding (pixels of zeros on each side) of the corpus's augmentation; 0: none.
        flip: whether its augmentation flips images horizontally.
        source: where the files were read from.
    """

    corpus: str
    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pad: int = 0
    flip: bool = False
    source: str = ""

    @property
    def image_size(self) -> int:
        return self.train_x.shape[-1]

    @property
    def channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def load_data(data: Mapping[str, Any]) -> ImageData:
    """Find, verify and split the corpus a search file's ``data:`` section names.

    Args:
        data: ``corpus`` ("cifar10" or "digits") and ``dir`` (CIFAR-10 only: a folder holding the
            python batches, or None to use $TUNELAB_DATA/cifar10 or the cache, downloading into it).

    Raises:
        DataError: unknown corpus or key, a missing folder or file, a file that does not read as a
            CIFAR-10 batch, a checksum mismatch, a failed download.
    """
    unknown = sorted(set(data) - set(DATA_KEYS))
    if unknown:
        raise DataError(f"data: unknown key(s) {', '.join(unknown)} for the vit trainable "
                        f"(it knows {', '.join(DATA_KEYS)})")
    corpus = data.get("corpus")
    if corpus == "digits":
        return load_digits()
    if corpus == "cifar10":
        return load_cifar10(find_folder(data.get("dir")))
    raise DataError(f"data.corpus: the vit trainable reads {' or '.join(CORPORA)}, got {corpus!r}")


# --- CIFAR-10 ---------------------------------------------------------------------------------------

def load_cifar10(folder: Path) -> ImageData:
    """CIFAR-10 from a folder holding the official python batches (checked as the module says).

    Args:
        folder: holds data_batch_1..5, test_batch and batches.meta (or cifar-10-batches-py/ with them).
    """
    folder = _batches_folder(folder)
    classes = read_meta(folder / META)
    train = [read_batch(folder / name, len(classes)) for name in TRAIN_BATCHES]
    x = np.concatenate([b[0] for b in train])
    y = np.concatenate([b[1] for b in train])
    if len(y) <= CIFAR_VAL:
        raise DataError(f"{folder}: the training batches hold {len(y)} images, too few to leave "
                        f"{CIFAR_VAL} for validation")
    test_x, test_y = read_batch(folder / TEST_BATCH, len(classes))
    return _image_data("cifar10", x[:-CIFAR_VAL], y[:-CIFAR_VAL], x[-CIFAR_VAL:], y[-CIFAR_VAL:], test_x, test_y,
                       classes, pad=4, flip=True, source=str(folder))


def read_batch(path: Path, num_classes: int = CIFAR_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch file: images (N, 3, 32, 32) uint8 and labels (N,) int64.

    Args:
        path: data_batch_i or test_batch.
        num_classes: labels must lie in [0, num_classes).
    """
    raw = _read(path)
    d = _unpickle(raw, path)
    data, labels = d.get("data"), d.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != CIFAR_CHANNELS * CIFAR_SIDE**2:
        raise DataError(f"{path}: 'data' must be uint8 rows of {CIFAR_CHANNELS * CIFAR_SIDE**2} values, got "
                        f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: 'labels' is not a list of integers") from None
    if labels.shape != (len(data),):
        raise DataError(f"{path}: {len(data)} images but labels of shape {labels.shape}")
    if len(labels) and not (labels.min() >= 0 and labels.max() < num_classes):
        raise DataError(f"{path}: labels outside [0, {num_classes})")
    if len(data) == OFFICIAL_BATCH and path.name in BATCH_MD5:
        actual = hashlib.md5(raw).hexdigest()
        if actual != BATCH_MD5[path.name]:
            raise DataError(f"{path}: md5 {actual} does not match the official {path.name} "
                            f"({BATCH_MD5[path.name]}); the file is damaged")
    return data.reshape(-1, CIFAR_CHANNELS, CIFAR_SIDE, CIFAR_SIDE), labels


def read_meta(path: Path) -> tuple[str, ...]:
    """The class names of batches.meta (``label_names``, ten of them)."""
    names = _unpickle(_read(path), path).get("label_names")
    if not isinstance(names, list) or len(names) != CIFAR_CLASSES:
        raise DataError(f"{path}: 'label_names' must list {CIFAR_CLASSES} class names")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def find_folder(explicit: str | os.PathLike | None) -> Path:
    """The folder to read the CIFAR-10 batches from (``trainables._data.find_folder``), downloading
    into the cache if it comes to that.

    Args:
        explicit: the search file's ``data.dir`` (must exist when given).
    """
    def fill(cache: Path) -> None:
        if not all((_batches_folder(cache) / name).is_file() for name in (*TRAIN_BATCHES, TEST_BATCH, META)):
            download(cache)

    return _data.find_folder(explicit, "cifar10", fill)


def download(folder: Path, url: str | None = None, md5: str | None = None) -> None:
    """Fetch the official archive, check its md5, and unpack its seven batch files into ``folder``.

    Args:
        folder: the cache folder (created if needed).
        url: where the archive is; default ``URL``.
        md5: the archive's expected md5; default ``ARCHIVE_MD5``.
    """
    url, md5 = url or URL, md5 or ARCHIVE_MD5
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".cifar-10-python.", suffix=".tar.gz")
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5:
            raise DataError(f"{url}: md5 {digest.hexdigest()} does not match the expected {md5}")
        with tarfile.open(tmp, "r:gz") as archive:
            for name in (*TRAIN_BATCHES, TEST_BATCH, META):
                # Only the seven known members, each written by name: no path from the archive is trusted.
                member = archive.extractfile(f"{ARCHIVE_FOLDER}/{name}")
                if member is None:
                    raise DataError(f"{url}: {ARCHIVE_FOLDER}/{name} is not a file in the archive")
                part = folder / f".{name}.part"
                part.write_bytes(member.read())
                os.replace(part, folder / name)  # a concurrent reader never sees half a file
    except (OSError, tarfile.TarError, KeyError) as exc:
        raise DataError(f"downloading {url} into {folder} failed: {exc}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _batches_folder(folder: Path) -> Path:
    inner = folder / ARCHIVE_FOLDER
    return inner if inner.is_dir() else folder


def _read(path: Path) -> bytes:
    if not path.is_file():
        raise DataError(f"{path}: the CIFAR-10 file {path.name} is missing")
    return path.read_bytes()


class _Unpickler(pickle.Unpickler):
    """Loads numpy arrays and plain containers only: a pickle can run code, a data file must not."""

    ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"), ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
        ("__builtin__", "object"), ("builtins", "object"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _unpickle(raw: bytes, path: Path) -> dict[str, Any]:
    # The official files were pickled by Python 2: bytes keys, read with encoding="bytes".
    try:
        d = _Unpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # truncated or damaged files fail in many ways; all mean the same
        raise DataError(f"{path}: not a CIFAR-10 python batch ({type(exc).__name__}: {exc})") from None
    if not isinstance(d, dict):
        raise DataError(f"{path}: not a CIFAR-10 python batch (a {type(d).__name__}, not a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}


# --- digits -------------------------------------------------------------------------------------

def load_digits() -> ImageData:
    """scikit-learn's 8×8 digits with the fixed split of the module docstring."""
    from sklearn.datasets import load_digits as sklearn_digits  # only here: a second or so to import

    bunch = sklearn_digits()
    x = bunch.images.astype(np.uint8)[:, None]  # (1797, 1, 8, 8), values 0..16
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(DIGITS_SEED).permutation(len(y))
    n_train, n_val, _ = DIGITS_SPLIT
    tr, va, te = order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]
    return _image_data("digits", x[tr], y[tr], x[va], y[va], x[te], y[te],
                       tuple(str(c) for c in bunch.target_names), pad=0, flip=False, source="sklearn.datasets.load_digits")


def _image_data(corpus: str, train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
                test_x: np.ndarray, test_y: np.ndarray, classes: tuple[str, ...], **kw: Any) -> ImageData:
    arrays = [np.ascontiguousarray(a) for a in (train_x, train_y, val_x, val_y, test_x, test_y)]
    for a in arrays:
        a.flags.writeable = False  # shared read-only by every trial
    mean, std = _channel_moments(arrays[0])
    return ImageData(corpus, *arrays, classes=classes, mean=mean, std=std, **kw)


def _channel_moments(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    # Exact integer sums per channel (uint8 squares fit uint16), without a float copy of the images.
    count = x.size // x.shape[1]
    mean, std = [], []
    for c in range(x.shape[1]):
        plane = x[:, c]
        m = int(plane.sum(dtype=np.int64)) / count
        var = int(np.square(plane, dtype=np.uint16).sum(dtype=np.int64)) / count - m * m
        mean.append(m)
        std.append(max(var, 0.0) ** 0.5 or 1.0)  # a constant channel is left unscaled
    return tuple(mean), tuple(std)
