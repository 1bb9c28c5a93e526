"""DPM-Solver++(3S): its measured ODE order (3, scalar and per-band schedules) is checked with every ODE scheme in
``test_sampling.test_ode_order_is_the_declared_one``; here the budget and the step onto σ = 0."""

import torch

from mrdiffusion.processes import gaussian_denoiser
from mrdiffusion.sampling import DPMSolverPP3S, sample

from test_sampling import NOISINGS, gaussian_problem


def test_final_step_to_sigma_zero_and_budget():
    nz = NOISINGS["per-band VP/VE"]
    mean, var = gaussian_problem(nz)
    calls = []
    D = gaussian_denoiser(nz, mean, var)

    def model(x, t):
        calls.append(t)
        return D(x, t)

    a, s = nz.alpha_sigma(nz.T)
    x_T = a * mean + (a * a * var + s * s).sqrt() * torch.randn(32, 1, nz.layout.n, dtype=torch.float64)
    x, info = sample(model, nz, x_T, nfe=10, solver=DPMSolverPP3S())
    assert info.nfe == len(calls) <= 10 and info.steps == 4  # 3 steps × 3 evaluations + a first-order final step
    assert torch.isfinite(x).all()
