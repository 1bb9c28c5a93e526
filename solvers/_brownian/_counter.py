"""Counter-based standard normals: splitmix64 of ``(key, counter)`` and a Box–Muller transform.

The noise of :class:`BrownianPath` is a deterministic function of a node key and the
element's counter, so nothing depends on the query order, the batch size or the cache.
splitmix64: Steele, Lea & Flood (2014), "Fast splittable pseudorandom number generators".
"""

import math

import torch

_MASK64 = (1 << 64) - 1


def _signed(x: int) -> int:
    """A 64-bit unsigned integer as the int64 with the same bits."""
    x &= _MASK64
    return x - (1 << 64) if x >= 1 << 63 else x


_GAMMA = 0x9E3779B97F4A7C15  # splitmix64 increment (golden ratio)
_MIX = ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB), (31, None))
_MIX_SIGNED = tuple((s, None if m is None else _signed(m)) for s, m in _MIX)


def _mix64_int(x: int) -> int:
    """splitmix64 finaliser on Python ints (reference for the tensor version, node keys)."""
    x &= _MASK64
    for shift, mult in _MIX:
        x ^= x >> shift
        if mult is not None:
            x = (x * mult) & _MASK64
    return x


def _node_key(seed: int, d: int, k: int) -> int:
    """The int64 key of dyadic node (d, k) of the path with this seed."""
    return _signed(_mix64_int(_mix64_int(_mix64_int(seed + _GAMMA) + d) + k))


def _counter_base(counters: torch.Tensor) -> torch.Tensor:
    """``counters * GAMMA`` (mod 2^64): precomputed once per path."""
    return counters.to(torch.int64) * _signed(_GAMMA)


def _hash(key: int, base: torch.Tensor) -> torch.Tensor:
    """splitmix64 output ``mix(key + counter * GAMMA)`` for every counter, as int64 bits.

    torch's ``>>`` on int64 is arithmetic, so the logical shift is emulated with a
    mask; int64 multiplication wraps modulo 2^64 (two's complement) in practice.
    """
    z = base + key
    tmp = torch.empty_like(z)
    for shift, mult in _MIX_SIGNED:
        torch.bitwise_right_shift(z, shift, out=tmp)
        tmp &= (1 << (64 - shift)) - 1
        z ^= tmp
        if mult is not None:
            z *= mult
    return z


def _normal(key: int, base: torch.Tensor, pair: bool = False):
    """Standard normals (float64), a deterministic function of ``(key, counter)``.

    One 64-bit hash per element gives two 32-bit uniforms, ``u1 ∈ (0, 1]`` (no
    ``log 0``) and ``u2 ∈ [0, 1)``; Box–Muller gives ``r cos θ`` and, with ``pair``,
    the independent ``r sin θ``.  32-bit radii cap ``|z|`` at 6.66 (tail mass 3e-11).
    """
    z = _hash(key, base)
    u1 = ((z >> 32) & 0xFFFFFFFF).to(torch.float64).add_(1.0).mul_(2.0**-32)
    theta = (z & 0xFFFFFFFF).to(torch.float64).mul_(2.0 * math.pi * 2.0**-32)
    r = u1.log_().mul_(-2.0).sqrt_()
    if pair:
        return r * torch.cos(theta), r.mul_(theta.sin_())
    return r.mul_(theta.cos_())
