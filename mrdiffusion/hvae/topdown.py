r"""The HVAE's top-down pass as a level schedule run by the one driver, :func:`solvers.integrate`.

One :class:`solvers.Stage` per resolution that has steps (docs/hvae.md, "The
top-down pass and the driver"):

- the stage's **embedding** is :meth:`HVAE.activate`: ``haar.embed`` of the
  coarser state plus the next resolution's point mass ``bias_xs[res]``
  (VDVAE's ``mixin``);
- the stage's **SDE** (:class:`StageSDE`) steps the learned top-down SDE of
  the step in progress (:class:`~.sde.TopDownSDE` of that step's block);
- the stage's **Brownian source** is the same object: ``increment(t, t + h)``
  returns the latent increment ``sqrt(h)·ε`` of the step starting at ``t``.
  Under the prior ``ε`` is a fresh standard normal (or the caller's
  ``noise[i]``); under the posterior it is the posterior sample's standardised
  innovation ``ε = sqrt(h)·a + b·ξ`` (model.py) at the state the step starts
  from, and the step's KL is computed with it;
- the step **callback** collects the KL per resolution, the norms and the
  user's ``HVAE.step_callback``, and hands the new state to the source (the
  posterior noise of the next step depends on it).

The time grid is the model's: ``tstops`` are the step times of
:meth:`HVAE.schedule` (uniform or graded), so the driver's steps are exactly
the model's (``h = t_next − t`` from the same floats).

The latent diffusion ``W diag(s)`` is an operator, not a dense
``(*state, zdim·res²)`` tensor; the driver's general-noise product
``(g * dW).sum(-1)`` is applied to it as the 1×1 convolution
(:class:`~.sde.LatentDiffusion`). The driver probes every stage before any
work; the adapter answers that probe with zero tensors of the right shapes
(the shapes are fixed by construction), so no network is evaluated on a
throw-away state and no random number is drawn.
"""

from __future__ import annotations

import math

import torch

import solvers

__all__ = ["StageSDE", "DecayStageSDE", "TopDownPass", "l2_norm"]


def l2_norm(x):
    """Per-sample L² norm of a grid function (cell-mean inner product, channels summed)."""
    return x.square().flatten(2).sum(1).mean(-1).sqrt()


class StageSDE:
    """One resolution's top-down SDE for the driver, and that stage's latent noise source.

    Drift and diffusion are those of the step in progress (set by
    :meth:`increment`, which the driver calls just before each step), so a
    scheme's later stages within a step (Heun's at ``t + h``) use the step's
    block, as a non-shared model requires.
    """

    noise_type = "general"
    has_levy_area = False

    def __init__(self, run, res, steps):
        self.run, self.res = run, res
        self.steps = {st.t: (i, st) for i, st in steps}
        self.t0, self.t1 = steps[0][1].t, steps[-1][1].t + steps[-1][1].h
        c = run.model.config
        self.shape = (run.batch, c.zdim * res * res)
        self.sde = None  # the TopDownSDE of the step in progress

    # ---- the noise source (solvers.BrownianSource interface)
    def increment(self, s, t):
        i, st = self.steps[s]
        self.sde = self.run.model._sde(st.block)
        return self.run.latent_increment(i, st, self.sde)

    # ---- the SDE
    def _witness(self, x, *extra):
        return x.new_zeros(()).expand(*x.shape, *extra)

    def drift(self, t, x):
        return self._witness(x) if self.sde is None else self.sde.drift(t, x)

    def drift_part1(self, t, x):
        return self.sde.drift_part1(t, x)

    def drift_part2(self, t, x):
        return self.sde.drift_part2(t, x)

    def diffusion(self, t, x):
        if self.sde is None:  # the driver's probe: (*state, zdim·res²), as general noise
            return self._witness(x, self.shape[1])
        return self.sde.diffusion(t, x)


class DecayStageSDE(StageSDE):
    """:class:`StageSDE` of a model with a learned decay: adds ``linear`` / ``nonlinear`` (exponential schemes)."""

    def linear(self, t):
        return self.sde.linear(t)

    def nonlinear(self, t, x):
        return self.sde.nonlinear(t, x)


