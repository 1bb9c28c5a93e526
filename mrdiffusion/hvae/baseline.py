"""The independent per-pixel categorical baseline: a histogram per pixel and channel.

``p(x) = Π_i Cat(x_i; π_i)`` with ``π_i`` the training frequencies of pixel
``i``'s levels, smoothed by ``alpha`` pseudo-counts (a Dirichlet posterior mean).
Its test negative log-likelihood in bits per dimension is the bar an HVAE has
to clear: everything it gains comes from modelling dependence between pixels.
"""

from __future__ import annotations

import math

import torch

__all__ = ["PixelCategorical"]


class PixelCategorical:
    def __init__(self, levels, alpha=0.5):
        if alpha <= 0:
            raise ValueError(f"alpha: expected a positive pseudo-count, got {alpha}")
        self.levels, self.alpha = int(levels), float(alpha)
        self.log_probs = None

    def fit(self, x):
        """``x``: ``(N, C, H, W)`` integer levels."""
        onehot = torch.nn.functional.one_hot(x.long(), self.levels).double()  # (N, C, H, W, L)
        counts = onehot.sum(0) + self.alpha
        self.log_probs = (counts / counts.sum(-1, keepdim=True)).log()
        return self

    def nll_bits_per_dim(self, x):
        lp = self.log_probs.unsqueeze(0).expand(x.shape[0], *self.log_probs.shape)
        ll = lp.gather(-1, x.long().unsqueeze(-1)).squeeze(-1)
        return float(-ll.mean() / math.log(2.0))

    def num_parameters(self):
        return int(self.log_probs.numel()) if self.log_probs is not None else 0
