"""The coordinate check: does each layer's activation size stay put as the GPT gets wider?

Tensor Programs V (Yang et al. 2022, section 6 and Figure 5) checks a parametrization by training
models of several widths for a few steps and plotting the mean absolute coordinate of each layer's
output against width; Microsoft's ``mup`` package ships the same check (``mup.coord_check``). Under
µP the curves are flat, every layer's coordinates Θ(1) at every step. Under the standard
parametrization with one learning rate for every width, Adam's updates of a d-wide matrix move each
output coordinate by Θ(d), so after a step or two the sizes grow with the width and the logits grow
fastest.

``sizes`` trains each width from the same seed on one fixed batch of random tokens (the check needs
no corpus: what it measures is how the updates scale, and a repeated batch makes them line up as
training does), with the trainable's own model and optimizer (``GPT``, ``train.make_optimizer``) at a
constant learning rate, no clipping and no schedule, so that only the parametrization differs between
widths. ``slope`` fits log size against log width. ``bench/coord_check.py`` plots the result; the tests
assert on the slope of the logits.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from tunelab.trainables.gpt.config import GPTConfig
from tunelab.trainables.gpt.model import GPT
from tunelab.trainables.gpt.train import make_optimizer

# A small GPT that trains a step in milliseconds on a CPU at the widths a check compares; the
# widths come from the caller, and so does anything else it sets.
SMALL = dict(vocab_size=256, n_positions=16, n_layer=2, n_head=4, batch_size=8)


def layers(model: GPT) -> dict[str, nn.Module]:
    """The modules whose outputs a check watches, by name, in forward order: the embedding sum (the
    input of the embedding dropout), each block's attention and MLP branch and the residual stream
    after it, and the logits (the LM head's output, after µP's readout multiplier).

    Args:
        model: the GPT.
    """
    out: dict[str, nn.Module] = {"embedding": model.transformer.drop}
    for i, block in enumerate(model.transformer.h):
        out[f"attn {i}"] = block.attn.c_proj
        out[f"mlp {i}"] = block.mlp.c_proj
        out[f"block {i}"] = block
    out["logits"] = model.lm_head
    return out


@contextlib.contextmanager
def recording(watched: Mapping[str, nn.Module]) -> Iterator[dict[str, float]]:
    """Within the block, each forward pass writes the mean |coordinate| of every watched module's
    output into the yielded dict (a module returning a tuple: of its first element).

    Args:
        watched: name -> module (``layers``).
    """
    seen: dict[str, float] = {}

    def hook(name: str):
        def record(module: nn.Module, args: Any, output: Any) -> None:
            x = output[0] if isinstance(output, tuple) else output
            seen[name] = x.detach().abs().mean().item()
        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in watched.items()]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def sizes(config: Mapping[str, Any], widths: Sequence[int], steps: int) -> list[list[dict[str, float]]]:
    """Train a GPT of each width for ``steps`` Adam steps and record its layers' sizes at each step.

    Args:
        config: ``GPTConfig`` fields besides ``n_embd`` (which each width sets), e.g. ``SMALL`` with
            parametrization, base_width, optimizer, max_lr and seed. ``max_lr`` is the constant
            learning rate; the batch is ``batch_size`` random sequences of ``n_positions`` tokens
            drawn from ``seed``.
        widths: the n_embd values, each divisible by n_head.
        steps: optimizer steps per width.

    Returns:
        result[i][t]: layer name -> mean |coordinate| of the output at ``widths[i]`` in the forward
        pass after t steps, t = 0 (at init) .. steps.
    """
    out = []
    for width in widths:
        cfg = GPTConfig(**{**config, "n_embd": width, "flop_budget": None, "max_steps": steps,
                           "eval_interval": steps, "device": "cpu"})
        torch.manual_seed(cfg.seed)
        tokens = torch.randint(0, cfg.vocab_size, (cfg.batch_size, cfg.n_positions + 1),
                               generator=torch.Generator().manual_seed(cfg.seed))
        model = GPT(cfg)
        optimizer = make_optimizer(cfg, model, torch.device("cpu"))
        per_step = []
        with recording(layers(model)) as seen:
            for t in range(steps + 1):
                _, loss = model(tokens[:, :-1], tokens[:, 1:])
                per_step.append(dict(seen))
                if t < steps:
                    loss.backward()
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
        out.append(per_step)
    return out


def slope(widths: Sequence[int], values: Sequence[float]) -> float:
    """The least-squares slope of log(value) against log(width): the exponent a in value ∝ width^a.

    Args:
        widths: the widths.
        values: one positive value per width.
    """
    xs = [math.log(w) for w in widths]
    ys = [math.log(v) for v in values]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
