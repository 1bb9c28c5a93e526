"""Forward noising of data per Haar band, its reverse-time SDE and probability-flow ODE."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

import solvers
from ..multires import BandLayout


@dataclass(frozen=True)
class VPSchedule:
    """Variance preserving: ``dX = -β(t)/2 X dt + √β(t) dW``, ``β(t) = β_min + t(β_max - β_min)``."""

    beta_min: float = 0.1
    beta_max: float = 20.0

    def f(self, t):
        return -0.5 * (self.beta_min + t * (self.beta_max - self.beta_min))

    def g2(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def alpha(self, t):
        return math.exp(-0.5 * (self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t))

    def var(self, t):
        return -math.expm1(-(self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t))

    def sigma(self, t):
        return math.sqrt(self.var(t))


@dataclass(frozen=True)
class VESchedule:
    """Variance exploding: ``dX = √(dσ²/dt) dW``, ``σ(t) = σ_min (σ_max/σ_min)^t``; noise ``σ(t)² - σ_min²``."""

    sigma_min: float = 0.01
    sigma_max: float = 50.0

    def f(self, t):
        return 0.0

    def g2(self, t):
        s = self.sigma_min * (self.sigma_max / self.sigma_min) ** t
        return 2 * s * s * math.log(self.sigma_max / self.sigma_min)

    def alpha(self, t):
        return 1.0

    def var(self, t):
        return (self.sigma_min * (self.sigma_max / self.sigma_min) ** t) ** 2 - self.sigma_min**2

    def sigma(self, t):
        return math.sqrt(self.var(t))


@dataclass(frozen=True)
class EDMSchedule:
    """EDM / k-diffusion's variance exploding schedule ``σ(t) = t``, ``α = 1`` (Karras et al. 2022).

    ``dX = √(2t) dW``: the noise variance is ``t²``, so the time *is* the noise
    level and a k-diffusion denoiser ``D(x, σ)`` is a model ``model(x, t)``
    as it stands. Use it with ``T = sigma_max``.
    """

    sigma_max: float = 80.0

    @property
    def T(self):
        return self.sigma_max

    def f(self, t):
        return 0.0

    def g2(self, t):
        return 2.0 * t

    def alpha(self, t):
        return 1.0

    def var(self, t):
        return t * t

    def sigma(self, t):
        return abs(t)


def gaussian_denoiser(noising, mean, var):
    """Exact data prediction ``D(x, t) = E[x_0 | x_t]`` for Gaussian data ``N(mean, var)`` under ``noising``.

    ``D = mean + α var / (α² var + σ²) · (x - α mean)``; at ``σ = 0`` it is ``x / α`` (no division by zero).
    Works for a :class:`BandNoising` (per-coefficient ``α``, ``σ``) or any noising with ``alpha_sigma``.
    """

    def denoise(x, t):
        a, s = noising.alpha_sigma(t, like=x)
        m, v = mean.to(x), var.to(x)
        return m + a * v / (a * a * v + s * s) * (x - a * m)

    return denoise


def gaussian_score(noising, mean, var):
    """Exact score ``∇ log p_t`` of Gaussian data ``N(mean, var)`` (band coordinates) under ``noising``."""

    def score(t, y):
        a, v = noising.marginal(t, like=y)
        return -(y - a * mean.to(y)) / (a * a * var.to(y) + v)

    return score


def gaussian_mixture_denoiser(noising, weights, means, variances):
    """Exact ``D(x, t) = E[x_0 | x_t]`` for a mixture of Gaussians with diagonal covariances.

    ``weights`` ``(K,)`` (positive, normalised here), ``means`` and
    ``variances`` ``(K, *event)`` (variances > 0). Under ``x_t = α x_0 + σ ε``
    component ``k`` has ``x_t ~ N(α μ_k, α² v_k + σ²)`` per coordinate, so with
    the posterior responsibilities ``r_k(x) ∝ w_k N(x; α μ_k, α² v_k + σ²)``
    (a softmax over ``k`` of log densities summed over the event),

    ``D = Σ_k r_k [μ_k + α v_k / (α² v_k + σ²) · (x - α μ_k)]``.

    A nonlinear denoiser whose flow is known only numerically: the few-step
    benchmark's check that a sampler is accurate beyond the linear (Gaussian)
    case. At ``σ = 0`` it is ``x / α`` exactly. ``noising`` is a
    :class:`BandNoising` (per-coefficient ``α``, ``σ``) or anything with
    ``alpha_sigma``.
    """
    w, mu, var = _mixture_args(weights, means, variances)

    def denoise(x, t):
        a, s = noising.alpha_sigma(t, like=x)
        m, v = mu.to(x), var.to(x)
        logr = _mixture_log_joint(x, a, s, torch.log(w.to(x)), m, v)
        r = torch.softmax(logr, dim=0)  # (K, batch)
        comp = m.unsqueeze(1) + (a * v / (a * a * v + s * s)).unsqueeze(1) * (x.unsqueeze(0) - (a * m).unsqueeze(1))
        return (r.reshape(*r.shape, *([1] * (x.ndim - 1))) * comp).sum(0)

    return denoise


def _mixture_args(weights, means, variances):
    w = torch.as_tensor(weights, dtype=torch.float64)
    mu = torch.as_tensor(means, dtype=torch.float64)
    var = torch.as_tensor(variances, dtype=torch.float64)
    if w.ndim != 1 or w.numel() < 1 or not bool((w > 0).all()):
        raise ValueError(f"weights: expected a 1-d tensor of K > 0 positive numbers, got shape {tuple(w.shape)}")
    if mu.shape != var.shape or mu.ndim < 2 or mu.shape[0] != w.numel():
        raise ValueError(f"means, variances: expected the same shape (K, *event) with K = {w.numel()}, got "
                         f"{tuple(mu.shape)} and {tuple(var.shape)}")
    if not bool((var > 0).all()):
        raise ValueError("variances: expected every component variance > 0")
    return w / w.sum(), mu, var


def _mixture_log_joint(x, a, s, logw, m, v):
    """``log w_k + log N(x; α μ_k, α² v_k + σ²)`` summed over the event, shape ``(K, batch)``."""
    tot = a * a * v + s * s  # (K, *event)
    d = x.unsqueeze(0) - (a * m).unsqueeze(1)  # (K, batch, *event)
    ll = -0.5 * (d * d / tot.unsqueeze(1) + torch.log(2 * math.pi * tot).unsqueeze(1))
    return logw.reshape(-1, 1) + ll.flatten(2).sum(-1)


class BandNoising(solvers.SDE):
    """Forward noising of data on a grid, per Haar band, as a diagonal SDE on packed band coefficients.

    ``schedules``: one :class:`VPSchedule` / :class:`VESchedule` for all bands,
    or one per Haar level (coarse first), so that fine bands can be noised
    faster or slower than coarse ones. The state is ``(batch, C, n)``: use
    ``layout.pack`` / ``layout.unpack`` to go to and from images.
    """

    noise_type = "additive"
    linear_only = True

    def __init__(self, shape, levels, *, schedules=VPSchedule(), ndim=2, T=1.0):
        self.layout = BandLayout(shape, levels, ndim)
        scheds = list(schedules) if isinstance(schedules, (list, tuple)) else [schedules] * (levels + 1)
        if len(scheds) != levels + 1:
            raise ValueError(f"schedules: expected one schedule or {levels + 1} (one per Haar level), "
                             f"got {len(scheds)}")
        self.schedules, self.T = scheds, float(T)
        self._idx = self.layout.dwt_level

    def _per(self, fn, t, like):
        # built on the CPU, then one copy to the state's device that does not wait for the device's queue
        # (a pageable copy is staged before it returns, so the CPU tensor may go)
        vals = torch.tensor([fn(s, t) for s in self.schedules], dtype=like.dtype)[self._idx]
        return vals if like.device.type == "cpu" else vals.to(like.device, non_blocking=True)

    def drift(self, t, y):
        return self._per(lambda s, t: s.f(t), t, y) * y

    def linear(self, t):
        return self._per(lambda s, t: s.f(t), t, torch.empty(0, dtype=torch.float64))

    def diffusion(self, t, y):
        return self._per(lambda s, t: s.g2(t), t, y).sqrt()

    def linear_transition(self, s, t):
        """Exact ``Λ = ln(α(t)/α(s))`` and the noise factor ``V`` for :class:`solvers.ExponentialEuler`.

        The transition ``Y_t = e^Λ Y_s + noise`` has noise variance
        ``var(t) - e^{2Λ} var(s)``; the scheme multiplies ``V/h`` by ``g(s)²``, so
        ``V = (var(t) - e^{2Λ} var(s)) / g(s)²`` makes every step exact in law.
        """
        like = torch.empty(0, dtype=torch.float64)
        a_s, v_s = self.marginal(s, like)
        a_t, v_t = self.marginal(t, like)
        lam = torch.log(a_t / a_s)
        return lam, (v_t - torch.exp(2 * lam) * v_s) / self._per(lambda sc, u: sc.g2(u), s, like)

    def alpha_sigma(self, t, like=None):
        """``(α(t), σ(t))`` per coefficient, shape ``(n,)``: ``Y_t = α Y_0 + σ ξ``; ``σ(0) = 0`` exactly."""
        a, v = self.marginal(t, like)
        return a, v.clamp(min=0).sqrt()

    def drift_diffusion(self, t, like=None):
        """``(f(t), g(t)²)`` per coefficient, shape ``(n,)``: the forward SDE is ``dY = f Y dt + g dW``."""
        like = torch.empty(0, dtype=torch.float64) if like is None else like
        return self._per(lambda s, t: s.f(t), t, like), self._per(lambda s, t: s.g2(t), t, like)

    def marginal(self, t, like=None):
        """``(α(t), var(t))`` per coefficient: ``Y_t = α Y_0 + √var ξ``."""
        like = torch.empty(0, dtype=torch.float64) if like is None else like
        return self._per(lambda s, t: s.alpha(t), t, like), self._per(lambda s, t: s.var(t), t, like)

    def reverse(self, score):
        """The reverse-time SDE in forward time ``u = T - t``: ``dY = [-f + g² score] du + g dW``."""
        return _Reverse(self, score, ode=False)

    def probability_flow(self, score):
        """The probability-flow ODE in ``u = T - t``: ``dY/du = -f + g² score / 2``."""
        return _Reverse(self, score, ode=True)


class _Reverse(solvers.SDE):
    r"""Reverse-time SDE (``w = 1``) or probability-flow ODE (``w = 1/2``) in ``u = T - t``.

    Drift ``-f Y + w g² s(t, Y)``. Written with the data prediction
    ``D = (Y + σ² s)/α`` it is semilinear, ``A(u) Y + c(u) D(u, Y)`` with
    ``A = -f - w g²/σ²`` and ``c = w g² α/σ²``, and both parts integrate in
    closed form per coefficient (``ρ = σ(t₂)α(t₁)/(σ(t₁)α(t₂)) = e^{-(λ₂-λ₁)}``,
    ``ν = 2w``, ``t₁ > t₂`` the times at the step's ends):

    .. math::
        e^{Λ} = \frac{σ_2}{σ_1} ρ^{ν-1},\qquad
        ∫ e^{Λ(v, u_2)} c(v)\,dv = α_2 (1 - ρ^{ν}),\qquad
        \text{noise variance } σ_2^2 (1 - ρ^2)\ (\text{SDE}).

    So :class:`solvers.ExponentialEuler` on it *is* DPM-Solver++(1) / DDIM on
    the ODE and SDE-DPM-Solver++(1) on the SDE (Lu et al. 2022), exact when
    ``D`` is constant over the step, with ``σ = 0`` at ``t = 0`` handled
    exactly (``e^Λ = 0``, weight ``α₂``: the step returns ``α₂ D``).
    """

    def __init__(self, fwd, score, ode):
        self.fwd, self.score, self.ode = fwd, score, ode
        self.noise_type = None if ode else "additive"
        self.w = 0.5 if ode else 1.0

    def drift(self, u, y):
        t = self.fwd.T - u
        g2 = self.fwd._per(lambda s, t: s.g2(t), t, y)
        return -self.fwd.drift(t, y) + self.w * g2 * self.score(t, y)

    def diffusion(self, u, y):
        return self.fwd.diffusion(self.fwd.T - u, y)

    def linear(self, u):
        t = self.fwd.T - u
        like = torch.empty(0, dtype=torch.float64)
        f = self.fwd._per(lambda s, t: s.f(t), t, like)
        g2 = self.fwd._per(lambda s, t: s.g2(t), t, like)
        _, var = self.fwd.marginal(t, like)
        return -f - self.w * g2 / var

    def nonlinear_profile(self, u, y):
        """The data prediction ``D = (Y + σ² s)/α`` (the slowly varying factor of the nonlinear part)."""
        t = self.fwd.T - u
        a, v = self.fwd.marginal(t, y)
        return (y + v * self.score(t, y)) / a

    def _ends(self, u1, u2):
        like = torch.empty(0, dtype=torch.float64)
        a1, s1 = self.fwd.alpha_sigma(self.fwd.T - u1, like)
        a2, s2 = self.fwd.alpha_sigma(self.fwd.T - u2, like)
        return a1, s1, a2, s2, (s2 * a1) / (s1 * a2)

    def linear_transition(self, u1, u2):
        a1, s1, a2, s2, rho = self._ends(u1, u2)
        lam = torch.log(s2 / s1) if self.ode else torch.log(s2 / s1) + torch.log(rho)
        if self.ode:
            return lam, torch.zeros_like(lam)
        g2 = self.fwd._per(lambda s, t: s.g2(t), self.fwd.T - u1, a1)
        return lam, s2 * s2 * (1 - rho * rho) / g2

    def nonlinear_weight(self, u1, u2):
        """``∫_{u1}^{u2} e^{Λ(v, u2)} c(v) dv = α₂ (1 - ρ^ν)`` per coefficient."""
        a1, s1, a2, s2, rho = self._ends(u1, u2)
        return a2 * (1 - (rho if self.ode else rho * rho))
