r"""One top-down HVAE step as an SDE that any :mod:`solvers` scheme can step.

The VDVAE block (docs/design.md §3) is the two-step Euler scheme for

.. math::
    dZ = \bigl(\mu_1(Z,t) + W m(Z,t) + b + \mu_2(Z,t)\bigr)\,dt + W\,\mathrm{diag}(s(Z,t))\,dB_t,

where ``m, log s, μ₁`` come from the prior network, ``μ₂`` is the residual
block and ``W z + b`` is the latent projection (a 1×1 convolution). On the grid
of the current resolution ``B`` has ``zdim`` independent coordinates per cell
(one per latent channel and cell, *not* per state channel), and ``dB`` over a
step of length ``h`` is ``sqrt(h)·ε`` with ``ε`` standard normal — the latent
``z = m + s ε`` of the VAE at ``h = 1``.

Noise structure. ``W diag(s)`` maps the latent grid into the state: it is
neither diagonal nor additive, and written as the ``"general"`` noise of
:mod:`solvers._sde` it would be a dense ``(*x.shape, zdim·H·W)`` tensor that is
almost all zeros. So :meth:`TopDownSDE.diffusion` returns the operator itself
(:class:`LatentDiffusion`): the driver's general-noise product
``(g * dW).sum(-1)`` evaluates to ``W (s ⊙ dW)`` (a bias-free 1×1 convolution)
with ``dW`` flattened per sample. Every scheme that only touches the noise
through the driver's ``ctx.noise`` / ``ctx.add_noise`` (Euler–Maruyama,
two-step Euler, Heun, drift-implicit Euler, exponential Euler) works unchanged.
The top-down pass runs through :func:`solvers.integrate` (:mod:`.topdown`).

Time. A step of the trained model has ``h = 1`` (the ``h`` and ``sqrt h`` of
docs/design.md §3 absorbed into the networks), so step ``i`` covers ``[i, i+1)``;
the time horizon is the number of trained steps. Sampling with ``m`` steps on a
resolution trained with ``n`` uses ``h = n / m``. The networks of a non-shared
model are piecewise constant in time: a step starting in ``[i, i+1)`` uses
block ``i`` for all its stages (Heun's stage at ``t + h`` included, the limit
from the left). A shared model sees time through a :class:`~.blocks.TimeEmbedding`
added to the input of its networks.
"""

from __future__ import annotations

import torch.nn.functional as F

import solvers

__all__ = ["LatentDiffusion", "TopDownSDE", "DecayTopDownSDE"]


class LatentDiffusion:
    """The diffusion operator ``g = W diag(s)``: ``g(dB) = W (s ⊙ dB)``, no bias."""

    __slots__ = ("weight", "scale")

    def __init__(self, weight, scale):
        self.weight, self.scale = weight, scale

    def __call__(self, dB):
        return F.conv2d(self.scale * dB, self.weight)

    def __mul__(self, dW):
        """``g * dW`` as the driver writes general noise, ``(g * dW).sum(-1)``; ``dW`` flattened per sample."""
        return _LatentProduct(self, dW)


class _LatentProduct:
    """``g * dW`` before the sum over the noise index: ``.sum(-1)`` applies the operator (a 1×1 convolution)."""

    __slots__ = ("g", "dW")

    def __init__(self, g, dW):
        self.g, self.dW = g, dW

    def sum(self, dim):
        if dim != -1:
            raise ValueError(f"dim: the latent noise product sums over the noise index only (-1), got {dim}")
        scale = self.g.scale
        return self.g(self.dW.reshape(self.dW.shape[0], *scale.shape[1:]))


class TopDownSDE(solvers.SDE):
    """The learned SDE of one top-down step, following the solvers SDE protocol.

    ``drift = drift_part1 + drift_part2`` with ``drift_part1 = μ₁ + W m + b``
    (prior-branch residual and the mean of the latent injection) and
    ``drift_part2 = μ₂`` (the residual block); ``diffusion`` is the operator
    ``W diag(s)``. ``embed`` (a :class:`~.blocks.TimeEmbedding` or ``None``)
    maps ``t / horizon`` to a tensor added to every network input.

    The prior network is evaluated once per state: :meth:`prior` caches its
    output for the last ``(t, x)`` (``x`` compared by identity, and held, so
    its id cannot be reused).
    """

    noise_type = "general"

    def __init__(self, block, embed=None, horizon=1.0):
        self.block, self.embed, self.horizon = block, embed, float(horizon)
        self._cache = (None, None, None)
        self._emb = (None, None)

    def _input(self, t, x):
        if self.embed is None:
            return x
        if self._emb[0] != t:
            self._emb = (t, self.embed(t / self.horizon, x))
        return x + self._emb[1]

    def prior(self, t, x):
        """``(m, log s, μ₁)`` at ``(t, x)``."""
        ct, cx, out = self._cache
        if cx is x and ct == t:
            return out
        out = self.block.prior(self._input(t, x))
        self._cache = (t, x, out)
        return out

    def posterior(self, t, x, act):
        """``(m_q, log s_q)`` from the state and the encoder activation at this resolution."""
        return self.block.posterior(self._input(t, x), act)

    def drift_part1(self, t, x):
        m, _, mu1 = self.prior(t, x)
        return mu1 + self.block.z_proj(m)

    def drift_part2(self, t, x):
        return self.block.resnet(self._input(t, x))

    def drift(self, t, x):
        return self.drift_part1(t, x) + self.drift_part2(t, x)

    def diffusion(self, t, x):
        _, log_s, _ = self.prior(t, x)
        return LatentDiffusion(self.block.z_proj.weight, log_s.exp())


class DecayTopDownSDE(TopDownSDE):
    r"""A top-down SDE with a learned per-channel linear part, for exponential schemes.

    .. math:: dZ = \bigl(-\kappa \odot Z + N(Z, t)\bigr)\,dt + W\,\mathrm{diag}(s)\,dB_t,

    ``N`` the drift of :class:`TopDownSDE` and ``κ > 0`` one rate per state
    channel (``kappa`` of shape ``(1, width, 1, 1)``). ``linear(t) = −κ`` and
    ``nonlinear(t, x) = N`` are what :class:`solvers.ExponentialEuler` needs:
    it takes ``e^{−κh}`` exactly and stays stable for any ``κh``, where a
    forward-Euler step multiplies by ``1 − κh``. For split schemes the decay
    belongs to the first part: ``drift_part1 = −κ x + μ₁ + W m + b``.
    """

    def __init__(self, block, embed=None, horizon=1.0, kappa=None):
        super().__init__(block, embed, horizon)
        self.kappa = kappa

    def linear(self, t):
        return -self.kappa

    def nonlinear(self, t, x):
        return TopDownSDE.drift_part1(self, t, x) + self.drift_part2(t, x)

    def drift_part1(self, t, x):
        return TopDownSDE.drift_part1(self, t, x) - self.kappa * x

    def drift(self, t, x):
        return self.nonlinear(t, x) - self.kappa * x
