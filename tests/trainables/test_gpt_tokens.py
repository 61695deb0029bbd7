"""Token folders: prepare, memory-map, round trips, Penn Treebank splits, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tunelab.trainables import REGISTRY
from tunelab.trainables._errors import DataError
from tunelab.trainables.gpt import tokens


@pytest.fixture(scope="module")
def shakespeare_slice(data_dir, tmp_path_factory):
    text = (data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:60_000]
    path = tmp_path_factory.mktemp("corpus") / "slice.txt"
    path.write_text(text, encoding="utf-8")
    return path, text


def test_char_round_trip_and_layout(shakespeare_slice, tmp_path):
    path, text = shakespeare_slice
    td = tokens.prepare(path, tmp_path / "tok", "char", val_fraction=0.1)
    assert td.tokenizer == "char" and td.vocab_size == len(set(text)) and td.dtype == "uint16"
    assert td.splits == {"train": 54_000, "val": 6_000}  # one character per token, tail is validation
    meta = json.loads((tmp_path / "tok" / "meta.json").read_text())
    assert meta["splits"] == td.splits
    tok = tokens.load_tokenizer(tmp_path / "tok")
    assert tok.decode(tok.encode(text)) == text
    train, val = td.open("train"), td.open("val")
    assert isinstance(train, np.memmap) and train.dtype == np.uint16
    assert tok.decode(train) + tok.decode(val) == text


def test_bpe_round_trip(shakespeare_slice, tmp_path):
    path, text = shakespeare_slice
    td = tokens.prepare(path, tmp_path / "bpe", "bpe", vocab_size=1000)
    assert td.vocab_size == 1000 and (tmp_path / "bpe" / "tokenizer.json").exists()
    tok = tokens.load_tokenizer(tmp_path / "bpe")
    assert tok.decode(tok.encode(text)) == text
    assert sum(td.splits.values()) < len(text) / 2  # merges compress
    assert tok.decode(td.open("val")) == text[54_000:]


def test_ptb_word_level_keeps_the_given_splits(data_dir, tmp_path):
    td = tokens.prepare(data_dir / "ptb", tmp_path / "ptb", "word")
    # DESIGN.md: the 9,999 train words plus <eos>; 929,589 / 73,760 / 82,430 tokens with <eos>.
    assert td.vocab_size == 10_000
    assert td.splits == {"train": 929_589, "val": 73_760, "test": 82_430}
    tok = tokens.load_tokenizer(tmp_path / "ptb")
    assert tok.decode(tok.encode(" the <unk> company said\n")) == "the <unk> company said\n"


def test_uint32_when_the_vocabulary_is_large(tmp_path):
    text = "".join(chr(0x20000 + i) for i in range(70_000)) * 2
    (tmp_path / "wide.txt").write_text(text, encoding="utf-8")
    td = tokens.prepare(tmp_path / "wide.txt", tmp_path / "tok", "char")
    assert td.vocab_size == 70_000 and td.dtype == "uint32"
    assert int(td.open("train").max()) == 69_999


def test_load_data_resolves_paths_and_names_missing_files(shakespeare_slice, tmp_path, monkeypatch):
    path, _ = shakespeare_slice
    tokens.prepare(path, tmp_path / "tok", "char")
    td = REGISTRY["gpt"].load_data({"corpus": "tinyshakespeare", "dir": str(tmp_path), "tokens": "tok"})
    assert td.path == str((tmp_path / "tok").resolve())
    assert tokens.load_data({"dir": str(tmp_path / "tok")}) == td
    with pytest.raises(DataError, match="nope/meta.json"):
        tokens.load_data({"tokens": str(tmp_path / "nope")})
    with pytest.raises(DataError, match="data.tokens"):
        tokens.load_data({"corpus": "tinyshakespeare", "dir": None})  # corpus: ptb alone reads PTB's words
    (tmp_path / "tok" / "val.bin").unlink()
    with pytest.raises(DataError, match="val.bin"):
        tokens.load_data({"tokens": str(tmp_path / "tok")})


def test_gpt2_without_a_local_encoding_is_a_data_error(shakespeare_slice, tmp_path, monkeypatch):
    import tiktoken  # a dependency of the project; imported here only, as trainables.gpt.tokens does

    def offline(name):
        raise ConnectionError("no network")

    monkeypatch.setattr(tiktoken, "get_encoding", offline)
    with pytest.raises(DataError, match="gpt2"):
        tokens.prepare(shakespeare_slice[0], tmp_path / "g", "gpt2")


def test_prepare_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        tokens.prepare(tmp_path / "missing.txt", tmp_path / "o", "char")
    (tmp_path / "a.txt").write_text("hello world\n" * 10)
    with pytest.raises(DataError, match="vocab_size"):
        tokens.prepare(tmp_path / "a.txt", tmp_path / "o", "char", vocab_size=10)
    with pytest.raises(DataError, match="unknown tokenizer"):
        tokens.prepare(tmp_path / "a.txt", tmp_path / "o", "sentencepiece")
    with pytest.raises(DataError, match="ptb.train.txt"):
        tokens.prepare(tmp_path, tmp_path / "o", "word")
