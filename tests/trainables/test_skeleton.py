"""The trial skeleton every torch family runs on: out of memory anywhere, and reporting without Ray."""

from __future__ import annotations

import importlib
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from tunelab.trainables import _report, metrics
from tunelab.trainables import _skeleton
from tunelab.trainables._skeleton import decay_groups, hits, make_optimizer

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def _rnn_case(data_dir, tmp_path):
    from tunelab.trainables.rnn.data import load_data

    config = dict(hidden_size=16, num_layers=1, train_fraction=0.01, eval_fraction=0.05, epochs=2, device="cpu")
    return "tunelab.trainables.rnn.train", "RNNModel", config, load_data({"corpus": "ptb", "dir": str(data_dir / "ptb")})


def _gpt_case(data_dir, tmp_path):
    from tunelab.trainables.gpt import tokens

    text = (data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:20_000]
    (tmp_path / "slice.txt").write_text(text, encoding="utf-8")
    data = tokens.prepare(tmp_path / "slice.txt", tmp_path / "char", "char")
    config = dict(vocab_size=65, n_positions=16, n_layer=1, n_head=2, n_embd=16, batch_size=4,
                  flop_budget=None, max_steps=4, eval_interval=2, eval_iters=1, device="cpu")
    return "tunelab.trainables.gpt.train", "GPT", config, data


def _vit_case(data_dir, tmp_path):
    from tunelab.trainables.vit.data import load_digits

    config = dict(image_size=8, channels=1, patch_size=4, n_layer=1, n_head=2, n_embd=16, epochs=2, device="cpu")
    return "tunelab.trainables.vit.train", "ViT", config, load_digits()


def _arith_gpt_case(data_dir, tmp_path):
    config = dict(p=5, d_model=16, num_layers=1, num_heads=2, steps=4, eval_every=2, device="cpu")
    return "tunelab.trainables.arith.train", "GPT", config, None


def _arith_lstm_case(data_dir, tmp_path):
    config = dict(model="lstm", p=5, d_model=16, num_layers=1, steps=4, eval_every=2, device="cpu")
    return "tunelab.trainables.arith.train", "RNNModel", config, None


# Each family: (module, the model class it builds, a tiny config, its data). New families add a case.
FAMILIES = {
    "rnn": _rnn_case, "gpt": _gpt_case, "vit": _vit_case, "arith-gpt": _arith_gpt_case, "arith-lstm": _arith_lstm_case,
}


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_out_of_memory_while_the_model_is_built_is_reported(family, data_dir, tmp_path, monkeypatch):
    """A GPU-OOM stand-in raised by the model's constructor: one report, oom 1, worst values, no checkpoint."""
    module_name, model_class, config, data = FAMILIES[family](data_dir, tmp_path)
    module = importlib.import_module(module_name)

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    reports = []
    monkeypatch.setattr(module, model_class, out_of_memory)
    monkeypatch.setattr(module, "report", lambda m, state=None: reports.append((m, state)))
    monkeypatch.setattr(module, "load_state", lambda: None)
    module.train(config, data)
    (m, state), = reports
    assert m[metrics.OOM] == 1 and m[metrics.FINISHED] == 0 and state is None
    assert m[metrics.STEP] == 0 and m[metrics.TOKENS] == 0 and m[metrics.FLOPS] == 0
    assert m[metrics.VAL_LOSS] == math.inf and m[metrics.VAL_ACC] == 0.0
    assert set(metrics.COMMON) - set(metrics.FINAL) <= set(m)
    assert metrics.final_status(m) == metrics.STATUS_OOM


def test_weight_decay_groups_and_optimizers():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    every = decay_groups(model, 0.1, matrices_only=False)
    assert len(every) == 1 and len(every[0]["params"]) == 4
    matrices, rest = decay_groups(model, 0.1, matrices_only=True)
    assert [p.shape for p in matrices["params"]] == [torch.Size([3, 4])] and rest["weight_decay"] == 0.0
    assert len(rest["params"]) == 3
    cpu = torch.device("cpu")

    def groups():  # torch writes its defaults into the group dicts: one set per optimizer
        return decay_groups(model, 0.1, matrices_only=False)

    assert isinstance(make_optimizer("adamw", groups(), lr=1e-3, device=cpu), torch.optim.AdamW)
    assert isinstance(make_optimizer("adam", groups(), lr=1e-3, device=cpu), torch.optim.Adam)
    sgd = make_optimizer("sgd", groups(), lr=0.1, device=cpu, momentum=0.9)
    momentum = make_optimizer("momentum", groups(), lr=0.1, device=cpu, momentum=0.9)
    assert sgd.param_groups[0]["momentum"] == 0.0 and momentum.param_groups[0]["momentum"] == 0.9


