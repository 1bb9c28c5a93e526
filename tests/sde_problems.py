"""torchsde-style test problems, one per kind of torchsde's ``tests/problems.py`` (written anew here):
diagonal, scalar, additive, general, neural and parameterised. Each is an ``nn.Module`` with ``f(t, y)``
and ``g(t, y)`` in torchsde's shapes, ``noise_type`` and ``sde_type``, for states ``(batch, d)``, and
with its parameters as ``nn.Parameter`` (drift and diffusion separately, so gradients can be checked
with respect to each). :func:`in_form` re-exposes a problem through another part of the torchsde
module contract (``forward`` + ``g``, ``f_and_g``, ``g_prod``, ``f_and_g_prod``).
"""

import torch
from torch import nn

D, M = 3, 2  # state size, Brownian motions for general/additive noise


def _param(*values):
    return nn.Parameter(torch.tensor(values, dtype=torch.float64))


class Diagonal(nn.Module):
    """f = μ ⊙ sin(y) − 0.1 y,  g_i = σ_i cos(y_i) + 0.5 (g_i depends on y_i only)."""

    noise_type = "diagonal"

    def __init__(self, sde_type="ito"):
        super().__init__()
        self.sde_type = sde_type
        self.mu, self.sigma = _param(0.5, -0.3, 0.8), _param(0.4, 0.2, -0.3)

    def f(self, t, y):
        return self.mu * torch.sin(y) - 0.1 * y + 0.2 * t

    def g(self, t, y):
        return self.sigma * torch.cos(y) + 0.5


class Scalar(nn.Module):
    """One Brownian motion per sample: g = σ ⊙ sin(y) + 0.3, shape (batch, d, 1)."""

    noise_type = "scalar"

    def __init__(self, sde_type="ito"):
        super().__init__()
        self.sde_type = sde_type
        self.mu, self.sigma = _param(-0.5, 0.3, 0.1), _param(0.3, -0.4, 0.5)

    def f(self, t, y):
        return self.mu * y + torch.cos(y) * 0.1

    def g(self, t, y):
        return (self.sigma * torch.sin(y) + 0.3).unsqueeze(-1)


class Additive(nn.Module):
    """g = A (1 + t) independent of y, shape (batch, d, m); f = μ ⊙ tanh(y) − y."""

    noise_type = "additive"

    def __init__(self, sde_type="ito"):
        super().__init__()
        self.sde_type = sde_type
        self.mu = _param(0.7, -0.2, 0.4)
        self.A = nn.Parameter(torch.tensor([[0.3, -0.1], [0.2, 0.4], [-0.25, 0.15]], dtype=torch.float64))

    def f(self, t, y):
        return self.mu * torch.tanh(y) - y

    def g(self, t, y):
        return (self.A * (1 + t)).expand(y.shape[0], D, M)


class General(nn.Module):
    """Non-commutative general noise: g[b, i, k] = tanh(Σ_j y_j T[j, i, k]) · s[i, k] + c[i, k]."""

    noise_type = "general"

    def __init__(self, sde_type="ito"):
        super().__init__()
        self.sde_type = sde_type
        gen = torch.Generator().manual_seed(7)
        self.mu = _param(-0.4, 0.2, -0.6)
        self.T = nn.Parameter(0.5 * torch.randn(D, D, M, generator=gen, dtype=torch.float64))
        self.s = nn.Parameter(0.3 * torch.randn(D, M, generator=gen, dtype=torch.float64))
        self.c = nn.Parameter(0.2 * torch.randn(D, M, generator=gen, dtype=torch.float64))

    def f(self, t, y):
        return self.mu * y + 0.1 * torch.sin(y.flip(-1))

    def g(self, t, y):
        return torch.tanh(torch.einsum("bj,jik->bik", y, self.T)) * self.s + self.c


class Neural(nn.Module):
    """Small networks: f an MLP of (y, t); g_i = sigmoid(a_i y_i + b_i) · 0.5 (diagonal)."""

    noise_type = "diagonal"

    def __init__(self, sde_type="ito"):
        super().__init__()
        self.sde_type = sde_type
        torch.manual_seed(3)
        self.net = nn.Sequential(nn.Linear(D + 1, 8), nn.Tanh(), nn.Linear(8, D)).double()
        self.a, self.b = _param(0.8, -0.5, 0.3), _param(0.1, 0.2, -0.3)

    def f(self, t, y):
        tt = torch.as_tensor(t, dtype=y.dtype).expand(y.shape[0], 1)
        return self.net(torch.cat([y, tt], -1))

    def g(self, t, y):
        return 0.5 * torch.sigmoid(self.a * y + self.b)


class Parameterised(nn.Module):
    """Geometric Brownian motion with learnable rates: f = μ y, g = σ y (diagonal)."""

    noise_type = "diagonal"

    def __init__(self, sde_type="ito"):
        super().__init__()
        self.sde_type = sde_type
        self.mu, self.sigma = _param(0.2, -0.1, 0.3), _param(0.5, 0.3, 0.4)

    def f(self, t, y):
        return self.mu * y

    def g(self, t, y):
        return self.sigma * y


PROBLEMS = {"diagonal": Diagonal, "scalar": Scalar, "additive": Additive, "general": General,
            "neural": Neural, "parameterised": Parameterised}

DRIFT_PARAMS = {"diagonal": ["mu"], "scalar": ["mu"], "additive": ["mu"], "general": ["mu"],
                "neural": ["net.2.bias"], "parameterised": ["mu"]}
DIFFUSION_PARAMS = {"diagonal": ["sigma"], "scalar": ["sigma"], "additive": ["A"], "general": ["s", "T"],
                    "neural": ["a"], "parameterised": ["sigma"]}


def brownian_size(problem):
    if problem.noise_type == "scalar":
        return 1
    return M if problem.noise_type in ("general", "additive") else D


def _prod(problem, g, v):
    if problem.noise_type == "diagonal":
        return g * v
    return torch.einsum("bik,bk->bi", g, v)


class _Form(nn.Module):
    def __init__(self, base):
        super().__init__()
        self.base = base
        self.noise_type, self.sde_type = base.noise_type, base.sde_type


class ForwardG(_Form):
    def forward(self, t, y):
        return self.base.f(t, y)

    def g(self, t, y):
        return self.base.g(t, y)


class FAndG(_Form):
    def f_and_g(self, t, y):
        return self.base.f(t, y), self.base.g(t, y)


class FGProd(_Form):
    def __init__(self, base):
        super().__init__(base)
        self.brownian_size = brownian_size(base)

    def f(self, t, y):
        return self.base.f(t, y)

    def g_prod(self, t, y, v):
        return _prod(self.base, self.base.g(t, y), v)


class FAndGProd(FGProd):
    f = None

    def f_and_g_prod(self, t, y, v):
        return self.base.f(t, y), _prod(self.base, self.base.g(t, y), v)


FORMS = {"f_g": lambda p: p, "forward_g": ForwardG, "f_and_g": FAndG, "g_prod": FGProd, "f_and_g_prod": FAndGProd}
