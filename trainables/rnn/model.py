"""The recurrent language model: embedding -> dropout -> nn.LSTM / nn.GRU -> dropout -> linear decoder.

After pytorch/examples' word_language_model ``RNNModel`` and Zaremba et al. (2014): dropout only on
the non-recurrent connections (the embedding output, between layers, before the decoder), every
parameter initialised uniform in ±init_scale, the hidden state handed in and out so that training
can carry it across batches. The recurrence runs in PyTorch's fused kernels (cuDNN on CUDA, oneDNN
on CPU); there is no Python loop over time steps.
"""

from __future__ import annotations

import torch
from torch import nn

from tunelab.trainables.rnn.config import RNNConfig

# LSTM state is (h, c), GRU state is h; each [num_layers, batch, hidden].
Hidden = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class RNNModel(nn.Module):
    """Word-level LSTM or GRU language model.

    Args:
        cfg: cell, emb_size, hidden_size, num_layers, dropout, tie_weights and init_scale are used.
        vocab_size: number of word ids V.
    """

    def __init__(self, cfg: RNNConfig, vocab_size: int) -> None:
        super().__init__()
        self.cell, self.num_layers, self.hidden_size = cfg.cell, cfg.num_layers, cfg.hidden_size
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = nn.Embedding(vocab_size, cfg.emb)
        rnn_cls = nn.LSTM if cfg.cell == "lstm" else nn.GRU
        # nn.LSTM applies its dropout to the outputs of every layer but the last; with one layer it
        # would have nothing to do (and warns), so pass 0 then.
        self.rnn = rnn_cls(cfg.emb, cfg.hidden_size, cfg.num_layers,
                           dropout=cfg.dropout if cfg.num_layers > 1 else 0.0)
        self.decoder = nn.Linear(cfg.hidden_size, vocab_size)
        self._init_weights(cfg.init_scale)
        if cfg.tie_weights:
            # Press & Wolf 2017 / Inan et al. 2017: the decoder reuses the embedding matrix (V × h).
            self.decoder.weight = self.encoder.weight

    def _init_weights(self, scale: float) -> None:
        # Zaremba's code initialises every parameter, biases included, uniform in ±0.1; PyTorch's
        # defaults (±1/sqrt(h) for the recurrence, zero decoder bias in word_language_model) differ.
        for p in self.parameters():
            nn.init.uniform_(p, -scale, scale)

    def forward(self, input: torch.Tensor, hidden: Hidden) -> tuple[torch.Tensor, Hidden]:
        """Logits for every position, and the hidden state after the last one.

        Args:
            input: word ids, [T, B] (time first).
            hidden: the state to start from (``init_hidden``, or the previous window's, detached).

        Returns:
            logits [T, B, V] and the final hidden state.
        """
        emb = self.drop(self.encoder(input))  # [T, B, e]
        output, hidden = self.rnn(emb, hidden)  # [T, B, h]
        return self.decoder(self.drop(output)), hidden

    def init_hidden(self, batch_size: int) -> Hidden:
        """A zero state for ``batch_size`` streams, on the model's device and in its dtype."""
        weight = self.decoder.weight
        zeros = weight.new_zeros(self.num_layers, batch_size, self.hidden_size)
        return (zeros, zeros.clone()) if self.cell == "lstm" else zeros


def detach(hidden: Hidden) -> Hidden:
    """The same state cut from the graph, so the next window's backward pass stops at its start."""
    if isinstance(hidden, tuple):
        return tuple(h.detach() for h in hidden)
    return hidden.detach()
