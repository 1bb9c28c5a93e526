r"""A multi-resolution U-Net HVAE whose top-down pass is a solver applied to a learned SDE.

Generative model (docs/design.md §2–3). As in VDVAE, the state starts from a
learned constant ``bias_xs[1]`` at 1×1 — the point mass — and runs through the
steps of :meth:`HVAE.schedule` as a level schedule solved by the one driver,
:func:`solvers.integrate` (:mod:`.topdown`): one stage per resolution, each
step a scheme step of the :class:`~.sde.TopDownSDE` of that step, the latent
noise fed in as the stage's Brownian source; at every resolution change (the
stage's embedding) the state is embedded (``haar.embed``) and the learned
constant ``bias_xs[res]`` is added (VDVAE's ``mixin``): every new detail band
starts from a point mass at its activation time. ``HVAEConfig.start`` selects this, the single 1×1 point mass of issue 6
(new bands start at zero) or a learned Gaussian start (:meth:`HVAE.activate`). A 1×1 convolution of the
final state gives a categorical distribution over the data's ``levels`` grey
levels per pixel and channel. With ``solvers.TwoStepEuler()`` this is a
VDVAE-style HVAE (checked bit-for-bit against a hand-written VDVAE pass in
``tests/test_hvae_identity.py``); ``EulerMaruyama`` or ``Heun`` give other HVAEs.

Inference changes the law of the noise, not the SDE. With the prior
``z ~ N(m, s²)`` written as ``ε ~ N(0, I)``, the posterior
``z ~ N(m_q, s_q²)`` is ``ε ~ N(sqrt(h)·a, b²)`` with ``a = (m_q − m)/s`` and
``b = s_q/s``; the increment fed to the solver is ``dB = sqrt(h)·ε``. Because
the generative map ``(x, ε) ↦ x'`` is the same under prior and posterior, the
ELBO is valid for every scheme, and the KL of a step is that of the noise:

.. math:: \mathrm{KL}_k = \tfrac12\bigl(b^2 + h a^2 - 1\bigr) - \log b .

At ``h = 1`` this is the usual Gaussian KL of VDVAE. Refining the steps keeps
the posterior drift ``W(m_q − m)`` (the Girsanov part, KL ∝ h) but each step
pays the variance term again, which diverges unless ``s_q = s`` — the
continuous-time limit of an HVAE only exists for posteriors that change the
drift alone. ``benchmarks/hvae_elbo.py`` reports the effect.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

import solvers

from .. import haar
from ..data import crop_images, pad_images
from .blocks import Encoder, TimeEmbedding, TopDownBlock
from .sde import DecayTopDownSDE, TopDownSDE
from .topdown import TopDownPass

__all__ = ["HVAEConfig", "HVAE", "Step", "SUPPORTED_SOLVERS"]

#: Schemes that step the default latent-injection SDE (general noise, no Lévy area, no linear part);
#: with ``decay=True`` ``ExponentialEuler`` too. :meth:`HVAE.check_solver` is the authority.
SUPPORTED_SOLVERS = ("TwoStepEuler", "EulerMaruyama", "Heun")
_SHARE = ("none", "resolution", "all")
_TIME = ("none", "fourier")
_START = ("bias_xs", "x0", "gaussian")
_GRID = ("uniform", "graded")


@dataclass(frozen=True)
class HVAEConfig:
    """Frozen model configuration (stored in checkpoints; a mismatch is a ``ValueError``).

    ``enc_blocks`` and ``dec_blocks`` give the number of encoder blocks and
    top-down steps per resolution, coarsest (1×1) first: one entry for each of
    ``1, 2, 4, …, image_size``. ``share``: ``"none"`` (a block per step, VDVAE),
    ``"resolution"`` (one block per resolution, encoder blocks too) or
    ``"all"`` (one top-down block for every step; 3×3 convolutions everywhere).
    ``time_embedding``: ``"fourier"`` or ``"none"`` (a time-homogeneous shared
    drift). ``solver``: a name in :data:`solvers.SCHEMES`.

    ``start`` — how the state begins at ``t = 0`` and how each new Haar band
    begins at its activation time:

    - ``"bias_xs"`` (VDVAE): a learned constant per resolution
      (``bias_xs[res]``, VDVAE's ``Decoder.bias_xs``); at a resolution change
      the state becomes ``bias_xs[res] + embed(x)`` (VDVAE's ``mixin``) — a
      point mass for every new band;
    - ``"x0"``: one learned constant at 1×1, new bands start at zero (the
      model of issue 6; checkpoints written before this field existed load as
      ``"x0"``);
    - ``"gaussian"``: a learned Gaussian ``bias_xs[res] + exp(log_sd[res]) ⊙ ξ``,
      ``ξ ~ N(0, I)`` under prior *and* posterior (so its KL is zero) — a
      non-degenerate start at ``t = 0`` and at each new band.

    ``decay``: give the top-down SDE a learned per-channel linear part
    ``−κ x`` (``κ = softplus(·) > 0``, one per step block), so that
    :class:`solvers.ExponentialEuler` can step it (:class:`~.sde.DecayTopDownSDE`).
    ``grid``: ``"uniform"`` steps, or ``"graded"``: on a resolution with ``n``
    steps, times ``t_k + n (i/n)²`` — small steps right after each activation,
    the same number of steps and the same total time.

    ``real_size``: the side of the data's images when it is smaller than
    ``image_size`` (MNIST's 28 in a 32×32 stack); ``None``: ``image_size``.
    The model takes ``real_size``×``real_size`` images, pads them centred with
    level 0 (:func:`mrdiffusion.data.pad_images`) before the encoder — the
    padding is conditioned on — and scores only the real pixels: the
    reconstruction term sums over them and every bits/dim divides by
    :attr:`data_dims` ``= channels · real_size²``. Samples and reconstructions
    are the real pixels.
    """

    image_size: int = 8
    channels: int = 1
    levels: int = 17
    width: int = 32
    mid_width: int = 16
    zdim: int = 4
    enc_blocks: Tuple[int, ...] = (1, 1, 2, 2)
    dec_blocks: Tuple[int, ...] = (1, 2, 3, 3)
    share: str = "none"
    time_embedding: str = "none"
    solver: str = "TwoStepEuler"
    start: str = "bias_xs"
    decay: bool = False
    grid: str = "uniform"
    real_size: Optional[int] = None

    def __post_init__(self):
        object.__setattr__(self, "enc_blocks", tuple(int(n) for n in self.enc_blocks))
        object.__setattr__(self, "dec_blocks", tuple(int(n) for n in self.dec_blocks))
        s = self.image_size
        if not isinstance(s, int) or s < 1 or s & (s - 1):
            raise ValueError(f"image_size: expected a power of two (the Haar resolution stack 1, 2, 4, ...), "
                             f"got {s!r}")
        n_res = s.bit_length()
        for name in ("enc_blocks", "dec_blocks"):
            counts = getattr(self, name)
            if len(counts) != n_res or any(n < 0 for n in counts):
                raise ValueError(f"{name}: expected {n_res} non-negative counts, one per resolution "
                                 f"{self.resolutions} (coarsest first), got {counts}")
        if sum(self.dec_blocks) == 0:
            raise ValueError("dec_blocks: the top-down pass needs at least one step")
        for name in ("channels", "width", "mid_width", "zdim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive int, got {getattr(self, name)!r}")
        if self.levels < 2:
            raise ValueError(f"levels: expected at least 2 grey levels, got {self.levels!r}")
        if self.share not in _SHARE:
            raise ValueError(f"share: expected one of {_SHARE}, got {self.share!r}")
        if self.time_embedding not in _TIME:
            raise ValueError(f"time_embedding: expected one of {_TIME}, got {self.time_embedding!r}")
        if self.time_embedding != "none" and self.share == "none":
            raise ValueError("time_embedding: only meaningful with shared weights (share='resolution' or 'all')")
        if self.start not in _START:
            raise ValueError(f"start: expected one of {_START}, got {self.start!r}")
        if self.grid not in _GRID:
            raise ValueError(f"grid: expected one of {_GRID}, got {self.grid!r}")
        if not isinstance(self.decay, bool):
            raise ValueError(f"decay: expected True or False, got {self.decay!r}")
        if self.solver not in solvers.SCHEMES:
            raise ValueError(f"solver: expected one of {sorted(solvers.SCHEMES)}, got {self.solver!r}")
        r = self.real_size
        if r is not None and (not isinstance(r, int) or isinstance(r, bool) or not 1 <= r <= s):
            raise ValueError(f"real_size: expected None or an int in 1..image_size={s} (the data's image side, "
                             f"padded to image_size), got {r!r}")

    @property
    def data_size(self) -> int:
        """Side of the images the model takes (``real_size`` or ``image_size``)."""
        return self.real_size or self.image_size

    @property
    def data_dims(self) -> int:
        """Real pixel values per image: the denominator of every bits/dim (padding is not counted)."""
        return self.channels * self.data_size**2

    @property
    def resolutions(self) -> Tuple[int, ...]:
        return tuple(2**k for k in range(self.image_size.bit_length()))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["enc_blocks"], d["dec_blocks"] = list(self.enc_blocks), list(self.dec_blocks)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "HVAEConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"model config: unknown fields {unknown}")
        d = dict(d)
        d.setdefault("start", "x0")  # written before per-resolution point masses existed
        return cls(**d)


class Step(NamedTuple):
    """One top-down step: resolution, start time, step size, index of its block."""

    res: int
    t: float
    h: float
    block: int


def l2_norm(x):
    """Per-sample L² norm of a grid function (cell-mean inner product, channels summed)."""
    return x.square().flatten(2).sum(1).mean(-1).sqrt()


class HVAE(nn.Module):
    """The U-Net HVAE. ``forward(x, generator)`` returns the training loss (bits/dim) and statistics.

    ``x`` holds integer grey levels ``0 … levels−1`` of shape
    ``(batch, channels, image_size, image_size)``. ``solver`` (a scheme
    instance) overrides ``config.solver``.
    """

    def __init__(self, config: HVAEConfig, solver: Optional[solvers.Scheme] = None):
        super().__init__()
        self.config = c = config
        self.solver = solver if solver is not None else solvers.SCHEMES[c.solver]()
        all_3x3 = c.share == "all"
        self.encoder = Encoder(c.channels, c.width, c.mid_width, c.resolutions, c.enc_blocks,
                               shared=c.share != "none", all_3x3=all_3x3)
        if c.start == "x0":
            self.x0 = nn.Parameter(torch.zeros(1, c.width, 1, 1))  # the point mass
        else:  # VDVAE's Decoder.bias_xs: one learned constant per resolution
            self.bias_xs = nn.ParameterDict(
                {str(r): nn.Parameter(torch.zeros(1, c.width, r, r)) for r in c.resolutions})
        if c.start == "gaussian":
            self.log_sd = nn.ParameterDict({str(r): nn.Parameter(torch.zeros(1, c.width, 1, 1))
                                            for r in c.resolutions})
        depth = sum(c.dec_blocks)
        if c.share == "none":
            owners = [r for r, n in zip(c.resolutions, c.dec_blocks) for _ in range(n)]
        elif c.share == "resolution":
            owners = [r for r, n in zip(c.resolutions, c.dec_blocks) if n > 0]
        else:
            owners = [max(c.resolutions)]
        self.blocks = nn.ModuleList(
            TopDownBlock(c.width, c.mid_width, c.zdim, depth=depth, use_3x3=all_3x3 or r > 2) for r in owners)
        self.embeds = (nn.ModuleList(TimeEmbedding(c.width) for _ in owners)
                       if c.time_embedding == "fourier" else None)
        # κ = softplus(decay) starts at 1
        self.decay = (nn.Parameter(torch.full((len(owners), c.width), math.log(math.e - 1.0)))
                      if c.decay else None)
        self.step_callback = None
        self.last_extra_nfe = 0
        self.head = nn.Conv2d(c.width, c.channels * c.levels, 1)
        self.horizon = float(depth)
        self._res_block = {r: i for i, r in enumerate(owners)}
        self.check_solver(self.solver)

    # ------------------------------------------------------------------ structure

    def check_solver(self, solver):
        """``ValueError`` unless ``solver`` can step the latent-injection SDE."""
        if not isinstance(solver, solvers.Scheme):
            raise ValueError(f"solver: expected a scheme instance such as solvers.TwoStepEuler(), got {solver!r}")
        c = self.config
        finest = max(r for r, n in zip(c.resolutions, c.dec_blocks) if n > 0)
        solver.check(self._sde(0), (1, c.width, finest, finest))  # the scheme's own limits (dense Newton)
        if solver.needs_levy_area:
            raise ValueError(f"solver {solver.name} needs a Lévy area; the HVAE's noise is the latent alone")

    def _sde(self, block):
        embed = None if self.embeds is None else self.embeds[block]
        if self.decay is not None:
            return DecayTopDownSDE(self.blocks[block], embed, self.horizon,
                                   F.softplus(self.decay[block]).view(1, -1, 1, 1))
        return TopDownSDE(self.blocks[block], embed, self.horizon)

    def schedule(self, steps=None):
        """The top-down steps. ``steps``: steps per resolution (default ``config.dec_blocks``).

        Resolution ``k`` owns the time interval of length ``dec_blocks[k]``;
        ``m`` steps on it have ``h = dec_blocks[k] / m``.
        """
        c = self.config
        steps = c.dec_blocks if steps is None else tuple(int(m) for m in steps)
        if len(steps) != len(c.dec_blocks) or any(m < 0 for m in steps) or any(
                (m == 0) != (n == 0) for m, n in zip(steps, c.dec_blocks)):
            raise ValueError(f"steps: expected {len(c.dec_blocks)} counts, positive exactly where dec_blocks "
                             f"{c.dec_blocks} is, got {steps}")
        grade = (lambda u: u * u) if c.grid == "graded" else (lambda u: u)
        out, t0 = [], 0
        for res, n, m in zip(c.resolutions, c.dec_blocks, steps):
            for i in range(m):
                t, t_next = t0 + n * grade(i / m), t0 + n * grade((i + 1) / m)
                if c.share == "none":  # block i covers [i, i+1) of the trained (uniform) grid
                    blk = t0 + min(int(math.floor(n * i / m + 1e-9)), n - 1)
                else:
                    blk = self._res_block[res] if c.share == "resolution" else 0
                out.append(Step(res, float(t), float(t_next - t), blk))
            t0 += n
        return out

    # ------------------------------------------------------------------ the top-down pass

    def top_down(self, batch, acts=None, *, solver=None, steps=None, noise=None, generator=None,
                 temperature=1.0, record=False):
        """Run the top-down pass; return ``(x, kl, norms)``.

        ``acts`` (encoder activations by resolution) selects the posterior
        (``kl``: per-resolution KL in nats, each of shape ``(batch,)``) or, when
        ``None``, the prior (``kl`` empty). ``noise`` (one standard-normal
        tensor of shape ``(batch, zdim, res, res)`` per step) fixes the
        randomness; otherwise it is drawn from ``generator``. ``record``:
        ``norms`` is ``(n_steps + 1, batch)``, the L² norm of the state before
        the first and after every step. ``self.step_callback`` (when set) is
        called after every step as ``callback(i, step, x, step_kl)``
        (``step_kl`` ``None`` under the prior) — telemetry hooks in here.
        """
        solver = self.solver if solver is None else solver
        if solver is not self.solver:
            self.check_solver(solver)
        run = TopDownPass(self, batch, acts, noise, generator, temperature, record)
        x, info = run.solve(solver, self.schedule(steps))
        if x.shape[-1] != self.config.image_size:
            x = haar.embed(x, levels=int(math.log2(self.config.image_size // x.shape[-1])))
        # evaluations a scheme made beyond its declared counts (Newton iterations)
        self.last_extra_nfe = info.nfe - info.n_steps * (solver.drift_evals + solver.diffusion_evals)
        return x, run.kl, (torch.stack(run.norms) if record else None)

    def activate(self, x, res, batch, generator=None):
        """The state at the activation time of resolution ``res`` (``x``: the coarser state, or ``None``).

        ``start="bias_xs"``: ``bias_xs[res] + embed(x)`` (VDVAE's ``bias_xs`` and
        ``mixin``); ``"x0"``: ``x0`` first, then ``embed(x)``; ``"gaussian"``:
        ``bias_xs[res] + exp(log_sd[res]) ⊙ ξ + embed(x)``, ``ξ`` standard normal.
        """
        up = None
        if x is not None:
            up = haar.embed(x, levels=int(math.log2(res // x.shape[-1])))
        if self.config.start == "x0":
            return self.x0.expand(batch, -1, -1, -1) if up is None else up
        start = self.bias_xs[str(res)].expand(batch, -1, -1, -1)
        if self.config.start == "gaussian":
            xi = torch.randn(start.shape, generator=generator, dtype=start.dtype, device=start.device)
            start = start + self.log_sd[str(res)].exp() * xi
        return start if up is None else start + up

    def logits(self, x):
        """``(batch, channels, levels, H, W)`` categorical logits of the final state."""
        c = self.config
        out = self.head(x)
        return out.view(out.shape[0], c.channels, c.levels, *out.shape[-2:])

    def scale_input(self, x):
        return x.to(self.head.weight.dtype) * (2.0 / (self.config.levels - 1)) - 1.0

    def pad(self, x):
        """Images of the data's size → the stack's ``image_size`` (centred, level 0); identity without padding."""
        c = self.config
        return x if c.data_size == c.image_size else pad_images(x, c.image_size)

    def crop(self, x):
        """The real pixels of ``(..., image_size, image_size)`` maps; identity without padding."""
        c = self.config
        return x if c.data_size == c.image_size else crop_images(x, c.data_size)

    # ------------------------------------------------------------------ objectives and sampling

    def elbo(self, x, *, solver=None, steps=None, noise=None, generator=None):
        """Per-sample negative ELBO in nats and its parts: ``(nll, recon, kl_by_res)``.

        ``x``: ``(batch, channels, data_size, data_size)``; with padding, the
        encoder sees the padded images and ``recon`` sums over the real pixels only.
        """
        acts = self.encoder(self.scale_input(self.pad(x)))
        state, kl, _ = self.top_down(x.shape[0], acts, solver=solver, steps=steps, noise=noise,
                                     generator=generator)
        logits = self.crop(self.logits(state))
        recon = F.cross_entropy(logits.transpose(1, 2), x.long(), reduction="none").flatten(1).sum(1)
        total = recon + sum(kl.values())
        return total, recon, kl

    def forward(self, x, generator=None):
        """Training objective: mean negative ELBO in bits per real dimension, and statistics (bits/dim)."""
        total, recon, kl = self.elbo(x, generator=generator)
        scale = 1.0 / (math.log(2.0) * self.config.data_dims)
        loss = total.mean() * scale
        stats = {"recon": recon.mean().detach() * scale}
        for res, v in kl.items():
            stats[f"kl{res}"] = v.mean().detach() * scale
        return loss, stats

    @torch.no_grad()
    def sample(self, n, *, solver=None, steps=None, generator=None, temperature=1.0, record=False):
        """Prior samples: ``(images, info)``; ``info`` has ``nonfinite`` (bool per sample) and ``norms``."""
        state, _, norms = self.top_down(n, None, solver=solver, steps=steps, generator=generator,
                                        temperature=temperature, record=record)
        images, bad = self._draw(self.crop(self.logits(state)), generator)
        return images, {"nonfinite": bad, "norms": norms}

    @torch.no_grad()
    def reconstruct(self, x, *, generator=None, mode=True):
        """Posterior reconstructions: the most likely levels (``mode``) or a draw."""
        acts = self.encoder(self.scale_input(self.pad(x)))
        state, _, _ = self.top_down(x.shape[0], acts, generator=generator)
        logits = self.crop(self.logits(state))
        if mode:
            return logits.argmax(2)
        return self._draw(logits, generator)[0]

    @staticmethod
    def _draw(logits, generator):
        bad = ~torch.isfinite(logits).flatten(1).all(1)
        safe = torch.where(torch.isfinite(logits), logits, torch.zeros_like(logits))
        u = torch.rand(safe.shape, generator=generator, dtype=safe.dtype, device=safe.device)
        expo = -torch.log(u.clamp_min(1e-30))  # Exp(1); Gumbel-max: argmax(logits - log Exp(1))
        gumbel = -torch.log(expo.clamp_min(1e-30))
        images = (safe + gumbel).argmax(2)
        images[bad] = 0
        return images, bad

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
