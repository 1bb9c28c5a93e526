"""The study's problems: multi-resolution processes that flow from a point mass, with closed forms.

:func:`build_process` turns a :class:`~mrdiffusion.bench.config.ProblemSpec` into
a process from :mod:`mrdiffusion.processes`; :class:`Problem` adds what the
measurements need, on the study's device and cached:

- ``moments(t)``: the exact per-coefficient mean and variance in band
  coordinates (``band_moments``);
- ``exact_step``: one step of the *coupled exact sampler*. Every process here
  is linear in band coordinates with additive noise,
  ``dY = (A(t) Y + b(t)) dt + c dB``, so over ``[s, t]``

      Y_t = e^Λ Y_s + (m(t) − e^Λ m(s)) + c √(V/h) ΔB,   h = t − s,

  with ``Λ, V`` from ``band_transition`` and the exact mean ``m``: exact in
  law at every grid time, driven by the *same* increment ``ΔB`` the scheme
  under test receives. The study uses it as a control variate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Tuple

import torch

from ..processes import GaussianReverseProcess, LinearBandProcess, StiffPointMassProcess
from ._parse import ConfigError, fmt_dt, integer, number

__all__ = ["Param", "ProblemKind", "KINDS", "register", "build_process", "Problem"]


# ----------------------------------------------------------------------------- the registry of problem kinds


@dataclass(frozen=True)
class Param:
    """One parameter of a problem kind: its default for a ``K``-level stack, what it means, and its parser.

    ``parse(where, value, K)`` returns the checked value (JSON-able; lists as
    tuples) or raises :class:`ConfigError` naming ``where``.
    """

    name: str
    default: Callable[[int], Any]
    description: str
    parse: Callable[[str, Any, int], Any]


@dataclass(frozen=True)
class ProblemKind:
    """A bench problem kind: its parameters, how to build its process, describe it and explain its verdict.

    ``build(p)`` returns a :mod:`mrdiffusion.processes` object from the
    parameter dict ``p`` (raising ``ValueError`` on bad values); ``describe(p)``
    is one line for the report's setup; ``verdict(p, ladder)`` the report's
    "why" line; ``check(p)`` (optional) a cross-parameter check raising
    :class:`ConfigError`. ``showcase``: the band-image plot prefers it.
    """

    name: str
    summary: str
    params: Tuple[Param, ...]
    build: Callable[[dict], Any]
    describe: Callable[[dict], str]
    verdict: Callable[[dict, tuple], str]
    check: Callable[[str, dict], None] = lambda where, p: None
    showcase: bool = False

    def param(self, name) -> Param:
        return next(q for q in self.params if q.name == name)

    def defaults(self, K):
        """Every parameter's default for a ``K``-level stack."""
        return {q.name: q.default(K) for q in self.params}


KINDS = {}
"""Name → :class:`ProblemKind`: every bench problem kind (``register`` adds one)."""


def register(kind: ProblemKind) -> ProblemKind:
    KINDS[kind.name] = kind
    return kind


def _float(positive=True):
    return lambda where, v, K: number(where, v, positive=positive)


def _per_level(positive):
    """One float for every level, or a list of one per level."""

    def parse(where, v, K):
        if isinstance(v, (list, tuple)):
            if len(v) != K:
                raise ConfigError(f"{where}: expected one value per level ({K}), got {len(v)}")
            return tuple(number(where, x, positive=positive) for x in v)
        return number(where, v, positive=positive)

    return parse


def _levels(where, v, K):
    if (not isinstance(v, (list, tuple)) or not v or any(isinstance(j, bool) or not isinstance(j, int) or j < 0
                                                          for j in v)
            or any(b <= a for a, b in zip(v, v[1:]))):
        raise ConfigError(f"{where}: expected strictly increasing non-negative integers, got {v!r}")
    return tuple(int(j) for j in v)


def _times(where, v, K):
    if not isinstance(v, (list, tuple)) or len(v) != K:
        raise ConfigError(f"{where}: expected {K} activation times (one per level), got {v!r}")
    return tuple(number(where, t, allow_zero=True) for t in v)


COMMON = (
    Param("levels", lambda K: list(range(K)), "dyadic levels j_0 < … < j_K (grids of 2^j × 2^j cells)", _levels),
    Param("times", lambda K: [0.0] + [0.25 + 0.125 * (k - 1) for k in range(1, K)],
          "activation time of each level (the first is 0)", _times),
    Param("T", lambda K: 1.0, "final time", _float()),
    Param("channels", lambda K: 1, "channels per cell", lambda where, v, K: integer(where, v)),
)
"""The parameters every kind has: the multi-resolution stack."""


def _stack(p):
    return list(p["levels"]), list(p["times"]), p["T"], dict(channels=p["channels"], ndim=2)


def _list(v):
    return list(v) if isinstance(v, tuple) else v


