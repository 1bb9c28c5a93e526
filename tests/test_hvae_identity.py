"""The HVAE's top-down pass built from ``TwoStepEuler`` *is* a VDVAE decoder (docs/design.md §3).

``VDVAEDecoder`` below follows VDVAE's ``Decoder.forward`` and ``DecBlock``
(Child 2021, github.com/openai/vdvae ``vae.py``) line for line, with no solver
and no SDE: the state dict ``xs`` starts as ``{res: bias_xs[res]}``; a block at
resolution ``base`` reads ``x = xs[base]`` (zeros when absent), adds the
nearest-upsampled ``xs[mixin]`` when it is the first block of its resolution,
draws ``z`` from the posterior ``enc([x, acts])`` (or the prior), adds the
prior branch ``xpp``, then ``z_proj(z)``, then runs the residual ``resnet``,
and writes ``xs[base] = x``. For the same weights and the same ``ε`` it must
agree with our model to rounding in float64, in prior and posterior mode.
"""

import math

import pytest
import torch
import torch.nn.functional as F

import solvers
from mrdiffusion.hvae import HVAE, HVAEConfig


pytestmark = pytest.mark.usefixtures("one_thread")


SMALL = dict(width=8, mid_width=4, zdim=2, enc_blocks=(1, 1, 1, 1), dec_blocks=(1, 2, 2, 2))


def gaussian_kl(mu1, mu2, logsigma1, logsigma2):
    """VDVAE's ``gaussian_analytical_kl``: KL(N(mu1, sigma1²) || N(mu2, sigma2²))."""
    return -0.5 + logsigma2 - logsigma1 + 0.5 * (logsigma1.exp() ** 2 + (mu1 - mu2) ** 2) / (logsigma2.exp() ** 2)


class VDVAEDecoder:
    """VDVAE's decoder over our weights. ``layers``: VDVAE's parsed ``dec_blocks`` string ``[(res, mixin)]``."""

    def __init__(self, model):
        c = model.config
        self.model, self.zdim, self.image_size = model, c.zdim, c.image_size
        # "1x1,2m1,2x1,4m2,4x1,..." parsed: the first block of a resolution mixes in the previous one
        self.layers, prev = [], None
        for res, n in zip(c.resolutions, c.dec_blocks):
            for i in range(n):
                self.layers.append((res, prev if i == 0 else None))
            prev = res if n else prev
        # bias_xs; the single-x0 model is VDVAE with no_bias_above=1 (absent biases read as zeros)
        if c.start == "bias_xs":
            self.bias_xs = [model.bias_xs[str(r)] for r in c.resolutions]
        else:
            self.bias_xs = [model.x0]

    def block_forward(self, idx, xs, activations, noise):  # DecBlock.forward
        base, mixin = self.layers[idx]
        blk = self.model.blocks[self.model.schedule()[idx].block]
        # get_inputs
        try:
            x = xs[base]
        except KeyError:
            x = torch.zeros(noise.shape[0], self.model.config.width, base, base, dtype=noise.dtype)
        if x.shape[0] != noise.shape[0]:
            x = x.repeat(noise.shape[0], 1, 1, 1)
        if mixin is not None:
            x = x + F.interpolate(xs[mixin][:, :x.shape[1], ...], scale_factor=base // mixin)
        # sample / sample_uncond
        if activations is not None:
            qm, qv = blk.posterior_net(torch.cat([x, activations[base]], dim=1)).chunk(2, dim=1)
        feats = blk.prior_net(x)
        pm, pv, xpp = feats[:, :self.zdim, ...], feats[:, self.zdim:self.zdim * 2, ...], feats[:, self.zdim * 2:, ...]
        x = x + xpp
        if activations is None:
            z, kl = pm + torch.exp(pv) * noise, None  # draw_gaussian_diag_samples
        else:
            z, kl = qm + torch.exp(qv) * noise, gaussian_kl(qm, pm, qv, pv)
        x = x + blk.z_proj(z)
        x = x + blk.resnet(x)  # Block(residual=True)
        xs[base] = x
        return xs, kl

    def forward(self, batch, activations, noise):  # Decoder.forward / forward_manual_latents
        xs = {a.shape[2]: a.repeat(batch, 1, 1, 1) for a in self.bias_xs}
        kl = 0.0
        for idx in range(len(self.layers)):
            xs, block_kl = self.block_forward(idx, xs, activations, noise[idx])
            if block_kl is not None:
                kl = kl + block_kl.flatten(1).sum(1)
        return xs[self.image_size], kl


def vdvae_top_down(model, batch, acts, noise):
    return VDVAEDecoder(model).forward(batch, acts, noise)


def _randomised(config, solver=None, seed=0):
    torch.manual_seed(seed)
    model = HVAE(config, solver=solver).double()
    with torch.no_grad():  # leave the zero/scaled initialisation: every path must matter
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _noise(model, batch, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, model.config.zdim, st.res, st.res, generator=g, dtype=torch.float64)
            for st in model.schedule()]


