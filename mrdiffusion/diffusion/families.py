r"""Noising families of the learned multi-resolution diffusion: one schedule per Haar band.

Band ``k`` (``k = 0`` the scaling coefficients, ``k = 1 … L`` the detail
levels coarsest → finest, in the orthonormal packed coordinates of
:class:`~mrdiffusion.multires.BandLayout`) is noised as

.. math:: x_t^{(k)} = α_k(t)\, x_0^{(k)} + σ_k(t)\, ε^{(k)},\qquad ε \sim N(0, I).

Every family uses EDM's time, ``t = σ_0(t)`` the noise level of the coarse
band, on ``[0, T]`` with ``T = 80`` (Karras et al. 2022), so training draws
``t`` from one log-normal law whatever the family (:mod:`.loss`).

- ``scalar``: ``α_k = 1``, ``σ_k = t`` for every band (EDM, the baseline).
- ``perband``: ``α_k = 1``, ``σ_k = m_k t`` with ``m_k = ratio^k`` (default
  ``ratio = 2``): band ``k`` reaches a given noise level ``m_k`` times
  earlier, so fine bands lose their signal first; every band is invertible
  (``σ_k > 0`` for ``t > 0``).
- ``pointmass``: the coarse band is EDM's (``σ_0 = t``); detail band ``k``
  has an activation time ``a_k`` (decreasing with ``k``: fine bands first)
  and, with ``s = t/a_k`` and ``θ = π s/2``,

  .. math:: α_k = \cos^2 θ,\quad σ_k = \sin θ \cos θ\quad (s < 1),\qquad α_k = σ_k = 0\quad (s \ge 1).

  It is a cosine (VP) schedule multiplied by the cut-off ``c_k = \cos θ``:
  its log-SNR ``λ_k = \log\cot θ`` runs from ``+∞`` at ``t = 0`` to ``-∞`` at
  ``a_k``, where the band is exactly zero, and it stays zero after. The
  forward SDE is ``dx = f_k x dt + g_k dW`` with
  ``f_k = -(π/a_k) \tan θ`` (stiff: ``→ -∞`` at the cut) and
  ``g_k² = (π/(2a_k)) \sin 2θ ≥ 0``. Because the SNR reaches 0 *before* the
  band vanishes, the band just before its cut carries no information about
  the data, and generation from the point mass is well posed: on the way down
  the band is frozen at zero until ``a_k``, and at ``a_k`` its scale-free
  state ``x/σ`` is the exact prior ``N(0, I)`` (:mod:`.sample`). Default
  activations ``a_k = 2 · 0.4^{k-1}`` (``2, 0.8, 0.32, …``): at least three
  for images of 8×8 and more (``levels ≥ 3``).

Every family answers the sampler's questions through a
:class:`~mrdiffusion.processes.BandNoising` (:meth:`Family.noising`, per
coefficient, python floats) and the trainer's through
:meth:`Family.alpha_sigma` (per band, vectorised over a batch of times); a test
checks that the two agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..processes.noising import BandNoising

__all__ = ["FAMILIES", "T_MAX", "ScaledEDMSchedule", "CutCosineSchedule", "Family", "make_family"]

T_MAX = 80.0
"""The end time of every family: EDM's ``σ_max = 80`` for the coarse band."""

FAMILIES = ("scalar", "perband", "pointmass")


@dataclass(frozen=True)
class ScaledEDMSchedule:
    """``α = 1``, ``σ(t) = m t``: ``dX = √(2 m² t) dW`` (EDM's schedule for ``m = 1``)."""

    scale: float = 1.0

    def f(self, t):
        return 0.0

    def g2(self, t):
        return 2.0 * self.scale**2 * t

    def alpha(self, t):
        return 1.0

    def var(self, t):
        return (self.scale * t) ** 2


@dataclass(frozen=True)
class CutCosineSchedule:
    """Point-mass band: ``α = cos²θ``, ``σ = sinθ cosθ``, ``θ = πt/(2a)`` for ``t < a``; exactly 0 from ``a`` on."""

    activation: float

    def _theta(self, t):
        return 0.5 * math.pi * t / self.activation

    def frozen(self, t):
        return t >= self.activation

    def f(self, t):
        return 0.0 if self.frozen(t) else -math.pi / self.activation * math.tan(self._theta(t))

    def g2(self, t):
        return 0.0 if self.frozen(t) else 0.5 * math.pi / self.activation * math.sin(2 * self._theta(t))

    def alpha(self, t):
        return 0.0 if self.frozen(t) else math.cos(self._theta(t)) ** 2

    def var(self, t):
        if self.frozen(t):
            return 0.0
        th = self._theta(t)
        return (math.sin(th) * math.cos(th)) ** 2


