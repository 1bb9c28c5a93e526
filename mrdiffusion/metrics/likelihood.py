r"""Negative log-likelihood under a diffusion's probability-flow ODE, in bits per dimension.

**The flow.** With the forward noising ``x_t = α(t) x_0 + σ(t) ε`` per
coordinate (``f = d log α/dt``, ``g² = dσ²/dt − 2fσ²``) the probability-flow
ODE

.. math::
    \frac{dx}{dt} = v(x, t) = f(t)\,x - \tfrac12 g(t)^2\, s(x, t),\qquad
    s = -\frac{x - α D(x, t)}{σ^2},

carries the data law ``p_0`` to ``p_T`` (Song et al. 2021, "Score-based
generative modeling through SDEs", §4.3 and App. D.2). Along a trajectory
``d log p_t(x_t)/dt = −∇·v``, so

.. math::
    \log p_0(x_0) = \log p_T(x_T) + \int_0^T ∇·v(x_t, t)\,dt .

The ODE starts at ``t = ε`` (``σ(0) = 0`` makes the score singular), i.e. it
returns ``log p_ε(x)``, which differs from ``log p_0`` by ``O(σ(ε)²/Var x)``
per coordinate (``1e-6`` for the default VP schedule and ``ε = 1e-5``).
The divergence is exact (one vector–Jacobian product per coordinate) or
Hutchinson's estimate ``zᵀ (∂v/∂x) z`` with a probe ``z`` fixed for the whole
solve (Rademacher by default; Grathwohl et al. 2019, FFJORD).

**The prior at T.** ``p_T`` is the noising's marginal of the data, which is
unknown; we charge the Gaussian ``N(0, σ_T² + α_T²·prior_data_var)`` per
coordinate (``prior_data_var = 0`` by default: score_sde's choice), or a law
the caller gives. The cost of the approximation is the cross-entropy excess
``½ α_T² E[x_0²]/σ_T²`` nats per coordinate to first order: ``2e-5`` for the
default VP schedule (``α_T² = 4.3e-5``) and ``8e-5`` for EDM's ``σ_max = 80``
with data in ``[-1, 1]``.

**Bands that stop early.** A point-mass band (its ``α_k``, ``σ_k`` → 0 at a cut
time) makes the flow non-invertible there. Such a coordinate is integrated
only up to its own *stop time* ``s_i < T`` (where its noise level is still
positive), its value ``x_i(s_i)`` is charged to its own Gaussian prior at
``s_i``, and from then on it is frozen: its velocity and divergence are zero,
and the denoiser sees it as zero (``frozen="zero"``, the point-mass value)
or at its stopped value (``frozen="hold"``). The total is exact when the
stopped band is independent of the rest at ``s_i`` given its prior, which
is what the Gaussian-data test checks; for a real point-mass band it is the
approximation ``p_s(x_k | rest) ≈ N(0, σ_k(s)²)`` at low signal-to-noise.

**Dequantisation.** :func:`dequantized_nll` turns integer grey levels
``k ∈ {0…L−1}`` into the continuous values
``x = lo + Δ (k + u − ½)``, ``Δ = (hi − lo)/(L − 1)``, ``u ~ U(0, 1)`` per
pixel: level ``k``'s cell is centred on ``lo + Δk`` (the map the HVAE feeds
its encoder, ``[-1, 1]`` by default). Since ``P(k) = ∫_cell p(x) dx``, Jensen
gives the bound (Theis et al. 2016; Ho et al. 2019, Flow++)

.. math::
    -\log P(k) \le \mathbb E_u[-\log p(x)] - D \log Δ,

the same quantity, in bits per dimension, as an HVAE's negative ELBO. With
padding (images padded to a power-of-two grid) the padded pixels are
dequantised like the others and the total is divided by the number of real
pixels: ``P(image) ≥ P(image, padding)``, so this bounds the real image's
discrete NLL per real pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

__all__ = ["NLLResult", "pf_ode_nll", "dequantize", "dequantized_nll", "band_stop_times", "point_mass_stop_times",
           "noise_prior"]

LN2 = math.log(2.0)


@dataclass(frozen=True)
class NLLResult:
    """Per-sample negative log-likelihoods and their summary.

    ``nll_nats``: ``(batch,)`` total nats per sample (with any dequantisation
    offset); ``bits_per_dim``: ``nll_nats / (n_dims ln 2)``; ``mean`` and
    ``se`` (standard deviation over samples / √n: data spread *and* Hutchinson
    noise) in bits/dim; ``trace_se``: the Hutchinson noise alone in the mean,
    from the spread over ``n_probes ≥ 2`` probes (``None`` otherwise);
    ``nfe``: denoiser evaluations; ``rtol``/``atol``/``method``: the solve.
    """

    nll_nats: torch.Tensor
    bits_per_dim: torch.Tensor
    n_dims: int
    mean: float
    se: Optional[float]
    trace_se: Optional[float]
    trace: str
    nfe: int
    rtol: float
    atol: float
    method: str


def noise_prior(noising, data_var: float = 0.0):
    """The prior ``N(0, σ(t)² + α(t)² data_var)`` per coordinate, as a function ``(t, like) -> (mean, var)``."""

    def prior(t, like):
        a, s = noising.alpha_sigma(t, like=like)
        return torch.zeros_like(s), s * s + a * a * data_var

    return prior


def band_stop_times(noising, per_level):
    """Per-coefficient stop times ``(n,)`` from one time per Haar level of a :class:`BandNoising` (coarse first)."""
    times = torch.as_tensor(per_level, dtype=torch.float64)
    levels = noising.layout.levels + 1
    if times.ndim != 1 or times.numel() != levels:
        raise ValueError(f"per_level: expected {levels} stop times (one per Haar level, coarse first), "
                         f"got shape {tuple(times.shape)}")
    return times[noising.layout.dwt_level]


def point_mass_stop_times(noising, sigma_stop: float = 1e-2, grid: int = 2000):
    """Per-coefficient stop times for the bands of ``noising`` that are a point mass at ``T``, or ``None``.

    A Haar level whose schedule has ``α(T) = σ(T) = 0`` stops at the last time
    before its cut where ``σ_k(t) = sigma_stop`` (found on a ``grid``-point scan
    of ``[0, T]``, refined by bisection); other levels stop at ``T``. Needs
    per-level ``schedules`` with ``alpha``/``var`` and a ``layout`` (a
    :class:`~mrdiffusion.processes.BandNoising`); anything else gets ``None``.
    """
    scheds, layout = getattr(noising, "schedules", None), getattr(noising, "layout", None)
    if not (isinstance(sigma_stop, (int, float)) and sigma_stop > 0):
        raise ValueError(f"sigma_stop: expected a positive float, got {sigma_stop!r}")
    if scheds is None or layout is None or len(scheds) != layout.levels + 1:
        return None
    T = float(noising.T)
    sig = lambda sc, t: math.sqrt(max(sc.var(t), 0.0))  # noqa: E731
    times, any_cut = [], False
    for sc in scheds:
        if sc.alpha(T) != 0 or sig(sc, T) != 0:
            times.append(T)
            continue
        any_cut = True
        ts = [T * i / grid for i in range(grid + 1)]
        above = [i for i, t in enumerate(ts) if sig(sc, t) >= sigma_stop]
        if not above:
            raise ValueError(f"sigma_stop: a point-mass band's noise level never reaches {sigma_stop}")
        lo, hi = ts[above[-1]], ts[min(above[-1] + 1, grid)]
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if sig(sc, mid) >= sigma_stop else (lo, mid)
        times.append(lo)
    return band_stop_times(noising, times) if any_cut else None


def _as_noising(noising):
    from ..sampling import as_noising

    return as_noising(noising)


def _check_args(x, trace, n_probes, probe, rtol, atol, eps, T, frozen):
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or not x.is_floating_point():
        raise ValueError(f"x: expected a floating-point tensor (batch, *event), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if trace not in ("exact", "hutchinson"):
        raise ValueError(f"trace: expected 'exact' or 'hutchinson', got {trace!r}")
    if isinstance(n_probes, bool) or not isinstance(n_probes, int) or n_probes < 1:
        raise ValueError(f"n_probes: expected a positive int, got {n_probes!r}")
    if probe not in ("rademacher", "gaussian"):
        raise ValueError(f"probe: expected 'rademacher' or 'gaussian', got {probe!r}")
    for name, val in (("rtol", rtol), ("atol", atol)):
        if not (isinstance(val, (int, float)) and val > 0):
            raise ValueError(f"{name}: expected a positive float, got {val!r}")
    if not (isinstance(eps, (int, float)) and 0 < eps < T):
        raise ValueError(f"eps: expected 0 < eps < T = {T}, got {eps!r}")
    if frozen not in ("zero", "hold"):
        raise ValueError(f"frozen: expected 'zero' or 'hold', got {frozen!r}")


def _stop_tensor(stop_times, x, T, eps):
    event = x.shape[1:]
    if stop_times is None:
        return torch.full(event, T, dtype=torch.float64)
    s = torch.as_tensor(stop_times, dtype=torch.float64)
    try:
        s = torch.broadcast_to(s, event).clone()
    except RuntimeError:
        raise ValueError(f"stop_times: expected a tensor broadcastable to the state's event shape {tuple(event)}, "
                         f"got shape {tuple(s.shape)}") from None
    if not bool(((s > eps) & (s <= T)).all()):
        raise ValueError(f"stop_times: expected every stop time in (eps, T] = ({eps}, {T}], got "
                         f"{float(s.min())}..{float(s.max())}")
    return s


_ADAPTIVE = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun", "tsit5")
"""torchdiffeq's adaptive Runge–Kutta methods: told to land on each segment's end (``step_t``), not step past it."""


_BATCHED_ELEMENTS = 1 << 24
"""Elements of one batch of one-hot vectors in the exact trace (128 MiB in float64)."""


class _Flow:
    """``(x, ℓ) ↦ (v, ∇·v)`` for torchdiffeq, with the active coordinates and the probes fixed."""

    def __init__(self, denoiser, noising, active, probes, frozen, t_end=math.inf, batched=True):
        self.denoiser, self.noising = denoiser, noising
        self.active, self.probes, self.frozen = active, probes, frozen
        self.t_end, self.nfe, self.batched = t_end, 0, batched

    def velocity(self, x, t):
        a, s = self.noising.alpha_sigma(t, like=x)
        f, g2 = self.noising.drift_diffusion(t, like=x)
        act = self.active
        x_in = x if self.frozen == "hold" else torch.where(act, x, torch.zeros_like(x))
        D = self.denoiser(x_in, t)
        self.nfe += 1
        if x.requires_grad and not D.requires_grad:
            raise ValueError("denoiser: its output does not depend on its input under autograd (it runs under "
                             "torch.no_grad() or detaches), so the divergence of the flow would be silently wrong; "
                             "the likelihood needs dD/dx")
        var = torch.where(act, s * s, torch.ones_like(s * s))  # no 0/0 on stopped point-mass bands
        v = f * x + 0.5 * g2 * (x - a * D) / var
        return torch.where(act, v, torch.zeros_like(v))

    def __call__(self, t, state):
        x = state[0]
        # torchdiffeq's adaptive solvers may step past the end and interpolate back (``step_t`` stops that for
        # the Runge–Kutta ones): beyond the segment's end, where a band may already be cut, the field is held
        # at its end value, which leaves the solution on the segment unchanged.
        t = min(float(t), self.t_end)
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            v = self.velocity(x, t)
            div = self._exact(x, v) if self.probes is None else self._hutchinson(x, v)
        return v.detach(), div.detach()

    def _exact(self, x, v):
        """``Σ_j ∂v_j/∂x_j`` over the active coordinates: vector–Jacobian products with one-hot vectors, a chunk
        at a time through ``is_grads_batched`` (vmap), or one at a time where the model does not vmap."""
        b = x.shape[0]
        idx = torch.nonzero(self.active.expand(x.shape[1:]).reshape(-1)).flatten()
        if self.batched:
            try:
                return self._exact_batched(x, v, idx)
            except RuntimeError:
                self.batched = False
        vf = v.reshape(b, -1)
        div = torch.zeros(b, dtype=x.dtype, device=x.device)
        for n, j in enumerate(idx.tolist()):
            (gj,) = torch.autograd.grad(vf[:, j].sum(), x, retain_graph=n + 1 < idx.numel())
            div = div + gj.reshape(b, -1)[:, j]
        return div.unsqueeze(1)

    def _exact_batched(self, x, v, idx):
        b, d = x.shape[0], x[0].numel()
        chunk = max(1, min(idx.numel(), _BATCHED_ELEMENTS // max(1, b * d)))
        div = torch.zeros(b, dtype=x.dtype, device=x.device)
        for part in idx.split(chunk):
            k = part.numel()
            rows = torch.arange(k, device=x.device)
            e = torch.zeros(k, b, d, dtype=v.dtype, device=v.device)
            e[rows, :, part.to(x.device)] = 1.0
            (g,) = torch.autograd.grad(v, x, e.reshape(k, *v.shape), retain_graph=True, is_grads_batched=True)
            div = div + g.reshape(k, b, d)[rows, :, part.to(x.device)].sum(0)
        return div.unsqueeze(1)

    def _hutchinson(self, x, v):
        cols = []
        for k in range(self.probes.shape[0]):
            z = self.probes[k]
            (jz,) = torch.autograd.grad((v * z).sum(), x, retain_graph=k + 1 < self.probes.shape[0])
            jz = torch.where(self.active, jz * z, torch.zeros_like(jz))  # a stopped band's NaN never leaks
            cols.append(jz.reshape(x.shape[0], -1).sum(1))
        return torch.stack(cols, 1)


def pf_ode_nll(denoiser: Callable, noising, x: torch.Tensor, *, trace: str = "exact", n_probes: int = 1,
               probe: str = "rademacher", rtol: float = 1e-5, atol: float = 1e-5, eps: float = 1e-5,
               prior: Optional[Callable] = None, prior_data_var: float = 0.0, stop_times=None, frozen: str = "zero",
               n_dims: Optional[int] = None, offset_nats: float = 0.0, method: str = "dopri5",
               generator: Optional[torch.Generator] = None) -> NLLResult:
    """``−log p_ε(x)`` under the probability-flow ODE of ``denoiser`` and ``noising``, per sample.

    Args:
        denoiser: ``D(x, t) ≈ E[x_0 | x_t]`` (data prediction) on states like ``x``.
        noising: a :class:`~mrdiffusion.processes.BandNoising` (``x`` in packed
            band coordinates) or a schedule for every coordinate.
        x: ``(batch, *event)`` continuous data.
        trace: ``"exact"`` (one backward pass per coordinate) or ``"hutchinson"``.
        n_probes, probe: Hutchinson probes per sample (each carried through the
            whole solve; ≥ 2 gives ``trace_se``), Rademacher or Gaussian.
        rtol, atol, method: torchdiffeq's adaptive solve (``dopri5``).
        eps: the start time (``σ(0) = 0``).
        prior: ``(t, like) -> (mean, var)`` per coordinate, the law charged to a
            coordinate where it stops; default :func:`noise_prior` with ``prior_data_var``.
        stop_times: per-coordinate stop times (broadcastable to ``event``,
            default ``T``); see :func:`band_stop_times` and the module docstring.
        frozen: what the denoiser sees of a stopped coordinate, ``"zero"`` or ``"hold"``.
        n_dims: the bits/dim denominator (default: all coordinates).
        offset_nats: added to every sample's NLL (the dequantisation term).
        generator: seeds the Hutchinson probes.
    """
    noising = _as_noising(noising)
    T = float(noising.T)
    _check_args(x, trace, n_probes, probe, rtol, atol, eps, T, frozen)
    from torchdiffeq import odeint

    stops = _stop_tensor(stop_times, x, T, eps).to(x.device)
    n_dims = int(x[0].numel()) if n_dims is None else int(n_dims)
    if n_dims < 1:
        raise ValueError(f"n_dims: expected a positive int, got {n_dims}")
    prior = noise_prior(noising, prior_data_var) if prior is None else prior
    probes = None
    if trace == "hutchinson":
        shape = (n_probes, *x.shape)
        z = torch.randn(shape, generator=generator, dtype=x.dtype) if probe == "gaussian" else \
            torch.randint(0, 2, shape, generator=generator).to(x.dtype) * 2 - 1
        probes = z.to(x.device)
    K = 1 if probes is None else n_probes

    y = x.detach().clone()
    logdet = torch.zeros(x.shape[0], K, dtype=x.dtype, device=x.device)
    logprior = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    t0, nfe = float(eps), 0
    for t1 in sorted({float(s) for s in stops.flatten().tolist()}):
        active = stops >= t1  # active on [t0, t1]
        flow = _Flow(denoiser, noising, active, None if probes is None else probes * active.to(x.dtype), frozen,
                     t_end=t1)
        tt = torch.tensor([t0, t1], dtype=x.dtype, device=x.device)
        with torch.no_grad():
            ys, ls = odeint(flow, (y, logdet), tt, rtol=rtol, atol=atol, method=method,
                            options=dict(step_t=tt[1:]) if method in _ADAPTIVE else None)
        y, logdet, nfe = ys[-1], ls[-1], nfe + flow.nfe
        ending = (stops == t1)
        m, v = prior(t1, y)
        lp = -0.5 * ((y - m) ** 2 / v + torch.log(2 * math.pi * v))
        logprior = logprior + torch.where(ending, lp, torch.zeros_like(lp)).reshape(x.shape[0], -1).sum(1)
        t0 = t1

    est = -(logprior.unsqueeze(1) + logdet) + float(offset_nats)  # (batch, K) nats
    nll = est.mean(1)
    bpd = nll / (n_dims * LN2)
    n = bpd.numel()
    se = float(bpd.std(unbiased=True) / math.sqrt(n)) if n > 1 else None
    trace_se = None
    if probes is not None and K > 1:
        per = est.var(1, unbiased=True) / K / (n_dims * LN2) ** 2  # variance of each sample's probe mean
        trace_se = float(per.sum().sqrt() / n)
    return NLLResult(nll_nats=nll, bits_per_dim=bpd, n_dims=n_dims, mean=float(bpd.mean()), se=se,
                     trace_se=trace_se, trace=trace, nfe=nfe, rtol=float(rtol), atol=float(atol), method=method)


def dequantize(images: torch.Tensor, levels: int, *, lo: float = -1.0, hi: float = 1.0,
               generator: Optional[torch.Generator] = None, dtype=torch.float64):
    """Uniformly dequantised values and ``log Δ``: :func:`mrdiffusion.data.dequantize`'s map, the one models
    are trained on, ``x = lo + Δ (k + u)``, ``Δ = (hi − lo)/L``, ``u ~ U[0, 1)``.

    ``images``: integer levels ``0 … levels − 1``. Level ``k``'s cell is ``[lo + Δk, lo + Δ(k + 1))``; the
    cells tile ``[lo, hi)``.
    """
    from ..data import dequantize as _dequantize

    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels: expected an int >= 2, got {levels!r}")
    if not isinstance(images, torch.Tensor) or images.is_floating_point() and not bool(
            torch.all(images == torch.round(images))):
        raise ValueError("images: expected a tensor of integer grey levels")
    if images.numel() and (int(images.min()) < 0 or int(images.max()) > levels - 1):
        raise ValueError(f"images: values span {int(images.min())}..{int(images.max())}, outside the grey levels "
                         f"0..{levels - 1}")
    if not hi > lo:
        raise ValueError(f"lo, hi: expected lo < hi, got {lo}, {hi}")
    x = _dequantize(images.cpu(), levels, generator=generator, data_range=(lo, hi), dtype=dtype)
    return x.to(images.device), math.log((hi - lo) / levels)


def dequantized_nll(denoiser: Callable, noising, images: torch.Tensor, levels: int, *,
                    to_state: Optional[Callable] = None, n_real_dims: Optional[int] = None, lo: float = -1.0,
                    hi: float = 1.0, batch_size: int = 256, seed: int = 0, dtype=torch.float64, device=None,
                    **ode) -> NLLResult:
    """The uniform-dequantisation bound on the discrete NLL of ``images``, in bits per real dimension.

    ``images`` ``(N, *shape)`` integer levels (padding included, if any);
    ``to_state`` maps dequantised images to the denoiser's state and must be
    volume preserving (e.g. ``BandLayout.pack``, orthonormal Haar: no
    Jacobian is charged); ``n_real_dims``: pixels per image that are data, not
    padding (default all). The states are ``dtype`` on ``device`` (default
    the images'). The dequantisation noise and the Hutchinson probes are
    seeded by ``seed`` (drawn on the CPU); ``ode`` goes to :func:`pf_ode_nll`. Batches of
    ``batch_size`` are solved separately and the results concatenated.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    if not isinstance(images, torch.Tensor) or images.ndim < 2 or images.shape[0] == 0:
        raise ValueError("images: expected a non-empty tensor (N, *shape) of integer grey levels")
    D = int(images[0].numel())
    n_real = D if n_real_dims is None else int(n_real_dims)
    if not 1 <= n_real <= D:
        raise ValueError(f"n_real_dims: expected 1..{D} (pixels per image), got {n_real_dims!r}")
    gen = torch.Generator().manual_seed(int(seed))
    x, log_delta = dequantize(images, levels, lo=lo, hi=hi, generator=gen, dtype=dtype)
    parts, nfe, trace_var = [], 0, 0.0
    res = None
    for i in range(0, x.shape[0], batch_size):
        xb = x[i:i + batch_size] if device is None else x[i:i + batch_size].to(device)
        xb = to_state(xb) if to_state is not None else xb
        res = pf_ode_nll(denoiser, noising, xb, n_dims=n_real, offset_nats=-D * log_delta, generator=gen, **ode)
        parts.append(res.nll_nats)
        nfe += res.nfe
        if res.trace_se is not None:  # the batch's summed per-sample Hutchinson variances
            trace_var += (res.trace_se * xb.shape[0]) ** 2
    nll = torch.cat(parts)
    bpd = nll / (n_real * LN2)
    n = bpd.numel()
    se = float(bpd.std(unbiased=True) / math.sqrt(n)) if n > 1 else None
    trace_se = math.sqrt(trace_var) / n if res.trace_se is not None else None
    return NLLResult(nll_nats=nll, bits_per_dim=bpd, n_dims=n_real, mean=float(bpd.mean()), se=se,
                     trace_se=trace_se, trace=res.trace, nfe=nfe, rtol=res.rtol, atol=res.atol, method=res.method)
