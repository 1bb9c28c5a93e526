"""Training of the HVAE: EMA, gradient clipping and skipping, atomic checkpoints, bit-exact resume, DDP.

Runs as one process or under ``torchrun --nproc_per_node N`` (environment
variables ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``): DistributedDataParallel with
gloo on CPU and nccl on GPU. The global batch of ``batch_size`` images is split
across the ranks, so a run's trajectory does not depend on how it is launched,
up to floating-point summation order.

Reproducibility. Everything random is a pure function of ``(seed, step,
rank)``: the data order (a permutation per epoch seeded by ``(seed, epoch)``)
and the posterior noise (a generator seeded by ``(seed, step, rank)`` each
step). A checkpoint therefore restores the run exactly by restoring weights,
EMA, optimizer and ``step``; ``--resume`` after an interruption repeats at most
the steps since the last checkpoint and ends bit-identical to an
uninterrupted run.

Interruption. The first Ctrl-C (SIGINT, or SIGTERM) lets the current step
finish, saves a checkpoint and raises :class:`TrainingInterrupted`; a second
Ctrl-C interrupts at once. Under ``torchrun`` every rank stops at the same step. ``log.jsonl`` holds each logged step once: a resume
cuts it back to the checkpoint's step before appending, and a fresh run (only
allowed where no checkpoint exists) starts a new log.

Update skipping (VDVAE practice). After the backward pass the gradient norm is
computed (and the gradient clipped to ``grad_clip``); an update whose norm is
not finite or exceeds ``skip_threshold`` is skipped and counted.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.distributed as dist

from .._dist import Distributed
from .._io import atomic_save, atomic_write
from .checkpoint import FORMAT, check_compatible, check_weights, load_checkpoint
from .data import Dataset, check_images, fingerprint
from .model import HVAE, HVAEConfig

__all__ = ["TrainConfig", "train", "evaluate", "batch_indices", "TrainingInterrupted"]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. ``skip_threshold <= 0`` skips only non-finite updates.

    ``budget_seconds`` stops a run after that much training time (summed over
    resumes), whatever ``steps`` says: wall-clock time, or with
    ``budget_clock="cpu"`` the CPU time of the (rank-0) process, which does not
    depend on how busy a shared machine is.
    """

    steps: int = 2000
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 50
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.9
    grad_clip: float = 100.0
    skip_threshold: float = 400.0
    ema_decay: float = 0.998
    ckpt_every: int = 250
    log_every: int = 10
    seed: int = 0
    budget_seconds: Optional[float] = None
    budget_clock: str = "wall"

    def __post_init__(self):
        for name, value in (("steps", self.steps), ("batch_size", self.batch_size), ("ckpt_every", self.ckpt_every),
                            ("log_every", self.log_every)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if not (self.lr > 0 and self.grad_clip > 0 and 0 <= self.ema_decay < 1):
            raise ValueError(f"lr, grad_clip: expected positive values and ema_decay in [0, 1); got lr={self.lr}, "
                             f"grad_clip={self.grad_clip}, ema_decay={self.ema_decay}")
        if self.budget_clock not in ("wall", "cpu"):
            raise ValueError(f"budget_clock: expected 'wall' or 'cpu', got {self.budget_clock!r}")
        if self.budget_seconds is not None and not (math.isfinite(self.budget_seconds) and self.budget_seconds > 0):
            raise ValueError(f"budget_seconds: expected a positive number or None, got {self.budget_seconds}")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"warmup: expected an int >= 0 (0: no warm-up), got {self.warmup!r}")

    def to_dict(self):
        return asdict(self)


def batch_indices(n, batch, seed, step):
    """Indices of the global batch of ``step``: epoch ``e`` is ``randperm(n)`` seeded by ``(seed, e)``."""
    per_epoch = n // batch
    epoch, pos = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return perm[pos * batch:(pos + 1) * batch], (epoch, pos)


def _noise_generator(seed, step, rank, device):
    g = torch.Generator(device=device)
    return g.manual_seed(((seed * 1_000_003 + step) * 1_024 + rank) % (2**63))


