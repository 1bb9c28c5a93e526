r"""EDM preconditioning per Haar band (Karras et al. 2022, Table 1), for ``x = α x_0 + σ ε``.

EDM writes the denoiser of ``z = x/α`` (noise level ``σ̂ = σ/α``) as

.. math:: D(z; σ̂) = c_{skip}(σ̂)\, z + c_{out}(σ̂)\, F\big(c_{in}(σ̂)\, z;\ c_{noise}(σ̂)\big),

.. math:: c_{skip} = \frac{σ_d^2}{σ̂^2 + σ_d^2},\quad c_{out} = \frac{σ̂ σ_d}{\sqrt{σ̂^2 + σ_d^2}},\quad
          c_{in} = \frac{1}{\sqrt{σ̂^2 + σ_d^2}},\quad c_{noise} = \tfrac14 \ln σ̂,

so that the network input ``c_in z`` and its target ``(x_0 - c_skip z)/c_out``
both have unit variance when the data have variance ``σ_d²``. Here every
coefficient uses its *own band's* ``α_k``, ``σ_k`` and ``σ_{d,k}`` (the RMS of
that band of the training images). In terms of ``x`` (multiply out ``z = x/α``)
the factors stay finite as ``α → 0``:

.. math:: c_{skip} z = \frac{σ_d^2 α}{σ^2 + α^2σ_d^2} x,\qquad
          c_{in} z = \frac{x}{\sqrt{σ^2 + α^2 σ_d^2}},\qquad
          c_{out} = \frac{σ σ_d}{\sqrt{σ^2 + α^2σ_d^2}}.

A band at SNR 0 (``α = 0``, ``σ > 0``) has ``c_skip = 0``, ``c_out = σ_d``:
the network predicts it outright. A *frozen* band (``α = σ = 0``, a point mass
before its activation) is no input (``c_in x = 0``), its output is
``D = σ_d F`` (the SNR-0 limit, trained by the loss and read by the sampler
at the band's activation) and its ``c_noise`` is :data:`C_NOISE_FROZEN`, a value no live band takes. ``c_noise``
of live bands is clamped to ``¼ ln`` of ``[SIGMA_HAT_MIN, SIGMA_HAT_MAX]``.
The network sees every band's ``c_noise``: a vector ``(B, K)``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["edm_coefficients", "Precond", "SIGMA_HAT_MIN", "SIGMA_HAT_MAX", "C_NOISE_FROZEN"]

SIGMA_HAT_MIN = 1e-4
SIGMA_HAT_MAX = 1e4
C_NOISE_FROZEN = 0.25 * math.log(SIGMA_HAT_MAX) + 1.0


def edm_coefficients(alpha, sigma, sigma_data):
    """``(c_skip, c_out, c_in, c_noise)`` acting on ``x`` (not ``z``), elementwise; see the module docstring.

    ``c_skip`` and ``c_in`` multiply ``x``; ``c_out`` multiplies ``F``. Frozen
    entries (``α = σ = 0``) get ``c_skip = c_in = 0``, ``c_out = σ_d``,
    ``c_noise = C_NOISE_FROZEN``.
    """
    frozen = (alpha == 0) & (sigma == 0)
    a2s = alpha * alpha * sigma_data * sigma_data
    den = torch.where(frozen, torch.ones_like(a2s), sigma * sigma + a2s)
    root = den.sqrt()
    c_skip = torch.where(frozen, torch.zeros_like(den), sigma_data * sigma_data * alpha / den)
    c_in = torch.where(frozen, torch.zeros_like(den), 1.0 / root)
    sd = torch.as_tensor(sigma_data, dtype=den.dtype, device=den.device).expand_as(den)
    c_out = torch.where(frozen, sd, sigma * sd / root)
    sh = (sigma / alpha.clamp(min=1e-30)).clamp(SIGMA_HAT_MIN, SIGMA_HAT_MAX)
    c_noise = torch.where(frozen, torch.full_like(den, C_NOISE_FROZEN), 0.25 * torch.log(sh))
    return c_skip, c_out, c_in, c_noise


class Precond(torch.nn.Module):
    """``D(x; α, σ)`` on packed band coefficients ``(B, C, n)`` around an image network ``net(img, c_noise)``.

    ``alpha``, ``sigma``: per band, ``(B, K)`` or ``(K,)``; ``sigma_data``: ``(K,)``.
    The network sees the image ``unpack(c_in x)`` (each band scaled to unit
    variance) and the ``(B, K)`` band noise levels, and answers an image that
    is packed into ``F``. The arithmetic of the skip runs in float32 (or the
    input's dtype) even under autocast.
    """

    def __init__(self, net, layout, sigma_data):
        super().__init__()
        self.net, self.layout = net, layout
        self.register_buffer("sigma_data", torch.as_tensor(sigma_data, dtype=torch.float32).clone())
        self.register_buffer("band", layout.dwt_level.clone(), persistent=False)

    def coefficients(self, alpha, sigma):
        """Per-coefficient ``(c_skip, c_out, c_in)`` ``(B, 1, n)`` and per-band ``c_noise`` ``(B, K)``."""
        alpha, sigma = torch.atleast_2d(alpha), torch.atleast_2d(sigma)
        sd = self.sigma_data.to(alpha.dtype)
        c_skip, c_out, c_in, c_noise = edm_coefficients(alpha, sigma, sd)
        per = lambda c: c[:, self.band].unsqueeze(1)  # noqa: E731
        return per(c_skip), per(c_out), per(c_in), c_noise

    def forward(self, x, alpha, sigma):
        c_skip, c_out, c_in, c_noise = self.coefficients(alpha.to(x.dtype), sigma.to(x.dtype))
        if c_noise.shape[0] != x.shape[0]:
            c_noise = c_noise.expand(x.shape[0], -1)
        img = self.layout.unpack(c_in * x)
        F = self.layout.pack(self.net(img, c_noise).to(x.dtype))
        return c_skip * x + c_out * F