class TopDownPass:
    """State of one top-down pass: the noise it feeds, the KL and norms it collects."""

    def __init__(self, model, batch, acts, noise, generator, temperature, record):
        self.model, self.batch, self.acts = model, batch, acts
        self.noise, self.generator, self.temperature = noise, generator, temperature
        self.kl = {}
        self.norms = [] if record else None
        self.x = None  # the state the next step starts from
        self.step_kl = None
        self.current = None
        self.started = False

    def latent_increment(self, i, st, sde):
        """``sqrt(h)·ε`` for step ``i`` from ``self.x``, flattened to ``(batch, zdim·res²)``; sets the step's KL."""
        self.started = True
        self.current = (i, st)
        x = self.x
        m, log_s, _ = sde.prior(st.t, x)
        if self.noise is not None:
            xi = self.noise[i]
        else:
            xi = torch.randn(m.shape, generator=self.generator, dtype=m.dtype, device=m.device)
        rh = math.sqrt(st.h)
        self.step_kl = None
        if self.acts is None:
            eps = xi if self.temperature == 1.0 else self.temperature * xi
        else:
            mq, log_sq = sde.posterior(st.t, x, self.acts[st.res])
            a = (mq - m) / log_s.exp()
            log_b = log_sq - log_s
            b = log_b.exp()
            eps = a * rh + b * xi
            self.step_kl = (0.5 * (b.square() + st.h * a.square() - 1.0) - log_b).flatten(1).sum(1)
        dB = eps * rh if rh != 1.0 else eps
        return dB.reshape(dB.shape[0], -1)

    def enter(self, x, res):
        """The stage embedding: the state at the activation of ``res`` (a shape witness during the probe)."""
        if not self.started:
            c = self.model.config
            return x.new_zeros(()).expand(self.batch, c.width, res, res)
        self.x = self.model.activate(x, res, self.batch, self.generator)
        return self.x

    def after_step(self, step):
        """The driver's step callback: KL per resolution, norms, the user's hook; the next step's state."""
        self.x = step.x_next
        i, st = self.current
        if self.step_kl is not None:
            self.kl[st.res] = self.kl[st.res] + self.step_kl if st.res in self.kl else self.step_kl
        if self.norms is not None:
            self.norms.append(l2_norm(step.x_next).detach())
        if self.model.step_callback is not None:
            self.model.step_callback(i, st, step.x_next, self.step_kl)

    def solve(self, solver, schedule):
        """Run the pass on ``schedule`` (a list of model steps); return ``(final state, SolveInfo)``."""
        model = self.model
        by_res = {}
        for i, st in enumerate(schedule):
            by_res.setdefault(st.res, []).append((i, st))
        cls = DecayStageSDE if model.decay is not None else StageSDE
        stages, x0 = [], None
        for k, (res, steps) in enumerate(by_res.items()):
            sde = cls(self, res, steps)
            if k == 0:
                x0 = self.x = model.activate(None, res, self.batch, self.generator)
                stages.append(solvers.Stage(sde.t0, sde, brownian=sde))
            else:
                stages.append(solvers.Stage(sde.t0, sde, embed=lambda x, r=res: self.enter(x, r), brownian=sde))
        if self.norms is not None:
            self.norms.append(l2_norm(x0).detach())
        t_end = schedule[-1].t + schedule[-1].h
        sol = solvers.integrate(stages, x0, [stages[0].t_start, t_end], solver, tstops=[st.t for st in schedule],
                                callback=self.after_step, check_every=None, max_abs=math.inf)
        x = sol.ys[-1]
        if sol.info.diverged is not None and self.started and bool(sol.info.diverged.any()):
            # the driver froze the samples that went non-finite; the model reports them as non-finite
            x = torch.where(sol.info.diverged.view(-1, 1, 1, 1), torch.full_like(x, math.nan), x)
        return x, sol.info