@pytest.mark.parametrize("share,start", [("none", "bias_xs"), ("resolution", "bias_xs"), ("none", "x0")])
def test_two_step_euler_decoder_is_vdvae_prior_and_posterior(share, start):
    config = HVAEConfig(**SMALL, share=share, start=start, solver="TwoStepEuler")
    model = _randomised(config)
    batch = 5
    noise = _noise(model, batch)
    x_data = torch.randint(0, config.levels, (batch, 1, 8, 8), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        # prior (sampling)
        ours, _, _ = model.top_down(batch, None, noise=noise)
        ref, _ = vdvae_top_down(model, batch, None, noise)
        assert ours.dtype == torch.float64
        assert torch.allclose(ours, ref, rtol=0, atol=1e-10), float((ours - ref).abs().max())
        assert torch.allclose(model.logits(ours), model.logits(ref), rtol=0, atol=1e-10)
        # posterior (encoding): same activations, same ε
        acts = model.encoder(model.scale_input(x_data))
        ours, kl, _ = model.top_down(batch, acts, noise=noise)
        ref, ref_kl = vdvae_top_down(model, batch, acts, noise)
        assert torch.allclose(ours, ref, rtol=0, atol=1e-10), float((ours - ref).abs().max())
        ours_kl = sum(kl.values())
        assert torch.allclose(ours_kl, ref_kl, rtol=0, atol=1e-10 * float(ref_kl.abs().max())), (ours_kl, ref_kl)
        assert float(ref_kl.min()) > 0  # the check is not vacuous


def test_the_sde_follows_the_solvers_protocol():
    model = _randomised(HVAEConfig(**SMALL))
    sde = model._sde(0)
    x = torch.randn(3, 8, 1, 1, dtype=torch.float64)
    assert sde.noise_type == "general"
    assert torch.allclose(sde.drift(0.0, x), sde.drift_part1(0.0, x) + sde.drift_part2(0.0, x))
    # g·dW = W (s ⊙ dW): the latent injection without its mean
    dW = torch.randn(3, 2, 1, 1, dtype=torch.float64)
    _, log_s, _ = sde.prior(0.0, x)
    w = model.blocks[0].z_proj.weight
    expected = torch.einsum("oi,bi->bo", w[:, :, 0, 0], (log_s.exp() * dW)[:, :, 0, 0])
    assert torch.allclose(sde.diffusion(0.0, x)(dW)[:, :, 0, 0], expected)


@pytest.mark.parametrize("name", ["Milstein", "SRA1", "ExponentialEuler"])
def test_schemes_that_cannot_step_the_latent_noise_are_refused(name):
    with pytest.raises(ValueError):
        HVAE(HVAEConfig(**SMALL, solver=name))


@pytest.mark.parametrize("solver", [solvers.EulerMaruyama(), solvers.Heun()])
def test_other_solvers_give_trainable_hvaes(solver):
    torch.manual_seed(0)
    model = HVAE(HVAEConfig(**SMALL), solver=solver)
    x = torch.randint(0, 17, (16, 1, 8, 8), generator=torch.Generator().manual_seed(3))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss_at_fixed_noise():
        return model(x, torch.Generator().manual_seed(4))[0]

    with torch.no_grad():
        before = float(loss_at_fixed_noise())
    for _ in range(15):
        loss = loss_at_fixed_noise()
        opt.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
    with torch.no_grad():
        after = float(loss_at_fixed_noise())
    assert math.isfinite(after) and after < before - 0.1, (before, after)
    # and the solvers really give different models
    noise = [n.float() for n in _noise(model, 2, seed=5)]
    with torch.no_grad():
        a = model.top_down(2, None, noise=noise)[0]
        b = model.top_down(2, None, solver=solvers.TwoStepEuler(), noise=noise)[0]
    assert not torch.allclose(a, b)


def test_refined_and_coarsened_schedules_cover_the_same_time():
    model = HVAE(HVAEConfig(**SMALL, share="resolution", time_embedding="fourier"))
    for steps in [(1, 2, 2, 2), (2, 4, 4, 4), (1, 1, 1, 1), (3, 5, 7, 2)]:
        sched = model.schedule(steps)
        assert len(sched) == sum(steps)
        for res, n in zip(model.config.resolutions, model.config.dec_blocks):
            assert math.isclose(sum(s.h for s in sched if s.res == res), n)
        x = torch.randint(0, 17, (4, 1, 8, 8))
        nll, _, _ = model.elbo(x, steps=steps)
        assert torch.isfinite(nll).all()
    with pytest.raises(ValueError):
        model.schedule((1, 0, 2, 2))


def test_categorical_draws_follow_the_logits():
    g = torch.Generator().manual_seed(0)
    peaked = torch.full((4, 1, 17, 8, 8), -30.0)
    peaked[:, :, 5] = 0.0
    images, bad = HVAE._draw(peaked, g)
    assert (images == 5).all() and not bad.any()
    probs = torch.softmax(torch.linspace(-2, 2, 17), 0)
    images, _ = HVAE._draw(probs.log().view(1, 1, 17, 1, 1).expand(20000, 1, 17, 1, 1), g)
    freq = torch.bincount(images.flatten(), minlength=17).double() / 20000
    assert (freq - probs.double()).abs().max() < 0.01
    images, bad = HVAE._draw(torch.full((2, 1, 17, 2, 2), float("nan")), g)
    assert bad.all() and (images == 0).all()
