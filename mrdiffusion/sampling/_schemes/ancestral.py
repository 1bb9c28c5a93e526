import torch

from ._base import SamplerScheme, StepEnds


class Ancestral(SamplerScheme):
    r"""Ancestral sampling (k-diffusion's ``sample_euler_ancestral``) in ``σ̂ = σ/α``, per coordinate.

    Split ``σ̂_2² = σ̂_↓² + σ̂_↑²`` with
    ``σ̂_↑ = min(σ̂_2, η σ̂_2 \sqrt{1 - σ̂_2²/σ̂_1²})``; an Euler (DDIM) step to
    ``σ̂_↓`` and fresh noise of size ``σ̂_↑``:

    .. math:: z_2 = D_1 + \frac{σ̂_↓}{σ̂_1}(z_1 - D_1) + σ̂_↑ ξ,\qquad x_2 = α_2 z_2 .

    With ``η = 1`` this is DDPM's ancestral step (Ho et al. 2020) in the
    variance-exploding form. Weak order 1; ``η = 0`` is :class:`EDMEuler`.
    """

    def __init__(self, eta=1.0):
        if not 0.0 <= float(eta) <= 1.0:
            raise ValueError(f"eta: expected a number in [0, 1], got {eta!r}")
        self.eta = float(eta)
        self.stochastic = self.eta > 0

    def __repr__(self):
        return f"Ancestral(eta={self.eta:g})"

    def step(self, sde, u, h, x, dW, ctx):
        e = StepEnds(sde, u, h)
        D = sde.denoise(u, x)
        z = x / e.a1
        sh1, sh2 = e.s1 / e.a1, e.s2 / e.a2
        up = torch.minimum(sh2, self.eta * sh2 * torch.sqrt((1 - (sh2 / sh1) ** 2).clamp(min=0)))
        down = torch.sqrt((sh2 * sh2 - up * up).clamp(min=0))
        z2 = D + (down / sh1) * (z - D)
        if self.stochastic and dW is not None:
            z2 = z2 + up * self.xi(dW, h)
        return e.a2 * z2
