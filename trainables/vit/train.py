"""Vision Transformer image classification: the Ray Tune function trainable ``train(config, data)``.

One trial, on the shared skeleton (``trainables._skeleton``): parse the flat config into ``ViTConfig``,
put the (shared, read-only) uint8 images on the device, build the model and optimizer, then for each
epoch train over the training split in shuffled batches, evaluate on the validation split and report
once with a checkpoint. ``Trial`` below is what this family fills into the skeleton: its data, model,
epoch, evaluation and best-weights state.

Decisions worth knowing:
- Images are normalised (the training split's per-channel mean and std) and augmented on the device,
  batch by batch: the corpus's random crop (zero padding) and horizontal flip, when ``augment``.
- Each epoch's order and augmentation come from a generator seeded with (seed, epoch), so a trial
  resumed at an epoch's end draws what an uninterrupted one would, and ends with the same metrics
  (tested through real Ray Tune in tests/trainables/test_vit_train.py). Dropout draws from torch's
  global generator, whose state the skeleton checkpoints.
- ``train_loss`` and ``train_acc`` are the means over the epoch's batches as trained (augmented, with
  dropout), as seed report 001 reports them; ``val_*`` and ``test_acc`` are measured without either.
- ``test_acc`` (last report only) is measured with the weights of the epoch with the best val_acc.
- ``tokens`` counts training images and ``flops`` = ``vit_flops_per_image`` × images.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from tunelab.trainables import _skeleton
from tunelab.trainables import metrics as M
from tunelab.trainables._config import parse_config
from tunelab.trainables._errors import ConfigError, DataError
from tunelab.trainables._report import load_state, report
from tunelab.trainables._skeleton import Interval, decay_groups, finite, hits, set_lr
from tunelab.trainables.gpt.model import hidden_weights, width_groups
from tunelab.trainables.vit.config import ViTConfig, param_count, params_nonembed
from tunelab.trainables.vit.data import ImageData
from tunelab.trainables.vit.model import ViT
from tunelab.trainables.vit.schedule import step_lr

_EPOCH_SEED = 1_000_003  # (seed, epoch) -> the epoch's generator seed


def train(config: dict[str, Any], data: ImageData | None = None) -> None:
    """Ray Tune function trainable: one ViT trained on an image classification corpus.

    Args:
        config: the trial's flat config (defaults + fixed + sampled); see ``ViTConfig``.
        data: the ``ImageData`` the driver made with ``data.load_data`` and handed over through
            ``tune.with_parameters``.

    Raises:
        ConfigError, DataError: before any training.
    """
    cfg = parse_config(ViTConfig, config)
    if data is None:
        raise DataError("the vit trainable needs its data: tune.with_parameters(train, data=data.load_data(...))")
    _skeleton.run(Trial(cfg, data), report, load_state)


class Trial(_skeleton.Recipe):
    """Everything one trial owns while it runs, and the family's part of the skeleton.

    Attributes:
        n_train: training images per epoch (the leading ``train_fraction`` of the split).
        best_val_acc: the best validation accuracy so far (-1 before the first evaluation).
        best_weights: a CPU copy of the weights of the epoch with the best val_acc.
    """

    def __init__(self, cfg: ViTConfig, data: ImageData) -> None:
        super().__init__(cfg)
        for field, ours in (("image_size", data.image_size), ("channels", data.channels),
                            ("num_classes", data.num_classes)):
            if getattr(cfg, field) != ours:
                raise ConfigError(
                    f"{field}={getattr(cfg, field)} does not match the {data.corpus} data "
                    f"({data.image_size}×{data.image_size}×{data.channels} images, {data.num_classes} classes): "
                    f"set image_size: {data.image_size}, channels: {data.channels}, num_classes: {data.num_classes}"
                )
        self.data = data
        self.n_train = max(1, int(len(data.train_y) * cfg.train_fraction))
        self.best_val_acc = -1.0
        self.best_weights: dict[str, torch.Tensor] | None = None

    def build(self) -> None:
        cfg, data, device = self.cfg, self.data, self.device
        # uint8 on the device (CIFAR-10's 45,000 training images are 138 MB); torch.tensor copies,
        # since the object store's arrays are read-only.
        self.train_x = torch.tensor(data.train_x[:self.n_train], device=device)
        self.train_y = torch.tensor(data.train_y[:self.n_train], device=device)
        self.val = (torch.tensor(data.val_x, device=device), torch.tensor(data.val_y, device=device))
        self.test = (torch.tensor(data.test_x, device=device), torch.tensor(data.test_y, device=device))
        self.mean = torch.tensor(data.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(data.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.model = ViT(cfg).to(device)
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # fp32 leftovers (outside autocast) on tensor cores
        self.optimizer = make_optimizer(cfg, self.model, device)

    @property
    def epoch(self) -> int:
        return int(self.progress.epoch)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n_train / self.cfg.batch_size)

    # --- the family's part of the loop --------------------------------------------------------------
    def intervals(self) -> range:
        return range(self.epoch + 1, self.cfg.epochs + 1)

    def train_interval(self, epoch: int) -> Interval:
        return run_epoch(self, epoch)

    def evaluate(self) -> dict[str, float]:
        loss, acc = evaluate(self, *self.val)
        return {M.VAL_LOSS: loss, M.VAL_ACC: acc}

    def observe(self, train: Interval, val: Mapping[str, float], diverged: bool) -> dict[str, float]:
        val_acc = val.get(M.VAL_ACC, 0.0)  # a diverged interval has no evaluation
        if val_acc > self.best_val_acc and not diverged:
            self.best_val_acc = val_acc
            self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        return {
            M.TRAIN_LOSS: finite(train.loss), M.TRAIN_ACC: train.acc,
            M.VAL_LOSS: finite(val[M.VAL_LOSS]), M.VAL_ACC: val_acc,
        }

    def is_last(self, epoch: int) -> bool:
        return epoch == self.cfg.epochs

    def final(self) -> dict[str, float]:
        return {M.TEST_ACC: evaluate(self, *self.test, model=_best_model(self))[1]}

    def sizes(self) -> dict[str, float]:
        return {M.PARAMS: param_count(self.cfg), M.PARAMS_NONEMBED: params_nonembed(self.cfg)}

    @property
    def flops_per_token(self) -> int:
        return self.cfg.flops_per_image  # a ViT's "token" for the counters is an image

    @property
    def ceiling(self) -> float:
        return self.cfg.loss_ceiling

    def state(self) -> dict[str, Any]:
        return {"best_val_acc": self.best_val_acc, "best_weights": self.best_weights}

    def load(self, state: Mapping[str, Any]) -> None:
        self.best_val_acc, self.best_weights = state["best_val_acc"], state["best_weights"]

    # --- images on the device -----------------------------------------------------------------------
    def images(self, raw: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 images (B, C, H, W) -> normalised float32, augmented when ``generator`` is given."""
        x = raw.float()
        if generator is not None and self.cfg.augment:
            x = augment(x, self.data.pad, self.data.flip, generator)
        return (x - self.mean) / self.std