@torch.no_grad()
def evaluate(model, x, *, batch=None, seed=12345, solver=None, steps=None):
    """Mean negative ELBO on ``x`` in bits per real dimension (one posterior sample per image, seeded).

    The denominator is ``model.config.data_dims``: padding is never counted. ``batch`` (default: 500
    images, fewer when one batch's logits would pass 2^24 values — 64 for MNIST at 256 levels — as
    larger buffers cost more in page faults than they save)."""
    model.eval()
    c = model.config
    if batch is None:
        batch = max(1, min(500, 2**24 // (c.channels * c.levels * c.image_size**2)))
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    total = 0.0
    for i in range(0, x.shape[0], batch):
        xb = x[i:i + batch].to(device)
        nll, _, _ = model.elbo(xb, solver=solver, steps=steps, generator=g)
        total += float(nll.double().sum())
    return total / (x.shape[0] * model.config.data_dims * math.log(2.0))


def _setup_distributed(device):
    d = Distributed(device)
    return d.rank, d.world, d.device


def _validate(model_config, cfg, data, world, device):
    check_images(data.train, model_config, "training data")
    if data.test is not None and data.test.shape[0]:
        check_images(data.test, model_config, "test data")
    if cfg.batch_size % world:
        raise ValueError(f"batch_size: {cfg.batch_size} is not divisible by the {world} processes")
    if cfg.batch_size > data.train.shape[0]:
        raise ValueError(f"batch_size: {cfg.batch_size} exceeds the {data.train.shape[0]} training images")
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda requested but torch.cuda.is_available() is False")


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C after saving a checkpoint at ``step``."""

    def __init__(self, step, checkpoint):
        super().__init__(f"interrupted at step {step}; checkpoint {checkpoint}")
        self.step, self.checkpoint = step, checkpoint


class _StopRequest:
    """While active, SIGINT and SIGTERM only set ``requested``; a second SIGINT raises ``KeyboardInterrupt``.

    SIGTERM never escalates: under ``torchrun`` a Ctrl-C reaches the workers as
    SIGINT and then, from the agent, as SIGTERM, and the checkpoint must still
    be written.
    """

    def __init__(self):
        self.requested = False
        self._old = {}

    def _handle(self, signum, frame):
        import signal

        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def start(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def stop(self):
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}


def _open_log(path, resume_step):
    """``log.jsonl`` for appending: cut back to ``resume_step`` on a resume (``None``: a new log)."""
    if resume_step is None or not os.path.exists(path):
        return open(path, "w")
    kept = []
    with open(path) as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:  # a line torn by a hard kill
                continue
            if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] <= resume_step:
                kept.append(json.dumps(rec) + "\n")
    atomic_write(path, "".join(kept))
    return open(path, "a")


def _stats_line(stats):
    kls = "/".join(f"{float(v):.3f}" for k, v in stats.items() if k.startswith("kl"))
    return kls


def train(model_config: HVAEConfig, cfg: TrainConfig, data: Dataset, out_dir, *, resume=False, device="cpu",
          progress=True, solver=None, save_rank_weights=False, on_backward=None):
    """Train (or resume) and return a summary dict; ``out_dir`` gets ``checkpoint.pt``, ``log.jsonl``,
    ``summary.json``. All input checks raise ``ValueError`` before the first step.

    ``on_backward(step, model)`` (telemetry hook) is called after every backward pass, before
    clipping and the skip decision: the raw gradients are in ``model``'s parameters."""
    rank, world, device = _setup_distributed(device)
    _validate(model_config, cfg, data, world, device)
    ckpt_path = os.path.join(out_dir, "checkpoint.pt")
    data_fp = fingerprint(data.train)
    ckpt = None
    if resume:
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        check_compatible(ckpt, model_config, cfg, data_fp)
    elif os.path.exists(ckpt_path):
        raise ValueError(f"{ckpt_path} exists: pass resume=True (--resume) to continue it, or use another out_dir")
    os.makedirs(out_dir, exist_ok=True)

    torch.manual_seed(cfg.seed)
    model = HVAE(model_config, solver=solver).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                            weight_decay=cfg.weight_decay)
    step, skipped, skipped_nonfinite, elapsed, cpu = 0, 0, 0, 0.0, 0.0
    if ckpt is not None:
        for part, net in (("model", model), ("ema", ema)):
            check_weights(net, ckpt[part], ckpt_path, part)
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["optimizer"])
        step, skipped, skipped_nonfinite = ckpt["step"], ckpt["skipped"], ckpt["skipped_nonfinite"]
        elapsed, cpu = ckpt["elapsed"], ckpt["cpu_seconds"]
        torch.set_rng_state(ckpt["torch_rng"])
    net = model
    if world > 1:
        unused = any(n == 0 for n in model_config.dec_blocks)
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=unused)

    params = [p for p in model.parameters()]
    x_train = data.train
    per_rank = cfg.batch_size // world

    def checkpoint():
        if rank != 0:
            return
        atomic_save({
            "format": FORMAT, "model_config": model_config.to_dict(), "train_config": cfg.to_dict(),
            "data": {"name": data.name, "fingerprint": data_fp, "levels": data.levels},
            "step": step, "skipped": skipped, "skipped_nonfinite": skipped_nonfinite, "elapsed": elapsed,
            "cpu_seconds": cpu,
            "data_state": dict(zip(("epoch", "position"),
                                   batch_indices(x_train.shape[0], cfg.batch_size, cfg.seed, step)[1])),
            "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
            "torch_rng": torch.get_rng_state(), "world_size": world,
        }, ckpt_path)

    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc=f"train {model_config.solver}", dynamic_ncols=True)
    log = _open_log(os.path.join(out_dir, "log.jsonl"), step if resume else None) if rank == 0 else None
    last_ckpt = step
    t_start = time.monotonic() - elapsed
    cpu_start = time.process_time() - cpu
    model.train()
    interrupted = False
    request = _StopRequest().start()
    try:
        while step < cfg.steps:
            stop = request.requested
            if cfg.budget_seconds is not None:
                used = (time.process_time() - cpu_start if cfg.budget_clock == "cpu"
                        else time.monotonic() - t_start)
                stop = stop or used >= cfg.budget_seconds
            if world > 1:  # any rank's Ctrl-C, or rank 0's clock, stops every rank at the same step
                flags = torch.tensor([float(request.requested), float(stop and rank == 0)], device=device)
                dist.all_reduce(flags, op=dist.ReduceOp.MAX)
                stop = bool(flags.max().item())
            if stop:
                interrupted = request.requested or (world > 1 and bool(flags[0].item()))
                break
            idx, _ = batch_indices(x_train.shape[0], cfg.batch_size, cfg.seed, step)
            xb = x_train[idx[rank * per_rank:(rank + 1) * per_rank]].to(device)
            for group in opt.param_groups:
                group["lr"] = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup))
            loss, stats = net(xb, _noise_generator(cfg.seed, step, rank, device))
            loss_value = float(loss.detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if on_backward is not None:
                on_backward(step, model)
            gnorm = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
            finite = math.isfinite(gnorm)
            if not finite or (cfg.skip_threshold > 0 and gnorm > cfg.skip_threshold):
                skipped += 1
                skipped_nonfinite += not finite
            else:
                opt.step()
                decay = min(cfg.ema_decay, (1.0 + step) / (10.0 + step))  # short runs: warm EMA
                with torch.no_grad():
                    for pe, p in zip(ema.parameters(), params):
                        pe.lerp_(p, 1.0 - decay)
            step += 1
            elapsed = time.monotonic() - t_start
            cpu = time.process_time() - cpu_start
            if rank == 0 and (step % cfg.log_every == 0 or step == cfg.steps):
                rec = {"step": step, "loss": loss_value, "grad_norm": gnorm, "skipped": skipped,
                       "elapsed": round(elapsed, 3), "cpu_seconds": round(cpu, 3),
                       **{k: float(v) for k, v in stats.items()}}
                log.write(json.dumps(rec) + "\n")
                log.flush()
                if bar is not None:
                    bar.set_postfix_str(f"loss={loss_value:.3f} kl={_stats_line(stats)} "
                                        f"gnorm={gnorm:.2f} skips={skipped}")
            if bar is not None:
                bar.update(1)
            if step % cfg.ckpt_every == 0:
                checkpoint()
                last_ckpt = step
    finally:
        request.stop()
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
    if step != last_ckpt or not os.path.exists(ckpt_path):
        checkpoint()
    if interrupted:
        raise TrainingInterrupted(step, ckpt_path)
    if save_rank_weights:
        atomic_save(model.state_dict(), os.path.join(out_dir, f"rank{rank}_weights.pt"))
    summary = {"steps": step, "skipped": skipped, "skipped_nonfinite": skipped_nonfinite,
               "elapsed": elapsed, "cpu_seconds": cpu, "world_size": world, "parameters": model.num_parameters(),
               "images_per_second": step * cfg.batch_size / elapsed if elapsed > 0 else None,
               "dims_per_image": model_config.data_dims}
    if rank == 0 and data.test is not None and data.test.shape[0]:
        summary["test_bpd"] = evaluate(ema, data.test)
        summary["test_bpd_raw"] = evaluate(model, data.test)
    if rank == 0:
        atomic_write(os.path.join(out_dir, "summary.json"), json.dumps(summary, indent=2))
    if world > 1:
        dist.barrier()
    return summary
