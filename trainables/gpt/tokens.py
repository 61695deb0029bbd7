"""Token files for GPT trials: tokenise a corpus once, memory-map it in every trial.

A token file is a folder (nanoGPT's data/*/prepare.py layout, so ``np.memmap`` can open the splits):

    <out>/train.bin     token ids of the training split, raw little-endian uint16 (uint32 when the
    <out>/val.bin       vocabulary has more than 65,536 entries)
    <out>/test.bin      only when the corpus comes with a test split (Penn Treebank)
    <out>/meta.json     {"format": "tunelab-tokens/1", "tokenizer", "vocab_size", "dtype", "splits": {name: n}, "source"}
    <out>/vocab.json    char and word tokenizers: the id -> string table
    <out>/tokenizer.json  bpe: the trained byte-level BPE (Hugging Face ``tokenizers``)
                          gpt2: nothing saved; tiktoken's "gpt2" encoding is loaded from its local cache

Tokenizers: ``char`` (sorted characters of the corpus, nanoGPT's shakespeare_char), ``word``
(whitespace-split words with ``<eos>`` closing each line, pytorch/examples' word_language_model; the
vocabulary comes from the training split and words unseen there become ``<unk>``), ``bpe`` (byte-level
BPE trained on the training split; ``vocab_size`` default 4096) and ``gpt2``.

Splits: a single text file is cut at the character ``1 - val_fraction`` of the way through (the tail
is validation); a folder holding ``ptb.train.txt``, ``ptb.valid.txt`` (and ``ptb.test.txt``) keeps
those splits as given. ``load_data`` (driver side) returns a light ``TokenData``; trials call
``TokenData.open`` to memory-map the arrays and never re-tokenise. This module imports numpy only;
``tokenizers`` and ``tiktoken`` are imported when those tokenizers are used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from tunelab.trainables import _data
from tunelab.trainables._errors import DataError
from tunelab.trainables.rnn import data as ptb

FORMAT = "tunelab-tokens/1"
META = "meta.json"
EOS, UNK = "<eos>", "<unk>"
PTB_SPLITS = {"train": "ptb.train.txt", "val": "ptb.valid.txt", "test": "ptb.test.txt"}
Tokenizer = Literal["char", "word", "bpe", "gpt2"]


class Codec(Protocol):
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids) -> str: ...


# --- tokenizers ---------------------------------------------------------------------------------


class TableCodec:
    """char and word tokenizers: an id -> string table.

    Args:
        kind: "char" or "word".
        itos: the strings, indexed by id.
    """

    def __init__(self, kind: str, itos: list[str]) -> None:
        self.kind, self.itos = kind, list(itos)
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        self.vocab_size = len(self.itos)

    @classmethod
    def fit(cls, kind: str, train_text: str, other_texts: tuple[str, ...] = ()) -> TableCodec:
        if kind == "char":
            # Characters of every split: a character-level vocabulary is tiny, and no <unk> is needed.
            return cls(kind, sorted(set(train_text).union(*map(set, other_texts))))
        itos = list(dict.fromkeys(_words(train_text)))  # ids in order of first appearance
        known = set(itos)
        if UNK not in known and any(w not in known for t in other_texts for w in _words(t)):
            itos.append(UNK)
        return cls(kind, itos)

    def encode(self, text: str) -> list[int]:
        if self.kind == "char":
            return [self.stoi[c] for c in text]
        unk = self.stoi.get(UNK)
        return [self.stoi.get(w, unk) for w in _words(text)]

    def decode(self, ids) -> str:
        if self.kind == "char":
            return "".join(self.itos[int(i)] for i in ids)
        lines = " ".join(self.itos[int(i)] for i in ids).split(EOS)  # one line per <eos>
        return "\n".join(line.strip() for line in lines)


def _words(text: str) -> list[str]:
    # word_language_model's data.py: each line's words, then <eos>.
    out: list[str] = []
    for line in text.splitlines():
        out += line.split() + [EOS]
    return out


class BPECodec:
    """Byte-level BPE from the ``tokenizers`` library (GPT-2's scheme, trained on our corpus)."""

    def __init__(self, tok) -> None:
        self.tok = tok
        self.vocab_size = tok.get_vocab_size()

    @classmethod
    def fit(cls, train_text: str, vocab_size: int) -> BPECodec:
        tokenizers = _import("tokenizers")
        tok = tokenizers.Tokenizer(tokenizers.models.BPE())
        # No prefix space and no offset trimming, so decode(encode(text)) == text byte for byte.
        tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = tokenizers.decoders.ByteLevel()
        trainer = tokenizers.trainers.BpeTrainer(
            vocab_size=vocab_size, initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(_chunks(train_text), trainer=trainer)
        return cls(tok)

    @classmethod
    def load(cls, path: Path) -> BPECodec:
        return cls(_import("tokenizers").Tokenizer.from_file(str(path)))

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def decode(self, ids) -> str:
        return self.tok.decode([int(i) for i in ids])


def _chunks(text: str, size: int = 1 << 16):
    lines = text.splitlines(keepends=True)
    for i in range(0, len(lines), size):
        yield "".join(lines[i:i + size])


class TiktokenCodec:
    """OpenAI's GPT-2 encoding (50,257 ids) from ``tiktoken``, loaded from its local cache."""

    def __init__(self) -> None:
        tiktoken = _import("tiktoken")
        try:
            self.enc = tiktoken.get_encoding("gpt2")
        except Exception as exc:  # no network at run time: the encoding must already be cached
            raise DataError(
                "tiktoken's 'gpt2' encoding is not available locally (it is downloaded once into "
                f"$TIKTOKEN_CACHE_DIR, and this machine could not fetch it: {type(exc).__name__}: {exc}); "
                "cache it on a machine with network access or use tokenizer 'bpe'"
            ) from None
        self.vocab_size = self.enc.n_vocab

    def encode(self, text: str) -> list[int]:
        return self.enc.encode_ordinary(text)

    def decode(self, ids) -> str:
        return self.enc.decode([int(i) for i in ids])


def _import(name: str):
    try:
        return __import__(name)
    except ImportError:
        raise DataError(f"the {name!r} package is needed for this tokenizer: pip install {name}") from None


def load_tokenizer(path: str | os.PathLike) -> Codec:
    """The tokenizer saved with a token folder: ``encode(str) -> list[int]``, ``decode(ids) -> str``.

    Args:
        path: the token folder written by ``prepare``.
    """
    folder = Path(path)
    meta = _read_meta(folder)
    kind = meta["tokenizer"]
    if kind in ("char", "word"):
        return TableCodec(kind, json.loads((folder / "vocab.json").read_text(encoding="utf-8")))
    if kind == "bpe":
        return BPECodec.load(folder / "tokenizer.json")
    if kind == "gpt2":
        return TiktokenCodec()
    raise DataError(f"{folder / META}: unknown tokenizer {kind!r}")


# --- preparing a token folder -------------------------------------------------------------------


def prepare(text_path: str | os.PathLike, out: str | os.PathLike, tokenizer: Tokenizer = "char",
            vocab_size: int | None = None, val_fraction: float = 0.1) -> TokenData:
    """Tokenise a corpus once into a token folder (see the module docstring for the layout).

    Args:
        text_path: a UTF-8 text file, or a folder with ptb.train.txt, ptb.valid.txt and optionally
            ptb.test.txt (splits kept as given).
        out: the token folder to write (created; existing files in it are replaced).
        tokenizer: "char", "word", "bpe" or "gpt2".
        vocab_size: BPE vocabulary size (default 4096); must be None for the other tokenizers, whose
            vocabulary the corpus (or the encoding) fixes.
        val_fraction: the share of a single text file kept for validation (its tail).

    Returns:
        The ``TokenData`` describing the folder.
    """
    src, folder = Path(text_path), Path(out)
    splits = _read_splits(src, val_fraction)
    if vocab_size is not None and tokenizer != "bpe":
        raise DataError(f"vocab_size is fixed by the corpus or the encoding for tokenizer {tokenizer!r}; leave it unset")
    if tokenizer in ("char", "word"):
        codec: Codec = TableCodec.fit(tokenizer, splits["train"], tuple(v for k, v in splits.items() if k != "train"))
    elif tokenizer == "bpe":
        codec = BPECodec.fit(splits["train"], vocab_size or 4096)
    elif tokenizer == "gpt2":
        codec = TiktokenCodec()
    else:
        raise DataError(f"unknown tokenizer {tokenizer!r}; expected char, word, bpe or gpt2")
    dtype = np.uint16 if codec.vocab_size <= 2**16 else np.uint32
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for name, text in splits.items():
        ids = np.asarray(codec.encode(text), dtype=dtype)
        if ids.size == 0:
            raise DataError(f"{src}: the {name} split is empty")
        ids.tofile(folder / f"{name}.bin")
        sizes[name] = int(ids.size)
    if isinstance(codec, TableCodec):
        (folder / "vocab.json").write_text(json.dumps(codec.itos, ensure_ascii=False), encoding="utf-8")
    elif isinstance(codec, BPECodec):
        codec.tok.save(str(folder / "tokenizer.json"))
    meta = {"format": FORMAT, "tokenizer": tokenizer, "vocab_size": codec.vocab_size,
            "dtype": np.dtype(dtype).name, "splits": sizes, "source": str(src.resolve())}
    (folder / META).write_text(json.dumps(meta, indent=2) + "\n")
    return TokenData.from_folder(folder)


def _read_splits(src: Path, val_fraction: float) -> dict[str, str]:
    if src.is_dir():
        missing = [f for k, f in PTB_SPLITS.items() if k != "test" and not (src / f).exists()]
        if missing:
            raise DataError(f"{src}: a corpus folder needs {', '.join(missing)}")
        return {k: (src / f).read_text(encoding="utf-8") for k, f in PTB_SPLITS.items() if (src / f).exists()}
    if not src.exists():
        raise DataError(f"corpus file not found: {src}")
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be in (0, 1), got {val_fraction}")
    text = src.read_text(encoding="utf-8")
    cut = int(len(text) * (1 - val_fraction))
    return {"train": text[:cut], "val": text[cut:]}


# --- what trials get ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TokenData:
    """A token folder's description: light enough for Ray's object store; trials memory-map the splits.

    Attributes:
        path: absolute path of the token folder (on a cluster it must exist at this path on every node).
        tokenizer: how it was tokenised.
        vocab_size: ids are in [0, vocab_size).
        dtype: numpy dtype name of the .bin files.
        splits: split name -> tokens.
    """

    path: str
    tokenizer: str
    vocab_size: int
    dtype: str
    splits: Mapping[str, int]

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> TokenData:
        folder = Path(folder).expanduser().resolve()
        meta = _read_meta(folder)
        for name in meta["splits"]:
            if not (folder / f"{name}.bin").exists():
                raise DataError(f"token file missing: {folder / f'{name}.bin'}")
        for name in ("train", "val"):
            if name not in meta["splits"]:
                raise DataError(f"{folder / META}: no {name} split")
        return cls(str(folder), meta["tokenizer"], int(meta["vocab_size"]), meta["dtype"], dict(meta["splits"]))

    def dataset_record(self) -> _data.DatasetRecord:
        """The token folder for the record, named by its description (``meta.json``)."""
        meta = {"tokenizer": self.tokenizer, "vocab_size": self.vocab_size, "dtype": self.dtype,
                "splits": dict(self.splits)}
        digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()
        return _data.DatasetRecord(self.path.rstrip("/").rsplit("/", 1)[-1], digest[:16], self.path,
                                   (*(f"{s}.bin" for s in self.splits), META),
                                   {"tokens": meta["splits"], "vocab_size": self.vocab_size,
                                    "tokenizer": self.tokenizer})

    def open(self, split: str) -> np.ndarray:
        """The split's token ids, memory-mapped read-only (nothing is read until indexed).

        Args:
            split: "train", "val" or "test".
        """
        if split not in self.splits:
            raise DataError(f"{self.path}: no {split!r} split (has {', '.join(self.splits)})")
        return np.memmap(Path(self.path) / f"{split}.bin", dtype=self.dtype, mode="r", shape=(self.splits[split],))


def _read_meta(folder: Path) -> dict[str, Any]:
    path = folder / META
    if not path.exists():
        raise DataError(
            f"token file not found: {path} (make it once with `tunelab prepare-data` or "
            "trainables.gpt.tokens.prepare)"
        )
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise DataError(f"{path}: not a {FORMAT} token folder")
    return meta


def load_data(data: Mapping[str, Any]) -> TokenData | ptb.PTBData:
    """The registry's driver-side loader: the search file's ``data`` section -> ``TokenData``.

    Keys: ``tokens`` (the token folder; a relative path is looked up from the working directory,
    then under ``dir``), or, without ``tokens``, ``dir`` itself when it is a token folder.
    ``corpus`` is informational, except ``corpus: ptb`` without ``tokens``: then the words of Penn
    Treebank, read by the recurrent LM's reader (``rnn.data.load_data``: ``dir``, else
    ``$TUNELAB_DATA/ptb``, else the cache, else a checked download), with its vocabulary of 10,000
    words, so that the two families' perplexities are over the same tokens. Paths are resolved
    here, on the driver, because trials run in their own folders.

    Args:
        data: the search file's data section.
    """
    tokens, base = data.get("tokens"), data.get("dir")
    if tokens is None and data.get("corpus") == "ptb":
        return ptb.load_data({k: v for k, v in data.items() if k != "tokens"})
    if tokens is None and base is None:
        raise DataError("the gpt trainable needs data.tokens: a token folder made by `tunelab prepare-data`")
    if tokens is None:
        return TokenData.from_folder(base)
    path = Path(tokens).expanduser()
    if not path.is_absolute() and not path.exists() and base is not None:
        path = Path(base).expanduser() / path
    return TokenData.from_folder(path)


def main(argv: list[str] | None = None) -> None:
    """``python -m trainables.gpt.tokens TEXT OUT [--tokenizer char|word|bpe|gpt2] [--vocab-size N]``."""
    import argparse

    p = argparse.ArgumentParser(description="Tokenise a corpus into a token folder for the gpt trainable.")
    p.add_argument("text", help="text file, or a folder with ptb.{train,valid,test}.txt")
    p.add_argument("out", help="token folder to write")
    p.add_argument("--tokenizer", default="char", choices=["char", "word", "bpe", "gpt2"])
    p.add_argument("--vocab-size", type=int, default=None)
    p.add_argument("--val-fraction", type=float, default=0.1)
    args = p.parse_args(argv)
    td = prepare(args.text, args.out, args.tokenizer, args.vocab_size, args.val_fraction)
    print(json.dumps(dataclasses.asdict(td), indent=2))


if __name__ == "__main__":
    main()
