"""The ViT trainable's config: one flat dataclass a trial's dict becomes, plus torch-free sizes.

Nothing here imports torch, so the search can validate configs, count parameters and FLOPs and check
constraints without it. ``tunelab inspect`` prints ``summary(cfg)``.

The block fields (n_layer, n_head, n_embd, mlp_ratio, dropout, bias, norm, parametrization,
base_width) and their defaults come
from the GPT's ``BlockConfig``: both families stack the same ``Block``. The ViT sets one of them
differently, ``mlp_ratio`` 2 (seed report 001's MLP of 512 on a width of 256, against GPT-2's 4).
The defaults are seed report 001's CIFAR-10 shape: width 256, MLP hidden 512, biases everywhere,
4×4 patches of 32×32×3 images (64 patches), a class token, 65 learned positions, a final LayerNorm and
a 10-way head; with 2, 4 and 6 layers that is 1,086,730, 2,140,938 and 3,195,146 parameters, its
Table 1 (``param_count``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field

from tunelab.trainables._config import SIZE_CONSTRAINTS, Fraction, NonNeg, PosFloat, PosInt, Unit, config_dataclass, size_violation
from tunelab.trainables.flops import vit_flops_per_image
from tunelab.trainables.gpt.config import BlockConfig, block_param_count, layer_norm_param_count, parametrization_summary

CONSTRAINTS = SIZE_CONSTRAINTS
MB = 2**20


@config_dataclass
class ViTConfig(BlockConfig):
    """Everything one ViT trial needs; the search's flat config maps onto these fields.

    Model (besides the ``BlockConfig`` fields, whose ``norm`` picks pre- or post-norm blocks):
        patch_size: side of the square patches the images are cut into (divides image_size).
        image_size, channels, num_classes: the data's shape. They must agree with the corpus
            (CIFAR-10 32, 3, 10; digits 8, 1, 10); a trial checks them against its data before it
            builds anything. They are config fields so that parameter and FLOP counts, constraints
            and ``tunelab inspect`` need no data.
        mlp_ratio: MLP hidden width over n_embd (2: seed 001's 512 on 256).

    Optimisation:
        epochs: passes over the (fraction of the) training split; one report each.
        batch_size: training images per optimizer step (the last batch of an epoch may be smaller).
        eval_batch_size: images per forward pass when evaluating validation and test.
        train_fraction: train on this leading fraction of the training split (cost probes, tests).
        optimizer: adamw (decoupled decay; fused kernels), adam (decay as an L2 term), sgd, momentum
            (SGD with ``momentum``). Weight decay applies to weights of 2 or more dimensions (matmul
            and patch weights, the class token and positions), not to biases and LayerNorm gains.
        lr: the peak learning rate (under ``parametrization: mup``, of all but the blocks' matrices,
            which train at ``hidden_lr_mult`` times it).
        lr_schedule: per optimizer step, after ``warmup_epochs`` of linear warm-up from 0:
            constant; cosine (from lr down to min_lr at the last step, seed 003's formula);
            step (lr divided by lr_decay every decay_every epochs).
        min_lr: where the cosine ends.
        warmup_epochs: linear warm-up length in epochs (fractions allowed; 0: none).
        lr_decay, decay_every: the step schedule's divisor and period in epochs.
        weight_decay, momentum, beta1, beta2: optimizer coefficients.
        clip: global gradient-norm clip; None or 0 disables it.
        augment: the corpus's light augmentation on the device (CIFAR-10: random crop with 4 pixels
            of zero padding and a horizontal flip; digits: none).

    Runtime:
        device: auto (CUDA when the trial has a GPU, with bf16 autocast and fused attention), cpu, cuda.
        seed: seeds Python, NumPy and torch (weights, dropout), and with the epoch each epoch's order
            and augmentation.
        diverge_loss: a train or validation loss above this, or NaN/inf, ends the trial as diverged;
            None means 2 · ln(num_classes), twice the loss of a uniform guess.
    """

    patch_size: PosInt = 4
    image_size: PosInt = 32
    channels: PosInt = 3
    num_classes: Annotated[int, Field(ge=2)] = 10
    mlp_ratio: PosFloat = 2.0

    epochs: PosInt = 10
    batch_size: PosInt = 128
    eval_batch_size: PosInt = 500
    train_fraction: Fraction = 1.0
    optimizer: Literal["adamw", "adam", "sgd", "momentum"] = "adamw"
    lr: PosFloat = 1e-3
    lr_schedule: Literal["constant", "cosine", "step"] = "cosine"
    min_lr: NonNeg = 0.0
    warmup_epochs: NonNeg = 0.0
    lr_decay: Annotated[float, Field(ge=1)] = 10.0
    decay_every: PosInt = 5
    weight_decay: NonNeg = 5e-4
    momentum: Unit = 0.9
    beta1: Unit = 0.9
    beta2: Unit = 0.999
    clip: NonNeg | None = None
    augment: bool = True

    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    diverge_loss: PosFloat | None = None

    def __post_init__(self) -> None:
        # Fail before computing (STYLE.md 3): every cross-field rule, with the fields named.
        super().__post_init__()
        if self.image_size % self.patch_size:
            raise ValueError(f"patch_size={self.patch_size} does not divide image_size={self.image_size}")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr={self.min_lr} exceeds lr={self.lr}")
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs={self.warmup_epochs} exceeds epochs={self.epochs}")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def n_positions(self) -> int:
        """Learned positions: one per patch and one for the class token (CIFAR-10 default: 65)."""
        return self.num_patches + 1

    @property
    def flops_per_image(self) -> int:
        return vit_flops_per_image(self)

    @property
    def loss_ceiling(self) -> float:
        return self.diverge_loss if self.diverge_loss is not None else 2.0 * math.log(self.num_classes)


def param_count(cfg: ViTConfig, non_embedding: bool = False) -> int:
    """Parameters of ``ViT(cfg)``, in closed form.

    Patch projection C·p²·d + b·d (a p×p convolution with stride p: a linear map of each flattened
    patch), class token d, positions (P + 1)·d, n_layer GPT blocks (``block_param_count``), a final
    LayerNorm d + b·d and the head d·K + b·K (b = 1 with bias; P patches, K classes).

    The final LayerNorm is there for post-norm blocks too, although the last block already ends on
    one: seed report 001's Table 1 gives pre- and post-norm the same count, and only that LayerNorm
    (512 parameters at width 256) can make them equal, since the blocks themselves have two
    LayerNorms either way. Without it post-norm would have 1,086,218 at 2 layers, not 1,086,730.
    Default shape: 12,544 + 256 + 16,640 + L · 527,104 + 512 + 2,570 = 1,086,730 (L = 2),
    2,140,938 (4), 3,195,146 (6).

    Args:
        cfg: the config.
        non_embedding: leave out the patch projection, the class token and the positions.
    """
    d, b = cfg.n_embd, int(cfg.bias)
    embedding = cfg.channels * cfg.patch_size**2 * d + b * d + d + cfg.n_positions * d
    head = layer_norm_param_count(cfg) + d * cfg.num_classes + b * cfg.num_classes
    total = cfg.n_layer * block_param_count(cfg) + head
    return total if non_embedding else total + embedding


def params_nonembed(cfg: ViTConfig) -> int:
    """Parameters without the patch projection, class token and positions."""
    return param_count(cfg, non_embedding=True)


def model_mb(cfg: ViTConfig) -> float:
    """fp32 parameter bytes / 2**20."""
    return param_count(cfg) * 4 / MB


def summary(cfg: ViTConfig) -> dict[str, Any]:
    """What ``tunelab inspect`` prints for a config: sizes and the shape of the token sequence.

    Args:
        cfg: a parsed config.
    """
    return {
        "params": param_count(cfg),
        "params_nonembed": params_nonembed(cfg),
        "model_mb": round(model_mb(cfg), 2),
        "tokens_per_image": cfg.n_positions,
        "flops_per_image": cfg.flops_per_image,
        "epochs": cfg.epochs,
        **parametrization_summary(cfg, cfg.lr),
    }


def check(cfg: ViTConfig, constraints: Mapping[str, Any]) -> str | None:
    """Why a parsed config cannot run under a search's constraints (``model_mb`` and ``params``: see
    ``_config.size_violation``), or None when it can.

    Args:
        cfg: a parsed config.
        constraints: name -> bound.
    """
    return size_violation("vit", constraints, model_mb(cfg), param_count(cfg))
