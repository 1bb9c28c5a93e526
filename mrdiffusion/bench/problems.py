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

import torch

from ..processes import GaussianReverseProcess, LinearBandProcess, StiffPointMassProcess

__all__ = ["build_process", "Problem"]


def build_process(spec):
    """The :mod:`mrdiffusion.processes` object of one problem spec (raises ``ValueError`` on bad parameters)."""
    p = dict(spec.params)
    common = dict(channels=p["channels"], ndim=2)
    levels, times, T = list(p["levels"]), list(p["times"]), p["T"]
    if spec.kind == "linear":
        rates = list(p["rates"]) if isinstance(p["rates"], tuple) else p["rates"]
        noise = list(p["noise"]) if isinstance(p["noise"], tuple) else p["noise"]
        z0 = torch.full((p["channels"], 1, 1), p["z0"], dtype=torch.float64)
        return LinearBandProcess(levels, times, T, rates=rates, noise=noise, z0=z0, **common)
    if spec.kind == "stiff":
        return StiffPointMassProcess(levels, times, T, kappa=p["kappa"], eps=p["eps"], beta=p["beta"], **common)
    if spec.kind == "gaussian":
        return GaussianReverseProcess.power_law(levels, times, T, decay=p["decay"], noise=p["noise"],
                                                seed=p["data_seed"], **common)
    raise ValueError(f"kind: unknown problem kind {spec.kind!r}")


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

    def noise(self, k):
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
            scale = (self.noise(k) * torch.sqrt(V / (t - s))).expand(self.channels, self.n).contiguous()
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
        p = dict(self.spec.params)
        shape = "×".join(str(s) for s in self.proc.finest_shape)
        base = (f"{self.K} levels (1×1 → {shape}), activations at {[round(t, 4) for t in self.times]}, "
                f"T = {self.T}, {self.channels} channel(s), {self.n} coefficients per channel")
        if self.kind == "linear":
            rates = list(p["rates"]) if isinstance(p["rates"], tuple) else p["rates"]
            what = f"per-band OU dY = a_k Y dt + c dB, a_k = {rates}, c = {p['noise']}, z0 = {p['z0']}"
        elif self.kind == "stiff":
            what = (f"stiff point-mass family dY = −κ/(t − t_k + ε) Y dt + β dB with κ = {p['kappa']}, "
                    f"ε = {p['eps']}, β = {p['beta']}, the clock restarting at every activation")
        else:
            what = (f"reverse process of Gaussian data N(μ, 2^(−{p['decay']}·level)) from a point mass at every "
                    f"activation, noise c = {p['noise']}")
        return f"{what}; {base}"
