"""Penn Treebank loading: exact token counts, the vocabulary, checksums, lookup order, batchify."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from tunelab.trainables import DataError
from tunelab.trainables.rnn import data as ptb


@pytest.fixture(scope="module")
def corpus(data_dir):
    return ptb.load_data({"corpus": "ptb", "dir": str(data_dir / "ptb")})


@pytest.fixture
def ptb_copy(data_dir, tmp_path):
    """A writable copy of the three files."""
    folder = tmp_path / "ptb"
    shutil.copytree(data_dir / "ptb", folder)
    for f in folder.iterdir():
        f.chmod(0o644)
    return folder


def test_token_counts_and_vocabulary(corpus):
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (929_589, 73_760, 82_430)
    assert corpus.vocab_size == len(corpus.vocab) == 10_000
    assert all(a.dtype == np.int32 and not a.flags.writeable for a in (corpus.train, corpus.valid, corpus.test))
    assert int(corpus.train.max()) == 9_999 and int(corpus.valid.max()) < 10_000


def test_ids_follow_first_appearance_in_train(corpus, data_dir):
    first_line = (data_dir / "ptb" / "ptb.train.txt").open().readline().split()
    # Every word of the first line is new, so ids 0..n-1 in order, then <eos>.
    assert corpus.vocab[: len(first_line)] == tuple(first_line)
    assert corpus.vocab[len(first_line)] == ptb.EOS
    assert corpus.train[: len(first_line) + 1].tolist() == list(range(len(first_line) + 1))
    assert corpus.vocab == ptb.build_vocab([corpus.vocab[i] for i in corpus.train])


def test_checksum_mismatch_names_file_and_both_hashes(ptb_copy):
    with (ptb_copy / "ptb.valid.txt").open("a") as f:
        f.write(" one more line \n")
    with pytest.raises(DataError) as err:
        ptb.load_data({"corpus": "ptb", "dir": str(ptb_copy)})
    msg = str(err.value)
    assert "ptb.valid.txt" in msg and ptb.SHA256["valid"] in msg
    assert len([w for w in msg.split() if len(w) == 64]) == 2  # the actual hash too


def test_missing_split(ptb_copy):
    (ptb_copy / "ptb.test.txt").unlink()
    with pytest.raises(DataError, match="test split is missing"):
        ptb.load_data({"corpus": "ptb", "dir": str(ptb_copy)})


def test_missing_dir_and_bad_sections(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        ptb.load_data({"corpus": "ptb", "dir": str(tmp_path / "nowhere")})
    with pytest.raises(DataError, match="corpus"):
        ptb.load_data({"corpus": "wikitext", "dir": None})
    with pytest.raises(DataError, match="tokens"):
        ptb.load_data({"corpus": "ptb", "dir": None, "tokens": "x"})


def test_env_then_cache_then_download(data_dir, ptb_copy, tmp_path, monkeypatch):
    # $TUNELAB_DATA/ptb comes first when data.dir is null.
    monkeypatch.setenv("TUNELAB_DATA", str(ptb_copy.parent))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert ptb.find_folder(None) == ptb_copy
    # Without it, the cache; its missing files are downloaded (here from a file:// URL) and verified.
    monkeypatch.delenv("TUNELAB_DATA")
    monkeypatch.setattr(ptb, "URL", (data_dir / "ptb").as_uri() + "/ptb.{split}.txt")
    cache = tmp_path / "cache" / "tunelab" / "ptb"
    assert ptb.find_folder(None) == cache
    assert sorted(p.name for p in cache.iterdir()) == ["ptb.test.txt", "ptb.train.txt", "ptb.valid.txt"]
    assert len(ptb.load_data({"corpus": "ptb", "dir": None}).valid) == 73_760


def test_a_failed_download_says_where_the_files_can_go_instead(tmp_path, monkeypatch):
    monkeypatch.delenv("TUNELAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(ptb, "URL", (tmp_path / "offline").as_uri() + "/ptb.{split}.txt")  # no such server
    with pytest.raises(DataError) as err:
        ptb.load_data({"corpus": "ptb", "dir": None})
    message = str(err.value)
    assert message.startswith("downloading ") and "\n" not in message
    assert "data.dir" in message and "set TUNELAB_DATA to a folder holding ptb/ ($TUNELAB_DATA unset)" in message


def test_download_with_wrong_checksum_keeps_nothing(ptb_copy, tmp_path, monkeypatch):
    (ptb_copy / "ptb.test.txt").write_text(" corrupted \n")
    monkeypatch.setattr(ptb, "URL", ptb_copy.as_uri() + "/ptb.{split}.txt")
    with pytest.raises(DataError, match="sha256"):
        ptb.download("test", tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []
    monkeypatch.setattr(ptb, "URL", (tmp_path / "absent").as_uri() + "/ptb.{split}.txt")
    with pytest.raises(DataError, match="downloading"):
        ptb.download("train", tmp_path / "cache")


def test_batchify_makes_time_major_streams():
    tokens = np.arange(23, dtype=np.int32)
    out = ptb.batchify(tokens, 4)  # 5 steps × 4 streams, 3 tokens dropped
    assert out.shape == (5, 4)
    assert out[:, 0].tolist() == [0, 1, 2, 3, 4] and out[:, 3].tolist() == [15, 16, 17, 18, 19]


def test_data_and_config_modules_do_not_import_torch():
    code = "import sys, tunelab.trainables.rnn; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
