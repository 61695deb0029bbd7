"""The ViT's data: CIFAR-10 python batches written here in the official format, corrupt ones rejected
(exit 2 through the CLI, naming ``data``), the lookup order and download check, and the digits split."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from tunelab.search.cli import main
from tunelab.trainables._errors import DataError
from tunelab.trainables.vit import data as vit_data
from tunelab.trainables.vit.data import load_data

PER_BATCH = 1_100  # 5 × 1,100 training images: 500 train, the last 5,000 validation
CLASSES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


def batch_bytes(n: int, seed: int, label: bytes = b"training batch") -> bytes:
    """A batch as the official files hold it: a dict with bytes keys, pickled by Python 2 with numpy 1
    (protocol 2, numpy.core's _reconstruct), ``data`` n × 3072 uint8 rows (RGB planes), ``labels``."""
    rng = np.random.default_rng(seed)
    d = {b"batch_label": label, b"labels": [int(v) for v in rng.integers(0, 10, n)],
         b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}
    return pickle.dumps(d, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def write_cifar(folder, per_batch: int = PER_BATCH) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(batch_bytes(per_batch, i))
    (folder / "test_batch").write_bytes(batch_bytes(300, 0, b"testing batch 1 of 1"))
    meta = {b"num_cases_per_batch": per_batch, b"label_names": CLASSES, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))


@pytest.fixture()
def cifar(tmp_path):
    folder = tmp_path / "cifar10"
    write_cifar(folder)
    return folder


def test_cifar10_loads_from_the_official_pickle_format(cifar):
    d = load_data({"corpus": "cifar10", "dir": str(cifar)})
    assert d.train_x.shape == (500, 3, 32, 32) and d.val_x.shape == (5_000, 3, 32, 32)
    assert d.test_x.shape == (300, 3, 32, 32) and d.train_x.dtype == np.uint8
    assert (d.image_size, d.channels, d.num_classes, d.pad, d.flip) == (32, 3, 10, 4, True)
    assert d.classes[0] == "airplane" and d.classes[-1] == "truck"
    # Row layout: 1,024 red, then green, then blue values, each a 32×32 image in row-major order.
    first = pickle.loads(batch_bytes(PER_BATCH, 1).replace(b"numpy.core.", b"numpy._core."), encoding="bytes")
    np.testing.assert_array_equal(d.train_x[0, 1, 2], first[b"data"][0, 1024 + 64:1024 + 96])
    assert d.train_y[:5].tolist() == first[b"labels"][:5]
    # The validation split is the last 5,000 training images (data_batch_5 last).
    last = pickle.loads(batch_bytes(PER_BATCH, 5).replace(b"numpy.core.", b"numpy._core."), encoding="bytes")
    assert d.val_y[-5:].tolist() == last[b"labels"][-5:]
    pixels = d.train_x.astype(np.float64)
    np.testing.assert_allclose(d.mean, pixels.mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(d.std, pixels.std(axis=(0, 2, 3)))
    assert not d.train_x.flags.writeable  # shared read-only by the trials


def test_the_unpacked_archive_layout_is_found(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")
    d = load_data({"corpus": "cifar10", "dir": str(tmp_path)})
    assert d.source == str(tmp_path / "cifar-10-batches-py") and len(d.train_y) == 500


def _truncate(path):
    path.write_bytes(path.read_bytes()[:5_000])


def _wrong_width(path):
    d = {b"data": np.zeros((PER_BATCH, 3071), np.uint8), b"labels": [0] * PER_BATCH}
    path.write_bytes(pickle.dumps(d, protocol=2))


def _label_11(path):
    d = {b"data": np.zeros((PER_BATCH, 3072), np.uint8), b"labels": [11] * PER_BATCH}
    path.write_bytes(pickle.dumps(d, protocol=2))


class _Code:
    def __reduce__(self):
        return (print, ("this must never run",))


def _code(path):
    path.write_bytes(pickle.dumps({b"data": _Code(), b"labels": []}, protocol=2))


CORRUPT = {
    "truncated": ("data_batch_3", _truncate, "not a CIFAR-10 python batch"),
    "wrong width": ("data_batch_2", _wrong_width, "uint8 rows of 3072"),
    "label out of range": ("test_batch", _label_11, "labels outside"),
    "code in the pickle": ("data_batch_1", _code, "refusing to load __builtin__.print"),
    "missing": ("data_batch_4", os.remove, "data_batch_4 is missing"),
    "not a dict": ("batches.meta", lambda p: p.write_bytes(pickle.dumps([1, 2])), "not a CIFAR-10 python batch"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_a_corrupt_or_missing_file_is_rejected(case, cifar, capsys):
    name, damage, expected = CORRUPT[case]
    damage(cifar / name)
    with pytest.raises(DataError, match=expected):
        load_data({"corpus": "cifar10", "dir": str(cifar)})
    assert "this must never run" not in capsys.readouterr().out


def test_a_batch_of_the_official_size_must_be_the_official_file(cifar):
    # 10,000 images: it claims to be the real data_batch_2, so its md5 must be torchvision's.
    (cifar / "data_batch_2").write_bytes(batch_bytes(10_000, 2))
    with pytest.raises(DataError, match=r"data_batch_2: md5 \w+ does not match the official"):
        load_data({"corpus": "cifar10", "dir": str(cifar)})


def test_the_cli_exits_2_naming_data(cifar, tmp_path, capsys):
    _truncate(cifar / "data_batch_1")
    spec = tmp_path / "vit.yaml"
    spec.write_text(f"name: t\ntrainable: vit\nmetric: val_acc\nmode: max\nfixed: {{epochs: 1}}\n"
                    f"space:\n  lr: {{loguniform: [1.0e-4, 1.0e-2]}}\nbudget: {{trials: 1}}\n"
                    f"data: {{corpus: cifar10, dir: {cifar}}}\n")
    storage = tmp_path / "runs"
    assert main(["run", str(spec), "--storage", str(storage)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tunelab: error: {spec}: data: ") and "data_batch_1" in err, err
    assert err.count("\n") == 1
    assert not storage.exists()  # nothing started or written


def test_lookup_order_dir_then_tunelab_data_then_cache(tmp_path, monkeypatch):
    write_cifar(tmp_path / "env" / "cifar10", per_batch=1_010)
    write_cifar(tmp_path / "own", per_batch=1_020)
    monkeypatch.setenv("TUNELAB_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert len(load_data({"corpus": "cifar10", "dir": str(tmp_path / "own")}).train_y) == 5 * 1_020 - 5_000
    assert len(load_data({"corpus": "cifar10", "dir": None}).train_y) == 5 * 1_010 - 5_000
    with pytest.raises(DataError, match="data.dir"):
        load_data({"corpus": "cifar10", "dir": str(tmp_path / "nope")})
    # Without $TUNELAB_DATA/cifar10 the cache is used, downloading into it first.
    monkeypatch.setenv("TUNELAB_DATA", str(tmp_path / "elsewhere"))
    archive = _archive(tmp_path / "upstream")
    monkeypatch.setattr(vit_data, "URL", archive.as_uri())
    monkeypatch.setattr(vit_data, "ARCHIVE_MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    d = load_data({"corpus": "cifar10", "dir": None})
    assert d.source == str(tmp_path / "cache" / "tunelab" / "cifar10") and len(d.train_y) == 5 * 1_030 - 5_000
    assert sorted(p.name for p in (tmp_path / "cache" / "tunelab" / "cifar10").iterdir()) == sorted(
        ["batches.meta", "test_batch", *(f"data_batch_{i}" for i in range(1, 6))])  # no archive left behind
    archive.unlink()
    assert load_data({"corpus": "cifar10", "dir": None}).source == d.source  # the cache, no second download


def test_a_download_with_the_wrong_md5_is_rejected(tmp_path):
    archive = _archive(tmp_path / "upstream")
    with pytest.raises(DataError, match="does not match the expected c58f30108f718f92721af3b95e74349a"):
        vit_data.download(tmp_path / "cache", url=archive.as_uri())
    assert list((tmp_path / "cache").iterdir()) == []  # nothing unpacked, no archive left


def _archive(folder):
    """An archive laid out as the official one (cifar-10-batches-py/ and its seven files)."""
    write_cifar(folder / "cifar-10-batches-py", per_batch=1_030)
    path = folder / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        tar.add(folder / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return path


def test_digits_fixed_split():
    a, b = load_data({"corpus": "digits"}), load_data({"corpus": "digits", "dir": None})
    assert (len(a.train_y), len(a.val_y), len(a.test_y)) == (1_297, 250, 250)
    assert a.train_x.shape == (1_297, 1, 8, 8) and int(a.train_x.max()) == 16
    assert (a.image_size, a.channels, a.num_classes, a.pad, a.flip) == (8, 1, 10, 0, False)
    np.testing.assert_array_equal(a.test_x, b.test_x)  # the same split every time
    rows = {x.tobytes() for x in a.train_x}
    assert not any(x.tobytes() in rows for x in (*a.val_x, *a.test_x))  # no image in two splits
    assert set(np.unique(a.val_y)) == set(range(10))


@pytest.mark.parametrize("section, expected", [
    ({"corpus": "ptb"}, "data.corpus: the vit trainable reads cifar10 or digits"),
    ({"corpus": "digits", "tokens": "x"}, "unknown key"),
])
def test_bad_data_sections(section, expected):
    with pytest.raises(DataError, match=expected):
        load_data(section)


def test_the_official_files_unpickle_as_python_2_wrote_them():
    raw = batch_bytes(3, 0)
    assert b"cnumpy.core.multiarray\n_reconstruct" in raw  # the module path of the real files
    d = vit_data._unpickle(raw, vit_data.Path("x"))
    assert d["data"].shape == (3, 3072) and len(d["labels"]) == 3
    np.testing.assert_array_equal(d["data"], pickle.load(io.BytesIO(raw), encoding="bytes")[b"data"])