setup = Trial.setup  # a seeded, built trial, for tests and benchmarks


def make_optimizer(cfg: ViTConfig, model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """The optimizer ``cfg`` names, weight decay on tensors of 2 or more dimensions only, and µP's
    learning rates under ``parametrization: mup`` (``width_groups``, as the GPT's); the learning rate
    is set per step."""
    groups = width_groups(decay_groups(model, cfg.weight_decay, matrices_only=True), hidden_weights(model.blocks), cfg)
    return _skeleton.make_optimizer(cfg.optimizer, groups, lr=cfg.lr, device=device, momentum=cfg.momentum,
                                    betas=(cfg.beta1, cfg.beta2))


def augment(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop of the zero-padded images back to their size, and a horizontal flip of half of them.

    The random draws come from ``generator`` (on the CPU) and move to the images' device.

    Args:
        x: (B, C, H, W) float images, unnormalised (so the padding is black, as torchvision's).
        pad: pixels of padding on each side; 0 skips the crop.
        flip: flip each image left-right with probability 1/2.
        generator: the epoch's generator.
    """
    B, C, H, W = x.shape
    if pad:
        offsets = torch.randint(0, 2 * pad + 1, (2, B), generator=generator).to(x.device)
        rows = (offsets[0, :, None] + torch.arange(H, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
        cols = (offsets[1, :, None] + torch.arange(W, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
        batch = torch.arange(B, device=x.device)[:, None, None, None]
        channel = torch.arange(C, device=x.device)[None, :, None, None]
        x = F.pad(x, (pad, pad, pad, pad))[batch, channel, rows, cols]
    if flip:
        flipped = (torch.rand(B, generator=generator) < 0.5).to(x.device)
        x = torch.where(flipped[:, None, None, None], x.flip(-1), x)
    return x


def run_epoch(trial: Trial, epoch: int) -> Interval:
    """One pass over the training images in a shuffled order, one optimizer step per batch.

    Advances the trial's epoch, step and image counters.

    Args:
        trial: the running trial.
        epoch: the epoch about to run, 1-based.
    """
    cfg, model, progress = trial.cfg, trial.model, trial.progress
    generator = torch.Generator().manual_seed(cfg.seed * _EPOCH_SEED + epoch)
    order = torch.randperm(trial.n_train, generator=generator).to(trial.device)
    model.train()
    # Sums on the device, so that a step needs no sync.
    loss_sum = torch.zeros((), dtype=torch.float64, device=trial.device)
    correct = torch.zeros((), dtype=torch.int64, device=trial.device)
    lr = cfg.lr
    for start in range(0, trial.n_train, cfg.batch_size):
        idx = order[start:start + cfg.batch_size]
        lr = step_lr(cfg, progress.step + 1, trial.steps_per_epoch)
        set_lr(trial.optimizer, lr)
        x, y = trial.images(trial.train_x[idx], generator), trial.train_y[idx]
        with trial.autocast():
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        if cfg.clip:
            _skeleton.clip_grad_norm(model, cfg.clip)
        trial.optimizer.step()
        trial.optimizer.zero_grad(set_to_none=True)
        loss_sum += loss.detach().double() * len(idx)
        correct += hits(logits.detach(), y).sum()
        progress.step += 1
        progress.tokens += len(idx)
    progress.epoch = epoch
    return Interval(loss_sum.item() / trial.n_train, correct.item() / trial.n_train, lr)


@torch.no_grad()
def evaluate(trial: Trial, xs: torch.Tensor, ys: torch.Tensor, model: ViT | None = None) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a whole split, without augmentation or dropout.

    Args:
        trial: the running trial.
        xs, ys: the split's uint8 images and labels on the device (``trial.val`` or ``trial.test``).
        model: the model to evaluate (default: the trial's).
    """
    model = model if model is not None else trial.model
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=trial.device)
    correct = torch.zeros((), dtype=torch.int64, device=trial.device)
    for start in range(0, len(ys), trial.cfg.eval_batch_size):
        x, y = xs[start:start + trial.cfg.eval_batch_size], ys[start:start + trial.cfg.eval_batch_size]
        with trial.autocast():
            logits = model(trial.images(x))
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
        correct += hits(logits, y).sum()
    return loss_sum.item() / len(ys), correct.item() / len(ys)


def _best_model(trial: Trial) -> ViT:
    # A copy holding the best-val weights; the trial's model keeps its last weights (the checkpoint's).
    model = copy.deepcopy(trial.model)
    if trial.best_weights is not None:
        model.load_state_dict(trial.best_weights)
    return model