def _check_rates(where, p):
    rates = p["rates"] if isinstance(p["rates"], tuple) else (p["rates"],)
    if any(r > 0 for r in rates):
        raise ConfigError(f"{where}.rates: expected rates <= 0 (a stable linear process), got {p['rates']!r}")


register(ProblemKind(
    "linear", "per-band OU rates doubling with the band, the finest bands stiff: dY = a_k Y dt + c dB",
    COMMON + (
        Param("rates", lambda K: [-2.0 * 2**k for k in range(K)], "drift rate a_k of each band (<= 0), or one for "
              "all", _per_level(positive=False)),
        Param("noise", lambda K: 1.0, "noise rate c of each level in band coordinates, or one for all",
              _per_level(positive=True)),
        Param("z0", lambda K: 1.0, "the starting point mass of the coarse band", _float(positive=False)),
    ),
    build=lambda p: LinearBandProcess(
        *_stack(p)[:3], rates=_list(p["rates"]), noise_rate=_list(p["noise"]),
        z0=torch.full((p["channels"], 1, 1), p["z0"], dtype=torch.float64), **_stack(p)[3]),
    describe=lambda p: f"per-band OU dY = a_k Y dt + c dB, a_k = {_list(p['rates'])}, c = {p['noise']}, "
                       f"z0 = {p['z0']}",
    verdict=lambda p, ladder: "- Why: the finest bands have the fastest rates, so at coarse steps explicit schemes "
                              "amplify them every step from their activation on; the new band starts from a point "
                              "mass, so the damage appears right after activation and grows until T.",
    check=_check_rates))


def _stiff_verdict(p, ladder):
    kappa, eps, h = p["kappa"], p["eps"], max(ladder)
    return (f"- Why: after every activation the clock restarts, and forward Euler multiplies every older band "
            f"by 1 − hκ/ε = {1 - h * kappa / eps:.4g} at h = {fmt_dt(h)} (κ = {kappa:g}, ε = {eps:g}); "
            f"it is a contraction only for h < 2ε/κ = {2 * eps / kappa:.3g}.")


register(ProblemKind(
    "stiff", "docs/design.md §2.3: dY = -κ/(t - t_k + ε) Y dt + β dB, the clock restarting at every activation",
    COMMON + (
        Param("kappa", lambda K: 5.0, "κ, the strength of the pull to the point mass", _float()),
        Param("eps", lambda K: 0.01, "ε, the clock offset: the drift rate right after an activation is −κ/ε",
              _float()),
        Param("beta", lambda K: 1.0, "β, the noise rate in band coordinates", _float()),
    ),
    build=lambda p: StiffPointMassProcess(*_stack(p)[:3], kappa=p["kappa"], eps=p["eps"], beta=p["beta"],
                                          **_stack(p)[3]),
    describe=lambda p: (f"stiff point-mass family dY = −κ/(t − t_k + ε) Y dt + β dB with κ = {p['kappa']}, "
                        f"ε = {p['eps']}, β = {p['beta']}, the clock restarting at every activation"),
    verdict=_stiff_verdict))

register(ProblemKind(
    "gaussian", "reverse process of Gaussian data N(μ, 2^{-decay·level}) from a point mass at every activation",
    COMMON + (
        Param("decay", lambda K: 1.5, "data variance 2^(−decay·level) per Haar level", _float()),
        Param("noise", lambda K: 1.0, "noise rate c in band coordinates", _float()),
        Param("data_seed", lambda K: 0, "seed of the data mean", lambda where, v, K: integer(where, v, minimum=0)),
    ),
    build=lambda p: GaussianReverseProcess.power_law(*_stack(p)[:3], decay=p["decay"], noise_rate=p["noise"],
                                                     seed=p["data_seed"], **_stack(p)[3]),
    describe=lambda p: (f"reverse process of Gaussian data N(μ, 2^(−{p['decay']}·level)) from a point mass at every "
                        f"activation, noise c = {p['noise']}"),
    verdict=lambda p, ladder: ("- Why: a band active from t_k (L = T − t_k, data variance σ², noise c) starts from its "
                               "point mass with drift rate σ²/(c²L²) − 1/L, mild, but near T the rate tends to "
                               "1/L − c²/σ²: small fine-band data variances make the last steps stiff."),
    showcase=True))


def build_process(spec):
    """The :mod:`mrdiffusion.processes` object of one problem spec (raises ``ValueError`` on bad parameters)."""
    if spec.kind not in KINDS:
        raise ValueError(f"kind: unknown problem kind {spec.kind!r}")
    return KINDS[spec.kind].build(dict(spec.params))


