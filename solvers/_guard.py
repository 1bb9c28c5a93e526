"""What the driver watches while it steps: divergent samples and shapes that change mid-solve."""

from __future__ import annotations

import torch

__all__ = ["DivergenceError", "Guard", "shape_checked"]


class DivergenceError(FloatingPointError):
    """Raised by :func:`solvers.sdeint` with ``on_divergence="raise"`` when a sample stops being finite."""


class Guard:
    """Per-sample divergence mask; bad samples are frozen at their last checked value.

    Sample ``b`` is row ``b`` of the state's first axis (a 0-d state is one
    sample). The mask and the divergence times persist across the stages of a
    level schedule; :meth:`carry` maps the frozen values through an embedding.
    """

    def __init__(self, x0, max_abs, on_divergence, sign=1.0):
        batch = x0.shape[0] if x0.ndim else 1
        self.mask = torch.zeros(batch, dtype=torch.bool, device=x0.device)
        self.time = torch.full((batch,), float("nan"), dtype=torch.float64)
        self.max_abs = max_abs
        self.raise_ = on_divergence == "raise"
        self.sign = sign  # internal times are sign * user times (reverse-time solves run on -t)
        self.any_bad = False  # mirrors bool(self.mask.any()) without a device sync
        self.carry(x0)

    def carry(self, x):
        """Start watching a state of (possibly) a new shape: ``x`` already holds the frozen values."""
        self.frozen = x
        self.view = (-1,) + (1,) * (x.ndim - 1) if x.ndim else ()
        self.rows = x.shape[0] if x.ndim else 1

    def __call__(self, x, t):
        if not self.any_bad and x.numel():
            # Fast path while every sample is healthy: one reduction and one sync. max|x| is NaN if
            # any entry is NaN, and NaN fails the comparison, so nothing slips through.
            if float(x.detach().abs().max()) <= self.max_abs:
                self.frozen = x
                return x
        flat = x.detach().reshape(self.rows, -1)
        bad = ~(flat.abs() <= self.max_abs).all(1)  # NaN compares False: caught too
        new = bad & ~self.mask
        if bool(new.any()):
            idx = new.nonzero().flatten().tolist()
            if self.raise_:
                raise DivergenceError(f"samples {idx[:20]}{'...' if len(idx) > 20 else ''} became non-finite "
                                      f"or exceeded max_abs={self.max_abs:g} by t={self.sign * t:g}")
            self.mask = self.mask | new
            self.time[new.cpu()] = self.sign * t
            self.any_bad = True
        if self.any_bad:
            x = torch.where(self.mask.view(self.view), self.frozen, x)
        self.frozen = x
        return x


def shape_checked(terms, g_shape, sign=1.0):
    """``terms`` with every drift and diffusion output's shape checked against the first step's.

    The driver hands these terms to the scheme on every step, so a drift or
    diffusion whose output shape changes mid-solve (to one that would broadcast
    against the state, say ``(1, d)`` for ``(batch, d)``) is refused at the
    step where it happens, the error naming the time; the check is one shape
    comparison per call. ``sign`` maps the driver's internal time back to the
    caller's (reverse-time solves).
    """
    drift, diffusion = terms.drift, terms.diffusion

    def checked_drift(t, x):
        f = drift(t, x)
        if f.shape != x.shape:
            raise ValueError(f"sde.drift: returned shape {tuple(f.shape)} at t={sign * t:g}, expected the "
                             f"state's shape {tuple(x.shape)} (it was right at the start of the solve)")
        return f

    def checked_diffusion(t, x):
        g = diffusion(t, x)
        if not isinstance(g, torch.Tensor):  # a number, or a structured operator (the HVAE's) with its own shapes
            return g
        shape = tuple(g.shape)
        if shape != g_shape:
            raise ValueError(f"sde.diffusion: returned shape {shape} at t={sign * t:g}, expected "
                             f"{g_shape} as at the start of the solve")
        return g

    return terms.replace(drift=checked_drift, diffusion=None if diffusion is None else checked_diffusion)
