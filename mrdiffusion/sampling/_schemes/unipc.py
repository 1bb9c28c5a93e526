import torch

from solvers._schemes.exponential import phi

from ._base import SamplerScheme, StepEnds

VARIANTS = ("bh1", "bh2")


def _vandermonde_solve(nodes, b):
    """Solve ``Σ_j nodes_j^{i} ρ_j = b_i`` (``i = 0 … n-1``) elementwise; ``nodes``, ``b`` lists of tensors."""
    n = len(nodes)
    shape = torch.broadcast_shapes(*(v.shape for v in nodes), *(v.shape for v in b))
    rows = [torch.stack([torch.broadcast_to(c**i, shape) for c in nodes], -1) for i in range(n)]
    rhs = torch.stack([torch.broadcast_to(v, shape) for v in b], -1).unsqueeze(-1)
    rho = torch.linalg.solve(torch.stack(rows, -2), rhs).squeeze(-1)
    return [rho[..., j] for j in range(n)]


class UniPC(SamplerScheme):
    r"""UniPC: a multistep predictor (UniP-p) and a corrector (UniC) that reuses the next model evaluation, ODE.

    Zhao, Bai, Rao, Zhou & Lu (2023), *UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
    Diffusion Models*, NeurIPS, arXiv:2302.04867 (UniP-p, UniC-p and the ``B(h)`` variants).

    Per coordinate, with ``h = λ_t - λ_s`` from the step's start ``s`` to its end ``t``, model outputs
    ``m_0 = m(x̃_s)`` at the current point and ``m_k`` at the ``p - 1`` previous points ``λ_{s_k}``,
    ``r_k = (λ_{s_k} - λ_s)/h`` and ``D_k = (m_k - m_0)/r_k``. Data prediction (``m = D``, ``ĥ = -h``):

    .. math::
        x̃_t = \frac{σ_t}{σ_s} x_s - α_t (e^{ĥ} - 1) m_0 - α_t B(h) \sum_{k=1}^{p-1} ρ^p_k D_k
        \qquad\text{(UniP-p, order } p\text{)},

    noise prediction (``m = ε``, ``ĥ = h``):
    ``x̃_t = (α_t/α_s) x_s - σ_t (e^{ĥ} - 1) m_0 - σ_t B(h) Σ ρ^p_k D_k``.
    The corrector evaluates the model once at the *predicted* ``x̃_t`` and recomputes the step with that
    value as one more node (``r_p = 1``, ``D_p = m_t - m_0``):

    .. math::
        x_t = \frac{σ_t}{σ_s} x_s - α_t (e^{ĥ} - 1) m_0
              - α_t B(h)\Big(\sum_{k=1}^{p-1} ρ^c_k D_k + ρ^c_p D_p\Big)
        \qquad\text{(UniC-p, order } p + 1\text{)}.

    The weights solve ``R_p(r) ρ = b(h)``, ``R`` the Vandermonde matrix of the nodes
    (``R_{ik} = r_k^{i-1}``), ``b_i = ĥ φ_{i+1}(ĥ)\, i! / B(h)`` (``φ`` the exponential-integrator
    functions). The predictor uses the first ``p - 1`` rows and nodes, except ``p = 2`` (``ρ^p = ½``) and the
    corrector for ``p = 1`` (``ρ^c = ½``), the paper's fixed values (the solution at ``h → 0``).
    ``B(h) = ĥ`` (``variant="bh1"``, the paper's choice for few unconditional steps) or ``e^{ĥ} - 1``
    (``"bh2"``); any ``B(h) = O(h)`` keeps the order. Where the weights are a full solve, ``B(h)`` cancels
    (``ρ ∝ 1/B``); the variants differ only through the fixed ``½`` (UniP-2, and UniC-1 as in the warm-up
    step).

    **No extra evaluation.** The model output at ``x̃_t`` is the one the next step starts from (``m_0`` of
    the next step is evaluated at the predicted, not the corrected, state: UniPC's design); so this scheme
    makes that evaluation at the end of a step, returns the corrected ``x_t`` and the next step reads the
    recorded output instead of evaluating again: one model evaluation per step. The *last* step has no
    next evaluation and so no corrector (it is UniP-p alone); a step onto ``σ = 0`` (``h = ∞``) is
    ``x = α D`` exactly, ``D`` from the last evaluation. ``corrector=False`` gives UniP-p alone everywhere.

    Orders: UniP-p has ODE order ``p``; with the corrector ``p + 1`` (``ode_order``), the order of its
    multistep formula (measured with exact starting values in ``tests/test_sampling_unipc.py``). Self-started
    the first steps use the history available (a first-order predictor, plus the corrector, first), which
    limits a self-started run to order 3 and, without the corrector, to order 2. With
    ``lower_order_final`` and fewer than 15 steps the order never exceeds the steps left (DPM-Solver's
    rule; diffusers' UniPC applies it at every step count). All of it is elementwise: per-band schedules
    (a ``λ`` per coefficient) give per-coefficient nodes and weights.
    """

    def __init__(self, order=2, variant="bh1", prediction="data", corrector=True, lower_order_final=True):
        if isinstance(order, bool) or order not in (1, 2, 3):
            raise ValueError(f"order: expected 1, 2 or 3, got {order!r}")
        if variant not in VARIANTS:
            raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")
        if prediction not in ("data", "eps"):
            raise ValueError(f"prediction: expected 'data' or 'eps', got {prediction!r}")
        self.order, self.variant, self.prediction = int(order), variant, prediction
        self.corrector, self.lower_order_final = bool(corrector), bool(lower_order_final)
        self.ode_order = float(self.order + 1 if self.corrector else self.order)

    def __repr__(self):
        extra = "" if self.corrector else ", corrector=False"
        return f"UniPC(order={self.order}, variant='{self.variant}', prediction='{self.prediction}'{extra})"

    # --- model outputs in the scheme's convention
    def _output(self, sde, u, D, x_eval):
        if self.prediction == "data":
            return D
        a, s = sde.alpha_sigma(u)
        return (x_eval - a * D) / s

    def _current(self, sde, u, x):
        """``(D, point)`` at ``u``: the output the previous step evaluated at its prediction, else a new one."""
        hist = sde.history
        if self.corrector and hist and hist[-1][0] == u:
            return hist[-1][1], hist[-1][2]
        return sde.denoise(u, x), x

    def _weights(self, e):
        hh = -e.h if self.prediction == "data" else e.h
        B = hh if self.variant == "bh1" else torch.expm1(hh)
        fact = [1.0, 1.0, 2.0, 6.0]
        return hh, B, [hh * phi(i + 1, hh) * fact[i] / B for i in (1, 2, 3)]

    def step(self, sde, u, h, x, dW, ctx):
        e = StepEnds(sde, u, h)
        D, x_eval = self._current(sde, u, x)
        if e.final:
            return e.a2 * D
        left = sde.steps_left(u)
        q = self.order
        if self.lower_order_final and left is not None and len(sde.u_grid) - 1 < 15:
            q = min(q, left)
        prev = sde.previous(u, q - 1)
        q = min(q, len(prev) + 1)
        m0 = self._output(sde, u, D, x_eval)
        lam = sde.log_snr(u)
        nodes, diffs = [], []
        for v, Dv, xv in prev[: q - 1]:
            r = (sde.log_snr(v) - lam) / e.h
            nodes.append(r)
            diffs.append((self._output(sde, v, Dv, xv) - m0) / r)
        hh, B, b = self._weights(e)
        if self.prediction == "data":
            base, coef = (e.s2 / e.s1) * x - e.a2 * torch.expm1(hh) * m0, e.a2 * B
        else:
            base, coef = (e.a2 / e.a1) * x - e.s2 * torch.expm1(hh) * m0, e.s2 * B
        # predictor UniP-q
        if q == 1:
            x_pred = base
        else:
            rho = [torch.full_like(b[0], 0.5)] if q == 2 else _vandermonde_solve(nodes, b[: q - 1])
            x_pred = base - coef * sum(r * d for r, d in zip(rho, diffs))
        if not self.corrector or left is None or left <= 1:
            return x_pred  # the last step: no next evaluation to correct with
        # corrector UniC-q with the next step's evaluation at the predicted state
        u_next = sde.u_grid[len(sde.u_grid) - left]
        D_t = sde.denoise(u_next, x_pred)
        m_t = self._output(sde, u_next, D_t, x_pred)
        rho_c = [torch.full_like(b[0], 0.5)] if q == 1 else _vandermonde_solve(nodes + [torch.ones_like(e.h)], b[:q])
        corr = rho_c[-1] * (m_t - m0)
        for r, d in zip(rho_c[:-1], diffs):
            corr = corr + r * d
        return base - coef * corr
