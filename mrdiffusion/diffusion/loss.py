r"""Denoising score matching with EDM's weighting, per Haar band.

For images ``x_0`` (packed band coefficients), a time ``t`` and ``ε ~ N(0, I)``,
``x_t^{(k)} = α_k(t) x_0^{(k)} + σ_k(t) ε^{(k)}`` and

.. math:: L = \operatorname{mean}_i\ λ_{k(i)}(t)\,\big(D(x_t, t)_i - x_{0,i}\big)^2,\qquad
          λ_k = \frac{σ̂_k^2 + σ_{d,k}^2}{(σ̂_k σ_{d,k})^2} = \frac{σ_k^2 + α_k^2 σ_{d,k}^2}{σ_k^2 σ_{d,k}^2},

``σ̂_k = σ_k/α_k``, the mean over every coefficient of the batch. A *frozen*
band (``α_k = σ_k = 0``, a point mass, ``t ≥ a_k``) is no input to the
network but it is in the loss, with the SNR-0 limit of the weight,
``λ_k = 1/σ_{d,k}²``: its prediction ``D_k = E[x_0^{(k)} | x_t]`` (from the
live bands alone) is exactly what a sampler needs at the band's activation,
where the band's SNR is 0 (:mod:`.sample`). This departs from "a band whose
cut-off is zero is no loss" on purpose. With the preconditioning of :mod:`.precond`, ``λ_k c_{out,k}^2 = 1``:
the loss is the plain mean square error of the network output ``F`` against
its unit-variance target, in every band and at every noise level (Karras et al.
2022, eq. 8 and Table 1).

The time law is EDM's log-normal for every family: ``ln t ~ N(P_mean, P_std²)``,
``P_mean = -1.2``, ``P_std = 1.2``. For ``scalar`` that is EDM's σ law exactly;
for ``perband`` and ``pointmass`` ``t`` is the coarse band's noise level, so
the coarse band sees EDM's law and band ``k`` the law its schedule maps it to
(``perband``: ``ln σ_k ~ N(P_mean + k ln 2, P_std²)``; ``pointmass``: band ``k``
is live for ``t < a_k`` — with the default activations about 94 %, 79 % and
52 % of the draws for the three coarsest detail bands — and sweeps its whole
log-SNR range inside that interval).
"""

from __future__ import annotations

import torch

__all__ = ["P_MEAN", "P_STD", "sample_times", "dsm_loss"]

P_MEAN = -1.2
P_STD = 1.2


def sample_times(n, generator, device, p_mean=P_MEAN, p_std=P_STD):
    """``t = exp(P_mean + P_std·N(0,1))``, ``(n,)`` float32."""
    z = torch.randn(n, generator=generator, device=device)
    return (p_mean + p_std * z).exp()


def dsm_loss(model, x0, generator, autocast=False):
    """``(loss, per-band mean loss (K,))`` for a batch of packed clean coefficients ``x0`` ``(B, C, n)``.

    ``model`` is a :class:`~mrdiffusion.diffusion.model.DiffusionModel` (or its
    DDP wrapper); the noise and the times come from ``generator``.
    """
    inner = getattr(model, "module", model)
    fam, band = inner.family, inner.precond.band
    t = sample_times(x0.shape[0], generator, x0.device)
    eps = torch.randn(x0.shape, generator=generator, device=x0.device)
    alpha, sigma = fam.alpha_sigma(t)  # (B, K)
    a, s = alpha[:, band].unsqueeze(1), sigma[:, band].unsqueeze(1)
    x = a * x0 + s * eps
    with torch.autocast(x0.device.type, dtype=torch.bfloat16, enabled=autocast):
        D = model(x, t)
    D = D.float()
    sd = inner.precond.sigma_data[band].to(x0.dtype)
    frozen = (s == 0) & (a == 0)
    s_safe = torch.where(frozen, torch.ones_like(s), s)
    lam = torch.where(frozen, 1.0 / (sd * sd), (s_safe * s_safe + a * a * sd * sd) / (s_safe * s_safe * sd * sd))
    err = lam * (D - x0) ** 2
    total = err.mean()
    K = alpha.shape[1]
    per_band = torch.stack([err[..., band == k].mean() for k in range(K)])
    return total, per_band.detach()
