"""A Vision Transformer classifier on the GPT's transformer blocks, without the causal mask.

References:
1) Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words": patches as tokens, a learned class
   token, learned positions, a LayerNorm and a linear head on the class token's output.
2) Seed report 001 (its Table 1 fixes the shape: see ``config.param_count``).
3) ``trainables.gpt.model`` for the blocks (pre- or post-norm, ``Block(cfg, causal=False)``), their
   init, GPT-2's scaled init of the residual projections and ``parametrization: mup``'s rules: the
   patch projection, class token and positions are µP's input weights, the head its readout.

The shape comes from ``ViTConfig`` (config.py).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from tunelab.trainables.gpt.model import GPT, Block, init_blocks
from tunelab.trainables.vit.config import ViTConfig


class ViT(nn.Module):
    """Image classifier: patches -> tokens -> transformer encoder -> class-token head.

    Args:
        cfg: the trial's ``ViTConfig`` (image_size, channels and num_classes as the data has them).
    """

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.n_embd
        # A p×p convolution with stride p is a linear map of each flattened p×p×C patch.
        self.patch_embed = nn.Conv2d(cfg.channels, d, kernel_size=cfg.patch_size, stride=cfg.patch_size,
                                     bias=cfg.bias)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.n_positions, d))
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, causal=False) for _ in range(cfg.n_layer))
        # With pre-norm blocks the residual stream is never normalised, so the head needs this one;
        # post-norm blocks keep it too, as seed 001's equal parameter counts say (config.param_count).
        self.ln_f = nn.LayerNorm(d, bias=cfg.bias)
        self.head = nn.Linear(d, cfg.num_classes, bias=cfg.bias)
        self.apply(GPT._init_weights)  # Linear layers N(0, 0.02), biases 0, as the GPT
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.02)
        init_blocks(self.blocks, cfg)  # GPT-2's residual-branch scaling and µP's, as in the GPT

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count; non_embedding leaves out the patch projection, class token and positions.

        Args:
            non_embedding: as ``config.param_count``'s.
        """
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= sum(p.numel() for p in self.patch_embed.parameters())
            n -= self.cls_token.numel() + self.pos_embed.numel()
        return n

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits of a batch of normalised images.

        Args:
            images: (B, C, H, W) with C = channels and H = W = image_size.

        Returns:
            Logits (B, num_classes).
        """
        x = self.patch_embed(images)  # (B, d, H/p, W/p)
        x = x.flatten(2).transpose(1, 2)  # (B, P, d): patches in raster order
        cls = self.cls_token.expand(x.size(0), -1, -1)
        x = self.drop(torch.cat([cls, x], dim=1) + self.pos_embed)  # (B, P + 1, d)
        for block in self.blocks:
            x, _ = block(x)
        x = self.ln_f(x[:, 0])  # the class token's output only
        if self.cfg.parametrization == "mup":
            x = x * self.cfg.readout_mult  # µP's readout multiplier, as the GPT's
        return self.head(x)
