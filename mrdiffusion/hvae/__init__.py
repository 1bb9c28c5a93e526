"""Hierarchical VAEs as one discretisation of a multi-resolution SDE (docs/design.md §3).

- :class:`HVAE`, :class:`HVAEConfig` -- the U-Net HVAE whose top-down pass is a level
  schedule of learned :class:`TopDownSDE` run by :func:`solvers.integrate`
  (:mod:`.model`, :mod:`.sde`, :mod:`.topdown`);
- :mod:`.data` -- digits, a synthetic multi-resolution set, ``.npz`` / image folders;
- :mod:`.train` -- training with EMA, clipping, update skipping, atomic
  checkpoints, bit-exact resume and DistributedDataParallel;
- :mod:`.baseline` -- the independent per-pixel categorical baseline.

Example::

    import solvers
    from mrdiffusion.hvae import HVAE, HVAEConfig

    model = HVAE(HVAEConfig(), solver=solvers.TwoStepEuler())   # VDVAE-style
    loss_bits_per_dim, stats = model(x)                          # x: (B, 1, 8, 8) levels 0..16
    images, info = model.sample(64, solver=solvers.Heun(), steps=(2, 4, 6, 6), record=True)

Command line (also under ``torchrun --nproc_per_node N -m mrdiffusion.hvae train ...``)::

    mrdiffusion train --data digits --out runs/vdvae --steps 5000
    mrdiffusion train --data digits --out runs/shared --share resolution --time-embedding fourier
    mrdiffusion sample runs/shared --steps 2,4,6,6 --solver Heun
"""

from .model import HVAE, SUPPORTED_SOLVERS, HVAEConfig, Step
from .sde import DecayTopDownSDE, LatentDiffusion, TopDownSDE

__all__ = ["HVAE", "HVAEConfig", "Step", "SUPPORTED_SOLVERS", "TopDownSDE", "DecayTopDownSDE", "LatentDiffusion"]