def test_a_lab_s_own_metric_names_are_printed_after_tunelab_s(capsys):
    table = _report._Table()
    header, row = table.row({"val_mae": 0.25, metrics.EPOCH: 1, "grad_norm": 3}).splitlines()
    assert header.split() == [metrics.EPOCH, "val_mae", "grad_norm"] and row.split() == ["1", "0.25", "3"]
    assert table.row({"val_mae": 0.2, metrics.EPOCH: 2, "grad_norm": 3, "late": 7}).split()[-1] == "late=7"


def test_report_prints_a_table_outside_ray(capsys):
    table = _report._Table()
    first = table.row({metrics.EPOCH: 1, metrics.VAL_PPL: 123.456789, metrics.WALL_S: 2.5})
    second = table.row({metrics.EPOCH: 2, metrics.VAL_PPL: math.inf, metrics.WALL_S: 5.0, metrics.TEST_PPL: 99.0,
                        metrics.FLOPS: 18_230_550_920})
    header, row = first.splitlines()
    assert header.split() == [metrics.EPOCH, metrics.VAL_PPL, metrics.WALL_S]
    assert row.split() == ["1", "123.5", "2.5"]
    # One header: a column the first report lacked follows the row.
    assert second.split() == ["2", "inf", "5", "flops=1.823e+10", "test_ppl=99"]


def test_report_and_load_state_need_no_ray():
    # A fresh interpreter where `import ray` fails: reporting prints, resuming finds nothing.
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from tunelab.trainables import _report\n"
        "assert _report.load_state() is None\n"
        "_report.report({'epoch': 1, 'val_ppl': 2.0}, state={'x': 1})\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["epoch", "val_ppl", "1", "2"]


def test_hits_are_argmax_hits_and_count_a_tied_maximum():
    # The accuracy of every family: where the maximum is unique, exactly argmax's answer.
    g = torch.Generator().manual_seed(0)
    for shape in [(64, 65), (5, 20, 10_000), (3, 4, 11)]:
        logits = torch.randn(*shape, generator=g)
        targets = torch.randint(0, shape[-1], shape[:-1], generator=g)
        targets.view(-1)[::3] = logits.reshape(-1, shape[-1])[::3].argmax(-1)  # a third of them right
        assert torch.equal(hits(logits, targets), logits.argmax(-1) == targets)
        assert hits(logits, targets).sum() >= targets.numel() // 3
    tied = torch.tensor([[1.0, 3.0, 3.0], [2.0, 0.0, 0.0]])
    assert hits(tied, torch.tensor([2, 0])).tolist() == [True, True]  # argmax: [False, True]


FAULTS = """
import dataclasses, resource, sys, torch
torch.set_num_threads(1)
from tunelab.trainables import _skeleton
from tunelab.trainables.rnn.config import RNNConfig
from tunelab.trainables.rnn.data import load_data
from tunelab.trainables.rnn.train import run_epoch, setup
if sys.argv[2] == "default":  # what a process gets when nothing calls retain_freed_memory
    _skeleton.retain_freed_memory = lambda: False
full = load_data({"corpus": "ptb", "dir": sys.argv[1]})
data = dataclasses.replace(full, train=full.train[:(10 * 20 + 1) * 20], valid=full.valid[:500], test=full.test[:500])
trial = setup(RNNConfig(device="cpu"), data)  # Zaremba small: 16 MB of logits per step
for _ in range(2):
    run_epoch(trial, 1.0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    run_epoch(trial, 1.0)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 30)
"""


def test_a_cpu_step_reuses_the_memory_the_last_one_freed(data_dir):
    # glibc hands large freed blocks back to the kernel, and every step of a CPU trial paid for
    # mapping its activations again: ~10,000 page faults and a fifth of a Zaremba-small LSTM step.
    faults = {}
    for mode in ("default", "retain"):
        out = subprocess.run([sys.executable, "-c", FAULTS, str(data_dir / "ptb"), mode], cwd=ROOT,
                             capture_output=True, text=True, check=True)
        faults[mode] = float(out.stdout.split()[-1])
    assert faults["default"] > 1000, faults  # a 16 MB block is 4,096 pages
    assert faults["retain"] * 10 < faults["default"], faults


def test_mem_peak_is_the_peak_since_the_last_reset():
    # Seed 000's steady-state memory: a reset (at the end of a trial's first epoch) forgets the peaks
    # before it. On CPU the process's resident high-water mark (VmHWM, reset through clear_refs).
    cpu = torch.device("cpu")
    _skeleton.reset_mem_peak(cpu)
    before = _skeleton.mem_peak_mb(cpu)
    big = np.ones(300 * 2**20 // 8)  # 300 MB, touched
    peak = _skeleton.mem_peak_mb(cpu)
    del big
    assert peak >= before + 250
    _skeleton.reset_mem_peak(cpu)
    assert _skeleton.mem_peak_mb(cpu) < peak - 250
