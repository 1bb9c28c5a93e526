"""Reference problems with closed-form solutions or moments, shared by the solver tests."""

import math

import torch

import solvers
from mrdiffusion.processes import LinearTestEquation


class GBM(solvers.SDE):
    """dX = a X dt + b X dW; X_T = X_0 exp((a - b²/2) T + b W_T)."""

    noise_type = "diagonal"

    def __init__(self, a=0.5, b=0.8):
        self.a, self.b = a, b

    def drift(self, t, x):
        return self.a * x

    def diffusion(self, t, x):
        return self.b * x

    def diffusion_derivative(self, t, x):
        return torch.full_like(x, self.b)

    def exact(self, x0, t, w):
        return x0 * torch.exp((self.a - 0.5 * self.b**2) * t + self.b * w)


class AdditiveNonlinear(solvers.SDE):
    """dX = (-X + sin X) dt + (1 + t)/2 dW: additive, time-dependent noise, no closed form."""

    noise_type = "additive"

    def drift(self, t, x):
        return -x + torch.sin(x)

    def diffusion(self, t, x):
        return torch.full_like(x, 0.5 * (1 + t))


class OU(solvers.SDE):
    """dX = -θ X dt + σ dW, linear part A = -θ."""

    noise_type = "additive"
    linear_only = True

    def __init__(self, theta=2.0, sigma=1.0):
        self.theta, self.sigma = theta, sigma

    def drift(self, t, x):
        return -self.theta * x

    def diffusion(self, t, x):
        return torch.full_like(x, self.sigma)

    def linear(self, t):
        return -self.theta

    def second_moment(self, x0, t):
        e = math.exp(-2 * self.theta * t)
        return x0**2 * e + self.sigma**2 / (2 * self.theta) * (1 - e)


LinearMultiplicative = LinearTestEquation  # dX = λ X dt + μ X dW (the mean-square stability test equation)


class StiffPointMass(solvers.SDE):
    """dZ = -κ/(t + ε) Z dt + β dW from Z_0 = z0 (docs/design.md §2.3), with its exact linear transition."""

    noise_type = "additive"
    linear_only = True

    def __init__(self, kappa=5.0, eps=0.01, beta=1.0):
        self.kappa, self.eps, self.beta = kappa, eps, beta

    def drift(self, t, x):
        return self.linear(t) * x

    def diffusion(self, t, x):
        return torch.full_like(x, self.beta)

    def linear(self, t):
        return -self.kappa / (t + self.eps)

    def linear_transition(self, s, t):
        k, e = self.kappa, self.eps
        lam = -k * math.log((t + e) / (s + e))
        var = ((t + e) ** (2 * k + 1) - (s + e) ** (2 * k + 1)) / ((2 * k + 1) * (t + e) ** (2 * k))
        return lam, var

    def mean(self, z0, t):
        return z0 * (self.eps / (t + self.eps)) ** self.kappa

    def variance(self, t):
        k, e = self.kappa, self.eps
        return self.beta**2 * ((t + e) ** (2 * k + 1) - e ** (2 * k + 1)) / ((2 * k + 1) * (t + e) ** (2 * k))


def slope(dts, errors):
    """Least-squares slope of log(error) against log(dt)."""
    import numpy as np

    return float(np.polyfit(np.log(dts), np.log(errors), 1)[0])