@dataclass(frozen=True)
class Family:
    """A noising family on images of ``shape`` (``(C, H, W)``) with ``levels`` Haar levels.

    ``scales`` (``perband``) or ``activations`` (``pointmass``, one per detail
    level, coarsest first, strictly decreasing, inside ``(0, T)``) fix it.
    """

    name: str
    shape: tuple
    levels: int
    scales: tuple = ()
    activations: tuple = ()
    T: float = T_MAX

    def __post_init__(self):
        if self.name not in FAMILIES:
            raise ValueError(f"noising: expected one of {', '.join(FAMILIES)}, got {self.name!r}")
        K = self.levels + 1
        if self.name == "perband" and (len(self.scales) != K or min(self.scales) <= 0):
            raise ValueError(f"band scales: expected {K} positive numbers, got {self.scales}")
        if self.name == "pointmass":
            a = self.activations
            if len(a) != self.levels or any(not 0 < x < self.T for x in a) or any(x >= y for x, y in zip(a[1:], a)):
                raise ValueError(f"activations: expected {self.levels} strictly decreasing times in (0, {self.T}) "
                                 f"(one per detail level, coarsest first), got {a}")

    # --- per band
    def schedules(self):
        """One schedule per band, coarse first."""
        K = self.levels + 1
        if self.name == "scalar":
            return [ScaledEDMSchedule(1.0)] * K
        if self.name == "perband":
            return [ScaledEDMSchedule(float(m)) for m in self.scales]
        return [ScaledEDMSchedule(1.0)] + [CutCosineSchedule(float(a)) for a in self.activations]

    def noising(self):
        """The :class:`~mrdiffusion.processes.BandNoising` the samplers read (states ``(B, C, n)``)."""
        return BandNoising(self.shape[1:], self.levels, schedules=self.schedules(), ndim=2, T=self.T)

    @property
    def activation_times(self):
        """Times at which a band leaves its point mass on the way down (empty unless ``pointmass``)."""
        return tuple(self.activations) if self.name == "pointmass" else ()

    def alpha_sigma(self, t):
        """``(α, σ)`` per band for a batch of times ``t`` ``(B,)``: two tensors ``(B, K)`` (vectorised)."""
        t = t.reshape(-1, 1)
        K = self.levels + 1
        if self.name == "scalar":
            return torch.ones_like(t).expand(-1, K), t.expand(-1, K)
        if self.name == "perband":
            m = torch.tensor(self.scales, dtype=t.dtype, device=t.device)
            return torch.ones_like(t).expand(-1, K), t * m
        a = torch.tensor(self.activations, dtype=t.dtype, device=t.device)
        s = (t / a).clamp(max=1.0)
        th = 0.5 * math.pi * s
        live = t < a
        c, sn = torch.cos(th), torch.sin(th)
        alpha = torch.where(live, c * c, torch.zeros_like(c))
        sigma = torch.where(live, sn * c, torch.zeros_like(c))
        return torch.cat([torch.ones_like(t), alpha], 1), torch.cat([t, sigma], 1)

    def to_dict(self):
        return {"name": self.name, "shape": list(self.shape), "levels": self.levels, "scales": list(self.scales),
                "activations": list(self.activations), "T": self.T}

    @classmethod
    def from_dict(cls, d):
        return cls(d["name"], tuple(d["shape"]), int(d["levels"]), tuple(d["scales"]), tuple(d["activations"]),
                   float(d["T"]))


def default_scales(levels, ratio=2.0):
    """``m_k = ratio^k``: band ``k`` is ``ratio^k`` times noisier than the coarse band at every time."""
    return tuple(float(ratio**k) for k in range(levels + 1))


def default_activations(levels, first=2.0, ratio=0.4):
    """``a_k = first · ratio^{k-1}`` for the detail levels ``k = 1 … L``: ``2, 0.8, 0.32, …``."""
    return tuple(round(float(first * ratio**k), 12) for k in range(levels))


def make_family(name, shape, levels, *, scales=None, activations=None, T=T_MAX):
    """A :class:`Family` with the documented defaults for whatever is not given."""
    if name == "perband":
        scales = tuple(scales) if scales else default_scales(levels)
    if name == "pointmass":
        activations = tuple(activations) if activations else default_activations(levels)
    return Family(name, tuple(shape), int(levels), tuple(scales or ()) if name == "perband" else (),
                  tuple(activations or ()) if name == "pointmass" else (), float(T))
