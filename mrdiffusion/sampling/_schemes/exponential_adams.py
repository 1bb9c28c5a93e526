import torch

from solvers._schemes.exponential import phi

from ._base import SamplerScheme, StepEnds


class ExponentialAdams(SamplerScheme):
    r"""Multistep exponential integrator in data prediction, order 1–3, ODE (``eta = 0``) or SDE (``eta > 0``).

    Per coordinate, with ``h = λ₂ - λ₁``, ``ρ = e^{-h}``, ``ν = 1 + η`` and the
    sampling SDE family of SA-Solver (``η = τ²``; ``η = 0`` the probability-flow
    ODE, ``η = 1`` the reverse SDE), the exact step is

    .. math::
        x_2 = \frac{σ_2}{σ_1} ρ^{η} x_1 + α_2 ∫_0^h ν e^{-ν(h - s)} D(λ_1 + s)\,ds
              + σ_2 \sqrt{1 - ρ^{2η}}\;ξ .

    ``D`` is replaced by its Lagrange polynomial in ``λ`` through the current and
    the ``order - 1`` previous outputs (Newton form) and integrated *exactly*:
    ``∫_0^h ν e^{-ν(h-s)} s^j ds = ν h^{j+1} j!\,φ_{j+1}(-νh)``. Order 1 is
    DDIM / DPM-Solver++(1) (SDE: SDE-DPM-Solver++(1)); orders 2 and 3 are the
    DPM-Solver++(2M/3M) family with exact φ-weights, i.e. DEIS's
    exponential Adams–Bashforth in ``λ`` for the data prediction (Zhang & Chen
    2023; Lu et al. 2022, arXiv:2211.01095; Xue et al. 2023, SA-Solver).

    All of it is elementwise, so per-band schedules (a ``λ`` per coefficient)
    need nothing special. The first steps use the history available; a step onto
    ``σ = 0`` (``h = ∞``) is first order, ``x_2 = α_2 D`` exactly; with
    ``lower_order_final`` and fewer than 15 steps the order never exceeds the
    steps left (DPM-Solver's rule, which stabilises very few steps without
    costing the global order of longer runs). ODE order ``order``. Weak order
    (``eta > 0``; the sampling SDE's noise is additive): 1 for ``order=1``, 2 for
    ``order`` 2 and 3 (the third-order one self-starts with a first-order step, as
    its ODE form; measured in ``tests/test_sampling_weak_order.py``).

    ``prediction="eps"`` (ODE only) interpolates the noise prediction
    ``ε = (x - αD)/σ`` in ``λ`` instead — DPM-Solver(2M/3M) / DEIS's original
    form, ``x_2 = (α_2/α_1) x_1 - σ_2 Σ_j h^{j+1} j! φ_{j+1}(h) c_j``. At high
    noise ``ε`` varies slowly where ``D`` does not, and on the few-step
    benchmark this form is the most accurate (``docs/sampling.md``).
    """

    def __init__(self, order=2, eta=0.0, lower_order_final=True, prediction="data"):
        if order not in (1, 2, 3):
            raise ValueError(f"order: expected 1, 2 or 3, got {order!r}")
        if not 0.0 <= float(eta) <= 1.0:
            raise ValueError(f"eta: expected a number in [0, 1], got {eta!r}")
        if prediction not in ("data", "eps"):
            raise ValueError(f"prediction: expected 'data' or 'eps', got {prediction!r}")
        if prediction == "eps" and eta:
            raise ValueError("eta: the noise-prediction form is implemented for the ODE (eta=0) only")
        self.order, self.eta, self.lower_order_final = int(order), float(eta), bool(lower_order_final)
        self.prediction = prediction
        self.ode_order = float(order)
        self.stochastic = self.eta > 0
        self.weak_order_additive = 2.0 if self.stochastic and self.order >= 2 else None

    def __repr__(self):
        extra = ", prediction='eps'" if self.prediction == "eps" else ""
        return f"ExponentialAdams(order={self.order}, eta={self.eta:g}{extra})"

    def _history(self, sde, u, e, D, q):
        prev = sde.previous(u, q - 1)
        q = min(q, len(prev) + 1)
        left = sde.steps_left(u)
        if self.lower_order_final and left is not None and len(sde.u_grid) - 1 < 15:
            q = min(q, left)
        return prev, q

    # Both forms update their full-size temporaries in place; each product and sum is the same IEEE operation,
    # in the same order, as the out-of-place formula in the comment beside it (the results are bit-identical),
    # with fewer allocations of state-sized tensors per step.

    @staticmethod
    def _eps_of(x, a, D, s):
        """``(x - a D) / s``, one allocation."""
        return torch.mul(D, a).neg_().add_(x).div_(s)

    def _eps_step(self, sde, u, x, e, D, q):
        r"""Noise-prediction form (DPM-Solver / DEIS): ``x_2 = (α_2/α_1) x_1 - σ_2 ∫_0^h e^{h-s}… ε``.

        With the nodes ``s_j = λ_{n-j} - λ_n`` of the previous outputs, the Newton form
        ``∫ = h φ_1 ε_n + w_1 d_1 + W_2 d_2`` (``w_1 = h² φ_2(h)``, ``W_2 = 2 h³ φ_3(h) - s_1 w_1``, ``d_1``,
        ``d_2`` the divided differences of ``ε`` in ``λ``) is linear in ``ε_n, ε_{n-1}, ε_{n-2}``: its weights
        ``k_j`` are computed on the coefficients alone, and ``ε_j = (x_j - α_j D_j)/σ_j`` is substituted, so
        the step is one product and one fused multiply-add per stored state, with no ``ε`` or divided
        difference ever formed at the state's size.
        """
        prev, q = self._history(sde, u, e, D, q)
        hl = e.h
        k = [hl * phi(1, hl)]  # weights of ε_n, ε_{n-1}, ε_{n-2} in the integral
        nodes = []
        if q >= 2:
            lam = sde.log_snr(u)
            nodes = [(sde.log_snr(v) - lam, v, Dv, xv) for v, Dv, xv in prev[: q - 1]]
            s1 = nodes[0][0]
            w1 = hl * hl * phi(2, hl)
            k[0] = k[0] + w1 / (-s1)  # d_1 = (ε_n - ε_{n-1}) / (-s_1)
            k.append(-w1 / (-s1))
            if q >= 3:
                s2 = nodes[1][0]
                W2 = 2 * hl**3 * phi(3, hl) - s1 * w1
                # d_2 = (d_1 - (ε_{n-1} - ε_{n-2})/(s_1 - s_2)) / (-s_2)
                k[0] = k[0] + W2 / (s1 * s2)
                k[1] = k[1] - W2 / (s1 * s2) + W2 / ((s1 - s2) * s2)
                k.append(-W2 / ((s1 - s2) * s2))
        # x_2 = (α_2/α_1) x_n - σ_2 Σ_j k_j (x_j - α_j D_j)/σ_j
        c = e.s2 * k[0] / e.s1
        out = torch.mul(e.a2 / e.a1 - c, x).addcmul_(D, c * e.a1)
        for kj, (_, v, Dv, xv) in zip(k[1:], nodes):
            av, sv = sde.alpha_sigma(v)
            cj = e.s2 * kj / sv
            out.addcmul_(xv, -cj).addcmul_(Dv, cj * av)
        return out

    def step(self, sde, u, h, x, dW, ctx):
        e = StepEnds(sde, u, h)
        D = sde.denoise(u, x)
        if self.prediction == "eps" and not e.final:
            return self._eps_step(sde, u, x, e, D, self.order)
        nu, eta = 1.0 + self.eta, self.eta
        prev, q = self._history(sde, u, e, D, 1 if e.final else self.order)
        integral = torch.mul(-torch.expm1(-nu * e.h), D)  # W_0 = 1 - ρ^ν
        if q >= 2:
            hl, lam = e.h, sde.log_snr(u)
            s1 = sde.log_snr(prev[0][0]) - lam  # node of D_{n-1}, < 0
            d1 = torch.sub(D, prev[0][1]).div_(-s1)  # (D - D_{n-1}) / (-s1)
            w1 = nu * hl * hl * phi(2, -nu * hl)
            if q >= 3:
                s2 = sde.log_snr(prev[1][0]) - lam
                d1p = torch.sub(prev[0][1], prev[1][1]).div_(s1 - s2)  # (D_{n-1} - D_{n-2}) / (s1 - s2)
                d2 = d1p.neg_().add_(d1).div_(-s2)  # (d1 - d1p) / (-s2)
                w2 = 2 * nu * hl**3 * phi(3, -nu * hl)
                integral.add_(d1.mul_(w1))  # integral + w1 d1
                integral.add_(d2.mul_(w2 - s1 * w1))
            else:
                integral.add_(d1.mul_(w1))
        decay = e.rho**eta if eta > 0 else 1.0
        out = torch.mul((e.s2 / e.s1) * decay, x).add_(integral.mul_(e.a2))  # (σ_2/σ_1) ρ^η x + α_2 integral
        if self.stochastic and dW is not None:
            out.add_(self.xi(dW, h).mul_(e.s2 * torch.sqrt(-torch.expm1(-2 * eta * e.h))))
        return out
