"""Figures of the HVAE: image grids (matplotlib, Agg backend)."""

from __future__ import annotations

import math

__all__ = ["image_grid"]


def image_grid(images, levels, path, *, ncol=None, title=None, ax=None):
    """Save (or draw into ``ax``) a grid of ``(N, C, H, W)`` integer images; grey for one channel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.asarray(images, dtype=np.float64) / (levels - 1)
    n, c, h, w = x.shape
    ncol = ncol or int(math.ceil(math.sqrt(n)))
    nrow = int(math.ceil(n / ncol))
    canvas = np.full((nrow * (h + 1) + 1, ncol * (w + 1) + 1, c), 0.35)  # grey separators
    for i in range(n):
        r, q = divmod(i, ncol)
        canvas[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = x[i].transpose(1, 2, 0)
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(0.4 * ncol + 0.4, 0.4 * nrow + 0.6))
    ax.imshow(canvas[..., 0] if c == 1 else canvas, cmap="gray_r" if c == 1 else None, vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    if own:
        import io

        from .._io import atomic_write

        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120)
        plt.close(fig)
        atomic_write(path, buf.getvalue())
