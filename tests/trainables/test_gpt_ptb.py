"""The GPT on Penn Treebank's words (issue 20): the LSTM's data and vocabulary, epochs read in order,
an exact resume mid-epoch, and seed report 000's parameter counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import tunelab.trainables.gpt.train as gpt_train
from tunelab.trainables import REGISTRY, metrics
from tunelab.trainables._config import parse_config
from tunelab.trainables._errors import ConfigError
from tunelab.trainables.gpt import tokens
from tunelab.trainables.gpt.config import GPTConfig, ModelConfig, epoch_steps, eval_steps, param_count
from tunelab.trainables.gpt.model import GPT
from tunelab.trainables.rnn import data as ptb
from _local import run_trial

# The report's Problem 2.5: 12 heads of 64, d = 768; GPT-1's post-norm blocks, tied embeddings, and
# Penn Treebank's 10,000 words in windows of 35.
GPT1 = dict(n_head=12, n_embd=768, norm="post", vocab_size=10_000, n_positions=35)
# 32 streams: the whole-split evaluations take 2,305 windows of 32 x 8 tokens.
TINY = dict(vocab_size=10_000, n_layer=1, n_head=2, n_embd=16, n_positions=8, batch_size=32, flop_budget=None,
            epochs=1, train_fraction=0.01, device="cpu", max_lr=3e-3, min_lr=3e-3, warmup_steps=0)


@pytest.fixture(scope="module")
def words(data_dir):
    return REGISTRY["gpt"].load_data({"corpus": "ptb", "dir": None})


def test_the_gpt_reads_the_lstms_penn_treebank(words):
    lstm = REGISTRY["rnn"].load_data({"corpus": "ptb", "dir": None})
    assert isinstance(words, ptb.PTBData) and words.vocab == lstm.vocab and words.vocab_size == 10_000
    assert words.splits == {"train": 929_589, "val": 73_760, "test": 82_430}  # with <eos>
    for split, lstm_ids in (("train", lstm.train), ("val", lstm.valid), ("test", lstm.test)):
        assert np.array_equal(words.open(split), lstm_ids)
    assert words.vocab[words.open("train")[words.open("train") == words.vocab.index("<eos>")][0]] == "<eos>"
    assert REGISTRY["gpt"].load_data({"corpus": "ptb", "dir": None, "tokens": None}).dataset_record() == lstm.dataset_record()


def test_an_epoch_reads_the_streams_windows_in_order(words):
    cfg = parse_config(GPTConfig, {**TINY, "grad_accum": 2})
    trial = gpt_train.Trial.setup(cfg, words)
    part = words.open("train")[: int(929_589 * 0.01)]
    rows = len(part) // 32  # 32 streams, stream b = part[b·rows:(b+1)·rows]
    assert trial.per_epoch == epoch_steps(cfg, 929_589) == (rows - 1) // (8 * 2) == trial.total_steps
    for step in range(trial.per_epoch):
        trial.progress.step = step
        for micro in range(2):
            x, y = trial.train_batch(micro)
            start = (step * 2 + micro) * 8
            for b in range(32):
                expected = part[b * rows + start: b * rows + start + 9]
                assert x[b].tolist() == expected[:-1].tolist() and y[b].tolist() == expected[1:].tolist()
    assert eval_steps(cfg, 929_589) == [trial.per_epoch]


def test_epochs_report_once_each_with_whole_splits_evaluated(words):
    cfg = parse_config(GPTConfig, {**TINY, "epochs": 2})
    reports = run_trial(gpt_train.Trial(cfg, words))
    assert [r[metrics.EPOCH] for r, _ in reports] == [1.0, 2.0]
    last = reports[-1][0]
    assert last[metrics.FINISHED] == 1 and math.isfinite(last[metrics.TEST_PPL])
    per_epoch = epoch_steps(cfg, 929_589)
    assert last[metrics.STEP] == 2 * per_epoch and last[metrics.TOKENS] == 2 * per_epoch * 32 * 8
    # The validation perplexity is over the whole split (73,760 tokens less one per stream), from the
    # same model a direct evaluation sees.
    trial = gpt_train.Trial.setup(cfg, words)
    val = trial.streams["val"]
    assert val.shape == (73_760 // 32, 32)
    loss, _ = gpt_train.evaluate(trial, "val")
    with torch.no_grad():
        logits, _ = trial.model(val[:-1].t()[:, :8], val[1:].t()[:, :8])
    assert math.isfinite(loss) and logits.shape == (32, 8, 10_000)


def test_a_resume_mid_epoch_ends_as_the_uninterrupted_run(words):
    # 128 streams, so that each whole-split evaluation is 72 windows.
    cfg = parse_config(GPTConfig, {**TINY, "batch_size": 128, "train_fraction": 0.05, "eval_interval": 20})
    per_epoch = epoch_steps(cfg, 929_589)
    assert per_epoch == 45  # the reports at steps 20 and 40 are mid-epoch
    straight = run_trial(gpt_train.Trial(cfg, words))
    mid_state = straight[0][1]
    assert straight[0][0][metrics.STEP] == 20 and 0 < straight[0][0][metrics.EPOCH] < 1
    resumed = run_trial(gpt_train.Trial(cfg, words), state=mid_state)
    keys = (metrics.TRAIN_LOSS, metrics.VAL_LOSS, metrics.TEST_PPL, metrics.STEP, metrics.TOKENS, metrics.EPOCH)
    assert [r[k] for r, _ in resumed for k in keys if k in r] == [r[k] for r, _ in straight[1:] for k in keys if k in r]


def test_epochs_need_a_run_length_of_their_own():
    with pytest.raises(ConfigError, match="exactly one of flop_budget, max_steps and epochs"):
        parse_config(GPTConfig, {**TINY, "flop_budget": 1e12})
    with pytest.raises(ConfigError, match="eval_every_flops"):
        parse_config(GPTConfig, {**TINY, "eval_every_flops": 1e9})


def test_a_train_fraction_too_small_for_one_window_is_refused(words):
    cfg = parse_config(GPTConfig, {**TINY, "train_fraction": 1e-5})
    with pytest.raises(ConfigError, match="train_fraction"):
        gpt_train.Trial(cfg, words)


# --- parameter counts (seed report 000, Problem 2.5) -------------------------------------------------

def test_attention_has_the_reports_4d_d_plus_1_parameters():
    d = 768
    model = GPT(ModelConfig(**GPT1, n_layer=1))
    attention = sum(p.numel() for p in model.transformer.h[0].attn.parameters())
    assert attention == 4 * d * (d + 1) == 2_362_368


@pytest.mark.parametrize("layers", [1, 2, 4])
def test_gpt1_parameters_in_closed_form(layers):
    # Per post-norm block: attention 4d(d+1), MLP d·4d + 4d + 4d·d + d, two LayerNorms 2·2d; then the
    # token (V·d, tied with the output) and position (35·d) embeddings, no final LayerNorm.
    d, v, p = 768, 10_000, 35
    closed = layers * (4 * d * (d + 1) + 8 * d * d + 5 * d + 4 * d) + v * d + p * d
    assert closed == {1: 14_794_752, 2: 21_882_624, 4: 36_058_368}[layers]
    cfg = ModelConfig(**GPT1, n_layer=layers)
    assert param_count(cfg) == closed
    assert sum(p.numel() for p in GPT(cfg).parameters()) == closed
