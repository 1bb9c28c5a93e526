"""One process or many under ``torchrun``: rank, world size, device and the collectives we use.

``torchrun --nproc_per_node N`` sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``; :class:`Distributed` then joins the process group (gloo on
CPU, nccl on GPU, each rank on its ``LOCAL_RANK`` GPU). In a single process
every collective is a no-op, so calling code reads the same either way. Used
by the bench (cells sharded over ranks) and by HVAE training (DDP).
"""

from __future__ import annotations

import os

import torch

__all__ = ["Distributed", "world_size_from_env", "is_rank0_from_env"]


def world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_rank0_from_env() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


class Distributed:
    """Rank, world size, device and the collectives (no-ops in a single process).

    ``close()`` destroys the process group only if this object created it.
    """

    def __init__(self, device):
        self.world = world_size_from_env()
        self.rank, self.owned, self.dist = 0, False, None
        self.device = torch.device(device)
        if self.world <= 1:
            self.world = 1
            return
        import torch.distributed as dist

        self.dist = dist
        if self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(self.device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            self.owned = True
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def broadcast(self, obj):
        """``obj`` of rank 0, on every rank."""
        if self.dist is None:
            return obj
        box = [obj]
        self.dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather(self, obj):
        """The list of every rank's ``obj``, in rank order."""
        if self.dist is None:
            return [obj]
        out = [None] * self.world
        self.dist.all_gather_object(out, obj)
        return out

    def barrier(self):
        if self.dist is not None:
            self.dist.barrier()

    def close(self):
        if self.owned:
            self.dist.destroy_process_group()