class Problem:
    """A built problem on a device, with cached closed forms and the coupled exact sampler."""

    def __init__(self, spec, device="cpu", dtype=torch.float64):
        self.spec, self.name, self.kind = spec, spec.name, spec.kind
        self.device, self.dtype = torch.device(device), dtype
        self.proc = build_process(spec)
        self.K = len(self.proc.levels)
        self.channels = self.proc.channels
        self.n = self.proc.layout.n
        self.T = self.proc.T
        self.times = list(self.proc.times)
        self.band = self.proc.band.to(self.device)  # (n,) the level whose activation starts each coefficient
        self.band_sizes = [int((self.proc.band == k).sum()) * self.channels for k in range(self.K)]
        self._moments = {}
        self._noise = {}
        self._exact = {}
        self.check_times = self.times[1:] + [self.T]  # activation times (right after embedding) and T

    def __repr__(self):
        return f"Problem({self.name!r}, kind={self.kind!r}, levels={list(self.spec.get('levels'))})"

    # ------------------------------------------------------------------ closed forms

    def moments(self, t):
        """Exact mean and variance ``(C, n)`` in band coordinates at ``t`` (right-continuous), cached."""
        key = float(t)
        if key not in self._moments:
            if len(self._moments) > 4096:
                self._moments.clear()
            m, v = self.proc.band_moments(key)
            shape = (self.channels, self.n)
            self._moments[key] = (m.to(torch.float64).expand(shape).to(self.device, self.dtype).contiguous(),
                                  v.to(torch.float64).expand(shape).to(self.device, self.dtype).contiguous())
        return self._moments[key]

    def noise_rate(self, k):
        """The band-coordinate noise rate of level ``k`` on every coefficient (zero on inactive bands)."""
        if k not in self._noise:
            g = self.proc.band_sde(k).diffusion(self.times[k], torch.zeros(1, self.channels, self.n,
                                                                           dtype=torch.float64))
            self._noise[k] = torch.as_tensor(g, dtype=torch.float64).to(self.device, self.dtype)
        return self._noise[k]

    def exact_coefficients(self, s, t, k):
        """``(e^Λ, m(t) − e^Λ m(s), c √(V/h))`` of level ``k`` over ``[s, t]``, cached for all schemes."""
        key = (float(s), float(t), int(k))
        if key not in self._exact:
            if len(self._exact) > 2048:
                self._exact.clear()
            lam, V = self.proc.band_transition(s, t, k)
            lam = torch.as_tensor(lam, dtype=torch.float64).to(self.device, self.dtype)
            V = torch.as_tensor(V, dtype=torch.float64).to(self.device, self.dtype)
            growth = torch.exp(lam).expand(self.channels, self.n).contiguous()
            forcing = self.moments(t)[0] - growth * self.moments(s)[0]
            scale = (self.noise_rate(k) * torch.sqrt(V / (t - s))).expand(self.channels, self.n).contiguous()
            self._exact[key] = (growth, forcing, scale)
        return self._exact[key]

    def exact_step(self, y, s, t, k, dW):
        """One exact-in-law step of level ``k`` from ``s`` to ``t`` driven by the increment ``dW``."""
        growth, forcing, scale = self.exact_coefficients(s, t, k)
        return torch.addcmul(forcing, growth, y).addcmul_(scale, dW)

    def start(self, batch):
        """The band coordinates of the starting point mass, ``(batch, C, n)``."""
        z0 = self.proc.z0.to(dtype=self.dtype, device=self.device)
        return self.proc.to_bands(z0.expand(batch, *z0.shape), 0).contiguous()

    def scale(self):
        """The largest exact RMS of any coefficient over ``[0, T]``: the unit of the divergence threshold."""
        grid = sorted(set([self.T * i / 64 for i in range(65)] + self.check_times))
        return max(float((m * m + v).sqrt().max()) for m, v in map(self.moments, grid))

    def stiffest_rate(self):
        """``(a, t, band)``: the most negative drift rate of any active coefficient on a 1/256 grid and the t_k."""
        grid = sorted(set([self.T * i / 256 for i in range(257)] + self.times))
        worst = (0.0, 0.0, 0)
        band = self.proc.band
        for t in grid:
            k = self.proc.level_at(t)
            a = torch.as_tensor(self.proc.band_linear(t, k), dtype=torch.float64)
            if a.ndim == 0:
                a = a.expand(self.n).clone()
                a[band > k] = 0.0
            a = a.reshape(-1, self.n).min(0).values
            i = int(a.argmin())
            if float(a[i]) < worst[0]:
                worst = (float(a[i]), t, int(band[i]))
        return worst

    def describe(self):
        shape = "×".join(str(s) for s in self.proc.finest_shape)
        base = (f"{self.K} levels (1×1 → {shape}), activations at {[round(t, 4) for t in self.times]}, "
                f"T = {self.T}, {self.channels} channel(s), {self.n} coefficients per channel")
        return f"{KINDS[self.kind].describe(dict(self.spec.params))}; {base}"

    def verdict(self, ladder):
        """The report's "why" line for this problem at the step ladder ``ladder``."""
        return KINDS[self.kind].verdict(dict(self.spec.params), tuple(ladder))
