"""Training of the multi-resolution diffusion model: AdamW, EMA, bf16 autocast on CUDA, checkpoints, DDP.

Shares the HVAE trainer's machinery (:mod:`mrdiffusion.hvae.train`): the data
order ``batch_indices`` (a permutation per epoch seeded by ``(seed, epoch)``),
the Ctrl-C handling (the first SIGINT/SIGTERM finishes the step, saves and
raises :class:`~mrdiffusion.hvae.train.TrainingInterrupted`), the log that a
resume cuts back, atomic checkpoints (:mod:`mrdiffusion._io`) and the process
group (:mod:`mrdiffusion._dist`: gloo on CPU, nccl on CUDA, under ``torchrun``).

Reproducibility: the dequantisation noise, the times and the Gaussian noise of
step ``s`` on rank ``r`` come from a generator seeded by ``(seed, s, r)``, so a
checkpoint (weights, EMA with its count, AdamW state, step) restores the run:
on CPU a resume is bit-identical to an uninterrupted run (tested); on CUDA it
agrees to round-off (cuDNN / bf16 kernels need not be deterministic; not
measured here, no GPU was available).

EMA: :class:`torch.optim.swa_utils.AveragedModel` with
``get_ema_multi_avg_fn``, updated after every optimiser step, with the decay
warmed up as the HVAE's, ``min(ema_decay, (1 + n)/(10 + n))`` after ``n``
updates: at ``ema_decay = 0.999`` a plain EMA still holds ~90 % of the initial
weights after 100 steps, which made the short CPU runs' EMA samples pure noise
while the raw weights already drew digits.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .._io import atomic_save, atomic_write
from ..hvae.data import fingerprint
from ..hvae.train import TrainingInterrupted, _open_log, _setup_distributed, _StopRequest, batch_indices
from .loss import dsm_loss
from .model import DiffusionConfig, DiffusionModel, images_to_data

__all__ = ["FORMAT", "DiffusionTrainConfig", "train", "load_checkpoint", "model_from_checkpoint", "run_metadata"]

FORMAT = "mrdiffusion.diffusion/1"

TRAJECTORY_FIELDS = ("batch_size", "lr", "warmup", "weight_decay", "beta1", "beta2", "grad_clip", "ema_decay",
                     "seed")


@dataclass(frozen=True)
class DiffusionTrainConfig:
    """Optimisation settings (AdamW with a linear warm-up, gradient clipping, EMA)."""

    steps: int = 20000
    batch_size: int = 128
    lr: float = 1e-3
    warmup: int = 200
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    ckpt_every: int = 500
    log_every: int = 10
    seed: int = 0
    budget_seconds: Optional[float] = None
    budget_clock: str = "wall"

    def __post_init__(self):
        for name in ("steps", "batch_size", "ckpt_every", "log_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive int, got {getattr(self, name)!r}")
        if not (self.lr > 0 and self.grad_clip > 0 and 0 <= self.ema_decay < 1):
            raise ValueError(f"lr, grad_clip, ema_decay: expected lr > 0, grad_clip > 0, ema_decay in [0, 1); got "
                             f"{self.lr}, {self.grad_clip}, {self.ema_decay}")
        if self.budget_clock not in ("wall", "cpu"):
            raise ValueError(f"budget_clock: expected 'wall' or 'cpu', got {self.budget_clock!r}")

    def to_dict(self):
        return asdict(self)


def _git_hash():
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run_metadata(device):
    """Versions, git commit, device and host of a run (stored in the checkpoint and ``run.json``)."""
    from .. import __version__

    dev = torch.device(device)
    return {"mrdiffusion": __version__, "torch": str(torch.__version__), "python": platform.python_version(),
            "git": _git_hash(), "device": str(dev),
            "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
            "host": platform.node(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def load_checkpoint(path, map_location="cpu"):
    """A diffusion checkpoint, or ``ValueError`` naming the file and what is wrong."""
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint: {path!r} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(f"checkpoint: {path!r} could not be read ({type(err).__name__}: {err})") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"checkpoint: {path!r} is not an mrdiffusion diffusion checkpoint (format {FORMAT})")
    return ckpt


def model_from_checkpoint(path, *, ema=True, device="cpu"):
    """``(model, ckpt)``: the EMA (default) or raw weights of a checkpoint, in eval mode."""
    ckpt = load_checkpoint(path, map_location=device)
    model = DiffusionModel(DiffusionConfig.from_dict(ckpt["model_config"])).to(device)
    if ema:
        state = {k[len("module."):]: v for k, v in ckpt["ema"].items() if k.startswith("module.")}
    else:
        state = ckpt["model"]
    model.load_state_dict(state)
    return model.eval(), ckpt


def warm_ema(decay):
    """``multi_avg_fn`` for :class:`AveragedModel`: ``get_ema_multi_avg_fn`` at decay ``min(decay, (1+n)/(10+n))``."""

    def update(ema_params, params, num_averaged):
        n = int(num_averaged)
        get_ema_multi_avg_fn(min(decay, (1.0 + n) / (10.0 + n)))(ema_params, params, num_averaged)

    return update


def _generator(seed, step, rank, device):
    g = torch.Generator(device=device)
    return g.manual_seed(((seed * 1_000_003 + step) * 1_024 + rank + 7) % (2**63))


def _check_resume(ckpt, config, cfg, data_fp):
    problems = []
    if ckpt["model_config"] != config.to_dict():
        problems.append("model or noising configuration differs")
    for k in TRAJECTORY_FIELDS:
        if ckpt["train_config"].get(k) != getattr(cfg, k):
            problems.append(f"{k}: checkpoint {ckpt['train_config'].get(k)!r} vs now {getattr(cfg, k)!r}")
    if ckpt["data"]["fingerprint"] != data_fp:
        problems.append("the training data differ")
    if problems:
        raise ValueError("checkpoint was written by another configuration: " + "; ".join(problems))


def train(config: DiffusionConfig, cfg: DiffusionTrainConfig, data, out_dir, *, resume=False, device="cpu",
          progress=True, announce=print):
    """Train (or resume) and return a summary dict; ``out_dir`` gets ``checkpoint.pt``, ``log.jsonl``,
    ``run.json``, ``summary.json``. Input checks raise ``ValueError`` before the first step."""
    rank, world, device = _setup_distributed(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device: cuda requested but torch.cuda.is_available() is False")
    if cfg.batch_size % world:
        raise ValueError(f"--batch-size: {cfg.batch_size} is not divisible by the {world} processes")
    if cfg.batch_size > data.train.shape[0]:
        raise ValueError(f"--batch-size: {cfg.batch_size} exceeds the {data.train.shape[0]} training images")
    ckpt_path = os.path.join(out_dir, "checkpoint.pt")
    data_fp = fingerprint(data.train)
    ckpt = None
    if resume:
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        _check_resume(ckpt, config, cfg, data_fp)
    elif os.path.exists(ckpt_path):
        raise ValueError(f"{ckpt_path} exists: pass --resume to continue it, or use another --out")
    os.makedirs(out_dir, exist_ok=True)

    torch.manual_seed(cfg.seed)
    model = DiffusionModel(config).to(device)
    ema = AveragedModel(model, multi_avg_fn=warm_ema(cfg.ema_decay), use_buffers=True)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                            weight_decay=cfg.weight_decay)
    step, elapsed, cpu = 0, 0.0, 0.0
    meta = ckpt["metadata"] if ckpt is not None else run_metadata(device)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["optimizer"])
        step, elapsed, cpu = ckpt["step"], ckpt["elapsed"], ckpt["cpu_seconds"]
        torch.set_rng_state(ckpt["torch_rng"])
    if rank == 0 and announce is not None:
        announce(model.describe() + f"; batch {cfg.batch_size} over {world} process(es) on {device}")
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    autocast = device.type == "cuda"
    x_train = data.train
    per_rank = cfg.batch_size // world
    L = config.grey_levels
    layout = model.layout

    def checkpoint():
        if rank != 0:
            return
        atomic_save({"format": FORMAT, "kind": "diffusion", "model_config": config.to_dict(),
                     "train_config": cfg.to_dict(),
                     "data": {"name": data.name, "fingerprint": data_fp, "levels": data.levels},
                     "step": step, "elapsed": elapsed, "cpu_seconds": cpu, "metadata": meta,
                     "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
                     "torch_rng": torch.get_rng_state(), "world_size": world}, ckpt_path)

    if rank == 0:
        atomic_write(os.path.join(out_dir, "run.json"), json.dumps({**meta, "model_config": config.to_dict(),
                                                                    "train_config": cfg.to_dict(),
                                                                    "world_size": world}, indent=2))
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc=f"train diffusion/{config.family.name}", dynamic_ncols=True)
    log = _open_log(os.path.join(out_dir, "log.jsonl"), step if resume else None) if rank == 0 else None
    last_ckpt, recent = step, []
    t_start = time.monotonic() - elapsed
    cpu_start = time.process_time() - cpu
    model.train()
    interrupted = False
    request = _StopRequest().start()
    rate_t, rate_step = time.monotonic(), step
    try:
        while step < cfg.steps:
            stop = request.requested
            if cfg.budget_seconds is not None:
                used = (time.process_time() - cpu_start if cfg.budget_clock == "cpu"
                        else time.monotonic() - t_start)
                stop = stop or used >= cfg.budget_seconds
            if world > 1:
                flags = torch.tensor([float(request.requested), float(stop and rank == 0)], device=device)
                dist.all_reduce(flags, op=dist.ReduceOp.MAX)
                stop = bool(flags.max().item())
            if stop:
                interrupted = request.requested or (world > 1 and bool(flags[0].item()))
                break
            idx, _ = batch_indices(x_train.shape[0], cfg.batch_size, cfg.seed, step)
            g = _generator(cfg.seed, step, rank, device)
            xb = x_train[idx[rank * per_rank:(rank + 1) * per_rank]].to(device)
            u = torch.rand(xb.shape, generator=g, device=device)
            x0 = layout.pack(images_to_data(xb, L, u))
            for group in opt.param_groups:
                group["lr"] = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup))
            loss, per_band = dsm_loss(net, x0, g, autocast=autocast)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
            opt.step()
            ema.update_parameters(model)
            step += 1
            loss_value = float(loss.detach())
            recent = (recent + [loss_value])[-100:]
            elapsed = time.monotonic() - t_start
            cpu = time.process_time() - cpu_start
            if rank == 0 and (step % cfg.log_every == 0 or step == cfg.steps):
                now = time.monotonic()
                ips = (step - rate_step) * cfg.batch_size / max(now - rate_t, 1e-9)
                rate_t, rate_step = now, step
                rec = {"step": step, "loss": loss_value, "grad_norm": gnorm, "images_per_s": round(ips, 1),
                       "elapsed": round(elapsed, 3), "cpu_seconds": round(cpu, 3),
                       "loss_band": [round(float(v), 5) for v in per_band]}
                log.write(json.dumps(rec) + "\n")
                log.flush()
                if bar is not None:
                    bar.set_postfix_str(f"loss={loss_value:.4f} img/s={ips:.0f}")
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
    summary = {"steps": step, "elapsed": elapsed, "cpu_seconds": cpu, "world_size": world,
               "parameters": model.num_parameters(), "noising": config.family.name,
               "loss_last100": sum(recent) / len(recent) if recent else None, "device": str(device)}
    if rank == 0:
        atomic_write(os.path.join(out_dir, "summary.json"), json.dumps(summary, indent=2))
    if world > 1:
        dist.barrier()
    return summary
