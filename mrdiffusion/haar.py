r"""Haar multi-resolution analysis (MRA) on tensors.

Mathematics
-----------
A tensor ``x[..., i_1, ..., i_d]`` whose last ``d = ndim`` axes ("spatial"
axes) have sizes ``N_k`` is read as a function on ``[0, 1]^d`` that is
constant on a grid of ``N_1 x ... x N_d`` cells.  All leading axes (batch,
channels, ...) are carried along untouched.  Halving every spatial size gives
the nested spaces ``V_0 ⊂ V_1 ⊂ ... ⊂ V_J``.

* The L² inner product of two grid functions is the **mean** over cells of
  ``x * y`` (``<f, g> = N^-d Σ_i x_i y_i``).
* :func:`project` (``P : V_J -> V_{J-levels}``) averages the ``2**ndim``
  children of each coarse cell, ``levels`` times; this is average pooling with
  kernel and stride ``2**levels``.  It is the orthogonal L² projection:
  ``x - embed(project(x))`` is orthogonal to every element of the coarse space.
* :func:`embed` (``ι``) copies each coarse value to its children (nearest
  neighbour upsampling).  It is the L² adjoint of ``project`` with respect to
  the cell-mean inner product: ``project(embed(y)) == y`` and
  ``mean(project(x) * y) == mean(x * embed(y))``; ``embed ∘ project`` is the
  orthogonal projector onto the coarse space.
* :func:`dwt` / :func:`idwt` are the *orthonormal* (ℓ²-norm preserving)
  multilevel discrete Haar transform and its inverse.  One level maps the
  ``2**ndim`` children of every coarse cell to ``2**ndim`` coefficients with the
  tensor product of the 1-D filters ``lo = (1, 1)/√2`` and
  ``hi = (1, -1)/√2`` (``hi`` gives ``(x_even - x_odd)/√2``).  Hence in 2-D the
  approximation coefficient of a block ``[a b; c d]`` is ``(a + b + c + d)/2``
  and, after ``levels`` levels,
  ``coarse == 2**(ndim*levels/2) * project(x, levels, ndim)``.
  The orthonormal Haar matrix is symmetric and orthogonal, so one level is its
  own inverse; ``idwt`` applies the same butterflies in reverse order.

Layout of the coefficients
--------------------------
``coarse, details = dwt(x, levels, ndim)``:

* ``coarse`` has shape ``(*lead, *spatial / 2**levels)``.
* ``details`` is a list of ``levels`` tensors ordered **coarsest -> finest**;
  ``details[i]`` has shape ``(*lead, 2**ndim - 1, *spatial_i)`` where
  ``spatial_i = spatial / 2**(levels - i)`` is the size of that level's coarse
  grid.  Example: ``x`` of spatial shape ``(8, 8)`` and ``levels=3`` gives
  ``coarse`` ``(..., 1, 1)`` and details ``(..., 3, 1, 1)``,
  ``(..., 3, 2, 2)``, ``(..., 3, 4, 4)``.

Detail channels.  Write the channel number ``c`` in ``1 .. 2**ndim - 1`` in
binary with ``ndim`` bits ``b_1 ... b_ndim``, most significant bit = first
spatial axis (axis ``-ndim``), least significant bit = last axis (``-1``).
Bit ``b_k = 1`` means the high-pass filter ``hi`` along spatial axis ``k``,
``b_k = 0`` the low-pass ``lo``.  Channel ``c`` is stored at index ``c - 1``
of the band axis (channel ``0``, all low-pass, is the coarse part).  For one
coarse cell with children ``x[a_1, ..., a_d]`` (``a_k ∈ {0, 1}``)::

    coef[c] = 2**(-d/2) * Σ_a (-1)**(Σ_k b_k a_k) * x[a]

So along an axis the high-pass coefficient is ``(x_even - x_odd)/√2``.

Relation to PyWavelets (``wavelet='haar'``, any mode for even sizes).  The
coefficients are *identical, signs included* (PyWavelets' ``dec_hi`` is
``[-1/√2, 1/√2]`` as a filter, which after its convolution/down-sampling gives
``(x_even - x_odd)/√2``; this is checked by the tests).  PyWavelets' key
letters follow the axis order, ``'a'`` = low-pass, ``'d'`` = high-pass, so our
channel ``c`` is the key spelled by its bits (``0 -> 'a'``, ``1 -> 'd'``):

=======  ===========  ================  =====================================
 ndim     band index   channel (bits)    PyWavelets key
=======  ===========  ================  =====================================
 1        0            1  (``1``)        ``wavedec``: ``cD``  (``'d'``)
 2        0            1  (``01``)       ``'ad'`` = ``cV`` (2nd of wavedec2's tuple)
 2        1            2  (``10``)       ``'da'`` = ``cH`` (1st of wavedec2's tuple)
 2        2            3  (``11``)       ``'dd'`` = ``cD`` (3rd of wavedec2's tuple)
 3        0 .. 6       1 .. 7            ``'aad' 'ada' 'add' 'daa' 'dad' 'dda' 'ddd'``
=======  ===========  ================  =====================================

(``cH`` = detail along axis ``-2``, ``cV`` = along axis ``-1``.)  In 3-D the
band index order is exactly the sorted order of ``wavedecn``'s keys.
:data:`PYWT_DETAIL_ORDER` holds the key of each band index,
:data:`PYWT_WAVEDEC2_ORDER` the band index of ``(cH, cV, cD)``, and
:func:`to_pywt` / :func:`from_pywt` convert to and from PyWavelets' layout
(``wavedec`` / ``wavedec2`` / ``wavedecn``; lists coarsest first, exactly
like ours).

Implementation
--------------
Everything is reshapes, strided views and broadcast ``addcmul`` butterflies
(``a + s * b`` with ``s = [1, -1]`` broadcast along a new band axis): one
kernel per spatial axis and level, plus one in-place scaling per level in
``dwt`` (``idwt`` folds the scaling into the butterflies' weights); there are no
python loops over elements, no custom autograd functions (plain autograd
differentiates everything, including ``gradcheck`` in float64) and no matrix
products, so float32 results do not depend on TF32 settings on GPUs.  Only the
coarse part is transformed further at each level.  Works on any device and for
any floating dtype; outputs have the input's dtype and device.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "project",
    "embed",
    "dwt",
    "idwt",
    "band_count",
    "band_bits",
    "PYWT_DETAIL_ORDER",
    "PYWT_WAVEDEC2_ORDER",
    "to_pywt",
    "from_pywt",
    "Pyramid",
]

_NDIMS = (1, 2, 3)


def _bits(c: int, ndim: int) -> Tuple[int, ...]:
    return tuple((c >> (ndim - 1 - k)) & 1 for k in range(ndim))


#: For each ``ndim``: the PyWavelets ``wavedecn`` key of each band index
#: (band index ``i`` holds channel ``c = i + 1``, see the module docstring).
PYWT_DETAIL_ORDER = {
    d: tuple("".join("ad"[b] for b in _bits(c, d)) for c in range(1, 2**d))
    for d in _NDIMS
}

#: Band indices of PyWavelets' ``wavedec2`` detail tuple ``(cH, cV, cD)``:
#: ``(cH, cV, cD) == (details[..., 1, :, :], details[..., 0, :, :],
#: details[..., 2, :, :])``.
PYWT_WAVEDEC2_ORDER = (1, 0, 2)


def band_count(ndim: int) -> int:
    """Number of detail bands per level, ``2**ndim - 1``."""
    _check_ndim(ndim)
    return 2**ndim - 1


def band_bits(ndim: int) -> Tuple[Tuple[int, ...], ...]:
    """Filter bits of each band index: ``band_bits(2) == ((0, 1), (1, 0), (1, 1))``.

    Entry ``k`` of a band's tuple is 1 where the high-pass filter acts along
    spatial axis ``k`` (axis ``-ndim + k``).
    """
    _check_ndim(ndim)
    return tuple(_bits(c, ndim) for c in range(1, 2**ndim))


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------


def _check_ndim(ndim) -> None:
    if isinstance(ndim, bool) or not isinstance(ndim, int) or ndim not in _NDIMS:
        raise ValueError(f"ndim must be 1, 2 or 3, got {ndim!r}")


def _check_levels(levels) -> int:
    if isinstance(levels, bool):
        raise ValueError(f"levels must be a non-negative int, got {levels!r}")
    try:
        lv = operator.index(levels)
    except TypeError:
        raise ValueError(
            f"levels must be a non-negative int, got {levels!r} "
            f"of type {type(levels).__name__}"
        ) from None
    if lv < 0:
        raise ValueError(f"levels must be a non-negative int, got {lv}")
    return lv


def _check_tensor(x, name: str, ndim: int) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < ndim:
        raise ValueError(
            f"{name} must have at least ndim={ndim} dimensions (the last {ndim} are "
            f"spatial), got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise ValueError(f"{name} must have a floating dtype, got {x.dtype}")


def _check_divisible(x: Tensor, levels: int, ndim: int, name: str = "x") -> None:
    f = 2**levels
    spatial = tuple(x.shape[-ndim:])
    for k, n in enumerate(spatial):
        if n % f:
            raise ValueError(
                f"{name} has spatial shape {spatial}, which is not divisible by "
                f"2**levels = {f} along axis {k - ndim} (size {n}); "
                f"levels={levels} is too many or the size is wrong"
            )


# --------------------------------------------------------------------------
# project / embed
# --------------------------------------------------------------------------


def project(x: Tensor, levels: int = 1, ndim: int = 2) -> Tensor:
    """Average pooling by ``2**levels`` along each of the last ``ndim`` axes.

    The L²-orthogonal projection onto the grid ``levels`` times coarser (mean
    over the ``2**(ndim*levels)`` fine cells of each coarse cell).  ``levels=0``
    returns ``x`` itself.
    """
    _check_ndim(ndim)
    _check_tensor(x, "x", ndim)
    levels = _check_levels(levels)
    _check_divisible(x, levels, ndim)
    if levels == 0:
        return x
    f = 2**levels
    lead = x.shape[: x.dim() - ndim]
    if ndim > 1 and levels <= 3 and x.dtype in (torch.float32, torch.float64):
        # torch's pooling kernels beat the reshape-mean for small kernels (3x at levels=1 in 2-D,
        # 6x in 3-D; measured by benchmarks/speed.py); the reshape-mean wins for large ones.
        pool = F.avg_pool2d if ndim == 2 else F.avg_pool3d
        spatial = x.shape[-ndim:]
        y = pool(x.reshape(-1, 1, *spatial), f)
        return y.reshape(*lead, *(n // f for n in spatial))
    shape = list(lead)
    for n in x.shape[-ndim:]:
        shape += [n // f, f]
    nl = len(lead)
    return x.reshape(shape).mean(dim=tuple(nl + 2 * k + 1 for k in range(ndim)))


def embed(x: Tensor, levels: int = 1, ndim: int = 2) -> Tensor:
    """Nearest-neighbour upsampling by ``2**levels`` along the last ``ndim`` axes.

    Copies each coarse value to its ``2**(ndim*levels)`` children: the exact
    adjoint of :func:`project` for the cell-mean inner product, with
    ``project(embed(y)) == y``.  ``levels=0`` returns ``x`` itself.
    """
    _check_ndim(ndim)
    _check_tensor(x, "x", ndim)
    levels = _check_levels(levels)
    if levels == 0:
        return x
    f = 2**levels
    lead = tuple(x.shape[: x.dim() - ndim])
    spatial = tuple(x.shape[-ndim:])
    nl = len(lead)
    v = x
    for k in range(ndim):
        v = v.unsqueeze(nl + 2 * k + 1)
    exp = list(lead)
    for n in spatial:
        exp += [n, f]
    return v.expand(exp).reshape(*lead, *(n * f for n in spatial))


# --------------------------------------------------------------------------
# dwt / idwt
# --------------------------------------------------------------------------


def _signs(x: Tensor, trailing: int) -> Tensor:
    # [1, -1] shaped (2, 1, ..., 1) with `trailing` ones; built without a
    # host->device copy.
    s = torch.ones(2, dtype=x.dtype, device=x.device)
    s[1:] = -1
    return s.view((2,) + (1,) * trailing)


def _dwt_level(x: Tensor, ndim: int, nl: int) -> Tensor:
    """One level: (*lead, *spatial) -> (*lead, 2**ndim, *spatial/2), scaled."""
    lead = x.shape[:nl]
    half = [n // 2 for n in x.shape[nl:]]
    shape = list(lead)
    for n in half:
        shape += [n, 2]
    cur = x.reshape(shape)
    # invariant before step k: (*lead, [2]*k, h_1..h_k, h_{k+1}, 2, ..., h_d, 2)
    for k in range(ndim):
        child = nl + 2 * k + 1
        a = cur.select(child, 0).unsqueeze(nl + k)
        b = cur.select(child, 1).unsqueeze(nl + k)
        cur = torch.addcmul(a, _signs(x, a.dim() - nl - k - 1), b)
    out = cur.reshape(*lead, 2**ndim, *half)
    return out.mul_(2.0 ** (-ndim / 2))


def dwt(x: Tensor, levels: int, ndim: int = 2) -> Tuple[Tensor, List[Tensor]]:
    """Orthonormal multilevel Haar transform over the last ``ndim`` axes.

    Returns ``(coarse, details)``: ``coarse`` of shape
    ``(*lead, *spatial / 2**levels)`` equal to
    ``2**(ndim*levels/2) * project(x, levels, ndim)``, and ``details`` a list
    ordered coarsest -> finest with ``details[i]`` of shape
    ``(*lead, 2**ndim - 1, *spatial / 2**(levels - i))``.  Band ordering and
    signs: see the module docstring (identical to PyWavelets' ``haar``).
    ``levels=0`` returns ``(x, [])``.  The returned ``coarse`` and details
    are views into one buffer per level; they share no memory with ``x``
    (unless ``levels=0``).
    """
    _check_ndim(ndim)
    _check_tensor(x, "x", ndim)
    levels = _check_levels(levels)
    _check_divisible(x, levels, ndim)
    nl = x.dim() - ndim
    details: List[Tensor] = []
    for _ in range(levels):
        out = _dwt_level(x, ndim, nl)
        x = out.select(nl, 0)
        details.append(out.narrow(nl, 1, 2**ndim - 1))
    details.reverse()
    return x, details


def _idwt_level(coarse: Tensor, det: Tensor, ndim: int, nl: int, scale: float) -> Tensor:
    """Unscaled inverse butterflies of one level with the details weighted by ``scale``.

    coarse (*lead, *s), det (*lead, B, *s) -> coarse + scale * (detail part),
    shape (*lead, *2s).  The orthonormal factors are applied by the caller
    through ``scale`` and a pre-scaled coarse input, so no extra pass over
    the data is needed.
    """
    # Groups of the band axis: channel 0 = `head` (the coarse part), channels
    # 1.. = `rest`.  Combining pairs (2g, 2g+1) along the least significant bit
    # undoes the butterfly of the last remaining spatial axis.  The head pair
    # is (head, rest[0]); the others are (rest[1::2], rest[2::2]).  Only the
    # head combinations are weighted, each with `scale` on its rest operand.
    head = coarse
    rest = det
    for k in reversed(range(ndim)):
        # head: (*lead, h_1..h_k, [h_{k+1}, 2, ...]); rest: (*lead, G-1, same)
        pos = nl + k + 1  # new child axis right after spatial axis k (in head)
        s = _signs(coarse, head.dim() - pos)
        new_head = torch.addcmul(
            head.unsqueeze(pos), s, rest.select(nl, 0).unsqueeze(pos), value=scale
        )
        if rest.shape[nl] > 1:
            rest = torch.addcmul(
                rest[(slice(None),) * nl + (slice(1, None, 2),)].unsqueeze(pos + 1),
                s,
                rest[(slice(None),) * nl + (slice(2, None, 2),)].unsqueeze(pos + 1),
            )
        head = new_head
    lead = coarse.shape[:nl]
    return head.reshape(*lead, *(2 * n for n in coarse.shape[nl:]))


def _check_idwt(coarse, details, ndim: int) -> None:
    _check_tensor(coarse, "coarse", ndim)
    if isinstance(details, Tensor) or not isinstance(details, Sequence):
        raise ValueError(
            "details must be a list or tuple of tensors (coarsest -> finest), "
            f"got {type(details).__name__}"
        )
    nl = coarse.dim() - ndim
    lead = tuple(coarse.shape[:nl])
    spatial = tuple(coarse.shape[nl:])
    nb = 2**ndim - 1
    for i, d in enumerate(details):
        if not isinstance(d, Tensor):
            raise ValueError(
                f"details[{i}] must be a torch.Tensor, got {type(d).__name__}"
            )
        expected = lead + (nb,) + tuple(n * 2**i for n in spatial)
        if tuple(d.shape) != expected:
            what = (
                "leading dims do not match coarse"
                if d.dim() == len(expected) and tuple(d.shape[:nl]) != lead
                else f"expected (*lead, 2**ndim - 1, *spatial) with spatial = coarse "
                f"spatial {spatial} * 2**{i}"
            )
            raise ValueError(
                f"details[{i}] has shape {tuple(d.shape)} but shape {expected} was "
                f"expected ({what}; coarse has shape {tuple(coarse.shape)}, "
                f"ndim={ndim}, {len(details)} detail levels)"
            )
        if d.dtype != coarse.dtype or d.device != coarse.device:
            raise ValueError(
                f"details[{i}] has dtype {d.dtype} on {d.device}, but coarse has "
                f"dtype {coarse.dtype} on {coarse.device}"
            )


def idwt(coarse: Tensor, details: Sequence[Tensor], ndim: int = 2) -> Tensor:
    """Exact inverse of :func:`dwt`: ``idwt(*dwt(x, levels, ndim), ndim) == x``.

    ``details`` is ordered coarsest -> finest, ``details[i]`` of shape
    ``(*lead, 2**ndim - 1, *coarse_spatial * 2**i)``.  With no details,
    ``coarse`` itself is returned.
    """
    _check_ndim(ndim)
    _check_idwt(coarse, details, ndim)
    nl = coarse.dim() - ndim
    levels = len(details)
    if levels == 0:
        return coarse
    # x_{i+1} = c * B(x_i, d_i) with B the unscaled butterflies and
    # c = 2**(-ndim/2).  We carry y_i = c**(levels - i) * x_i instead: then
    # y_{i+1} = B'(y_i, d_i) where B' weights the details by c**(levels - i),
    # and only the (small) coarse input needs an explicit multiplication.
    c = 2.0 ** (-ndim / 2)
    x = coarse * c**levels
    for i, d in enumerate(details):
        x = _idwt_level(x, d, ndim, nl, c ** (levels - i))
    return x


# --------------------------------------------------------------------------
# PyWavelets interop (numpy; for tests and comparisons)
# --------------------------------------------------------------------------


def _np(t: Tensor):
    return t.detach().cpu().numpy()


def to_pywt(coarse: Tensor, details: Sequence[Tensor], ndim: int = 2) -> list:
    """Coefficients in PyWavelets' layout (numpy arrays), coarsest first.

    ``ndim=1``: ``[cA, cD_coarsest, ..., cD_finest]`` as ``pywt.wavedec``;
    ``ndim=2``: ``[cA, (cH, cV, cD), ...]`` as ``pywt.wavedec2``;
    ``ndim=3``: ``[cA, {'aad': ..., ..., 'ddd': ...}, ...]`` as ``pywt.wavedecn``
    (all with the transform over the last ``ndim`` axes).
    """
    _check_ndim(ndim)
    _check_idwt(coarse, details, ndim)
    nl = coarse.dim() - ndim
    out: list = [_np(coarse)]
    for d in details:
        bands = [_np(d.select(nl, i)) for i in range(2**ndim - 1)]
        if ndim == 1:
            out.append(bands[0])
        elif ndim == 2:
            out.append(tuple(bands[i] for i in PYWT_WAVEDEC2_ORDER))
        else:
            out.append(dict(zip(PYWT_DETAIL_ORDER[3], bands)))
    return out


def from_pywt(coeffs, ndim: int = 2, *, dtype=None, device=None):
    """Inverse of :func:`to_pywt`: PyWavelets' coefficient list -> ``(coarse, details)``.

    Accepts the ``wavedec`` / ``wavedec2`` layouts for ``ndim`` 1 / 2 and the
    ``wavedecn`` dict layout for any ``ndim``.
    """
    _check_ndim(ndim)

    def t(a):
        return torch.as_tensor(a, dtype=dtype, device=device)

    coarse = t(coeffs[0])
    details = []
    for level in coeffs[1:]:
        if isinstance(level, dict):
            bands = [t(level[k]) for k in PYWT_DETAIL_ORDER[ndim]]
        elif ndim == 1:
            bands = [t(level)]
        elif ndim == 2:
            hvd = [t(a) for a in level]
            bands = [None] * 3
            for pos, idx in enumerate(PYWT_WAVEDEC2_ORDER):
                bands[idx] = hvd[pos]
        else:
            raise ValueError("ndim=3 coefficients must be wavedecn dicts")
        details.append(torch.stack(bands, dim=coarse.dim() - ndim))
    return coarse, details


# --------------------------------------------------------------------------
# Pyramid container
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Pyramid:
    """Haar coefficients ``coarse`` + ``details`` (coarsest -> finest) as one value.

    Supports ``+``, ``-``, unary ``-`` and multiplication by a scalar, which act
    coefficient-wise (the transform is linear, so these commute with
    :meth:`to_tensor`).  ``Pyramid.from_tensor(x, levels, ndim).to_tensor()``
    reconstructs ``x`` up to rounding.
    """

    coarse: Tensor
    details: Tuple[Tensor, ...]
    ndim: int = 2

    def __post_init__(self):
        object.__setattr__(self, "details", tuple(self.details))
        _check_ndim(self.ndim)
        _check_idwt(self.coarse, self.details, self.ndim)

    @classmethod
    def from_tensor(cls, x: Tensor, levels: int, ndim: int = 2) -> "Pyramid":
        coarse, details = dwt(x, levels, ndim)
        return cls(coarse, tuple(details), ndim)

    def to_tensor(self) -> Tensor:
        return idwt(self.coarse, list(self.details), self.ndim)

    @property
    def levels(self) -> int:
        return len(self.details)

    def _zip(self, other: "Pyramid", op) -> "Pyramid":
        if not isinstance(other, Pyramid):
            return NotImplemented
        if other.ndim != self.ndim or other.levels != self.levels:
            raise ValueError(
                f"pyramids do not match: ndim {self.ndim} vs {other.ndim}, "
                f"levels {self.levels} vs {other.levels}"
            )
        return Pyramid(
            op(self.coarse, other.coarse),
            tuple(op(a, b) for a, b in zip(self.details, other.details)),
            self.ndim,
        )

    def __add__(self, other):
        return self._zip(other, torch.add)

    def __sub__(self, other):
        return self._zip(other, torch.sub)

    def __neg__(self):
        return Pyramid(-self.coarse, tuple(-d for d in self.details), self.ndim)

    def __mul__(self, a):
        if isinstance(a, Pyramid):
            return NotImplemented
        return Pyramid(self.coarse * a, tuple(d * a for d in self.details), self.ndim)

    __rmul__ = __mul__

    def norm_squared(self) -> Tensor:
        """Sum of squares of all coefficients (= ``||x||²`` by Parseval)."""
        total = self.coarse.square().sum()
        for d in self.details:
            total = total + d.square().sum()
        return total
