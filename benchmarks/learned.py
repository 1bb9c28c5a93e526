"""Learned models on scikit-learn's 8×8 digits: HVAE against multi-resolution and plain diffusion, and the
samplers' error against NFE on the learned diffusion models.

    python -m benchmarks.learned [--quick] [--out DIR] [--budget SECONDS] [--seed N] [--starts N]

1. **Equal parameters, equal budget.** Four models are trained one after the other, each for ``--budget``
   seconds of the process's CPU time (``--budget-clock cpu``: the budget does not depend on what else the
   machine is doing): the default HVAE (139,217 parameters on digits) and three diffusion U-Nets of width 8
   with 3 blocks per resolution (133,769 parameters, −3.9 %) under the ``scalar`` (plain EDM), ``perband`` and
   ``pointmass`` noisings. Reported: test bits/dim over the 64 real pixels with its standard error over test
   images (the HVAE: its negative ELBO, one posterior draw per image; a diffusion: the uniform-dequantisation
   bound by the probability-flow ODE, exact trace, dopri5 at rtol = atol = 1e-5), the Fréchet distance of
   samples in the features of the cached digits classifier with its train-against-test floor, and sampling
   time per image (diffusion: the run's default sampler at ``NFE_COMPARE`` evaluations).
2. **Error against NFE.** From the same starts, every ODE sampler at 5, 10, 20, 40 NFE against the converged
   flow: for the plain and per-band models the probability-flow ODE by dopri5 at rtol = atol = 1e-5 in float64
   down to the samplers' last noise level (σ̂ = 0.002) followed by the same final denoising; for the
   point-mass model, whose flow restarts at each activation, the default point-mass sampler at 640 NFE. Error:
   RMS per pixel in [-1, 1]. k-diffusion's ODE samplers run on the plain model (they cannot express per-band
   schedules).

Writes ``DIR/learned.json``, ``DIR/learned.md`` (also printed) and ``DIR/learned.png`` (error against NFE),
and keeps the four runs under ``DIR/runs``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch

from mrdiffusion._io import atomic_write

NFE_COMPARE = 20
NFES = (5, 10, 20, 40)
DIFFUSION_SIZE = ["--width", "8", "--blocks", "3"]
MODELS = {  # name -> (run folder, train arguments beyond --out/--budget/--seed)
    "HVAE (VDVAE step)": ("hvae", []),
    "plain diffusion (scalar)": ("scalar", ["--model", "diffusion", "--noising", "scalar", *DIFFUSION_SIZE]),
    "per-band diffusion": ("perband", ["--model", "diffusion", "--noising", "perband", *DIFFUSION_SIZE]),
    "multi-resolution diffusion (pointmass)": ("pointmass", ["--model", "diffusion", "--noising", "pointmass",
                                                             *DIFFUSION_SIZE]),
}


def _train(name, folder, budget, seed, log):
    from mrdiffusion.cli import main

    argv = ["train", "--data", "digits", "--out", folder, "--budget-seconds", str(budget), "--budget-clock", "cpu",
            "--steps", "1000000", "--seed", str(seed), "--no-progress", *MODELS[name][1]]
    if os.path.exists(os.path.join(folder, "checkpoint.pt")):
        argv.append("--resume")  # an interrupted study continues where it stopped; a finished run is kept as is
        with open(os.path.join(folder, "summary.json")) as f:
            if json.load(f).get("cpu_seconds", 0) >= budget:
                log(f"{name}: kept the finished run in {folder}")
                return
    log(f"{name}: training for {budget} s of CPU time in {folder}")
    code = main(argv)
    if code != 0:
        raise RuntimeError(f"training {name} exited with {code}")


def _hvae_row(folder, data, test, n_samples, seed, classifier):
    """Test bits/dim (negative ELBO per image) with its SE, FD of prior samples, seconds per sample."""
    from mrdiffusion.hvae.checkpoint import model_from_checkpoint
    from mrdiffusion.metrics import frechet_distance

    model, ckpt = model_from_checkpoint(os.path.join(folder, "checkpoint.pt"))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        nll, _, _ = model.elbo(test, generator=g)
    bpd = nll.double() / (model.config.data_dims * math.log(2.0))
    start = time.perf_counter()
    images, _ = model.sample(n_samples, generator=torch.Generator().manual_seed(seed + 1))
    seconds = (time.perf_counter() - start) / n_samples
    return {"parameters": sum(p.numel() for p in model.parameters()), "steps": int(ckpt["step"]),
            "bits_per_dim": float(bpd.mean()), "bits_per_dim_se": float(bpd.std() / math.sqrt(bpd.numel())),
            "fd": _fd(classifier, images, data, frechet_distance), "sample_seconds_per_image": seconds}


def _fd(classifier, samples, data, frechet_distance):
    n = min(samples.shape[0], data.test.shape[0])
    return frechet_distance(classifier.features(samples[:n]), classifier.features(data.test[:n]))


def _diffusion_row(folder, data, n_samples, seed, n_test):
    import mrdiffusion
    from mrdiffusion.diffusion.cli import default_solver, draw
    from mrdiffusion.diffusion.model import data_to_images
    from mrdiffusion.metrics import evaluate

    run = mrdiffusion.load(folder)
    solver = default_solver(run)
    levels = run.model.config.grey_levels

    def draw_images(n, s):
        with torch.no_grad():
            x, info = draw(run, n, nfe=NFE_COMPARE, solver=solver, seed=s)
        return data_to_images(run.layout.unpack(x.float()), levels), info["nfe"]

    out = evaluate(run.denoiser, run.noising, data, n_test=n_test, n_samples=n_samples, solver=solver,
                   nfe=NFE_COMPARE, trace="exact", dtype=torch.float32, seed=seed, draw=draw_images)
    out["parameters"] = sum(p.numel() for p in run.model.parameters())
    out["steps"] = int(run.checkpoint["step"])
    return out


# ----------------------------------------------------------------------------- error against NFE


def _samplers(pointmass):
    from mrdiffusion.sampling import DEFAULT_SOLVER, DPMSolverPP2M, EDMEuler, EDMHeun, ExponentialAdams

    ours = {"ExponentialAdams(3) data": ExponentialAdams(3), "ExponentialAdams(2) data": ExponentialAdams(2),
            "DPMSolverPP2M": DPMSolverPP2M()}
    if not pointmass:
        ours = {f"default {DEFAULT_SOLVER!r}": DEFAULT_SOLVER, **ours, "EDMHeun": EDMHeun(), "EDMEuler": EDMEuler()}
    return ours


def _reference(run, x_T, rtol=1e-5):
    """The converged probability-flow solution from ``x_T``: dopri5 in float64 down to σ̂ = 0.002, then D."""
    import torchdiffeq

    from mrdiffusion.sampling import DEFAULT_GRID, DenoisingProblem

    D = run.denoiser
    nz = run.noising
    times = DEFAULT_GRID(2, nz.T, 0.0, nz)
    t_min = times[-2]  # the last nonzero time of the default grid: σ̂ = sigma_min
    D64 = lambda x, t: D(x.float(), t).double()  # noqa: E731 - the network runs in float32
    prob = DenoisingProblem(D64, nz, [nz.T, t_min], x_T.double(), False)
    u_end = nz.T - t_min
    xs = torchdiffeq.odeint(lambda u, x: prob.drift(float(u), x), x_T.double(),
                            torch.tensor([0.0, u_end], dtype=torch.float64), method="dopri5", rtol=rtol, atol=rtol)
    return D64(xs[-1], t_min)


def nfe_study(folder, n_starts, seed, log, kdiffusion=False):
    """``[{sampler, nfe, rms}]`` of one learned run against its converged flow from ``n_starts`` starts."""
    import mrdiffusion
    from mrdiffusion.diffusion.cli import draw

    run = mrdiffusion.load(folder)
    pointmass = bool(run.activation_times)
    x_T = run.prior(n_starts, seed=seed)
    unpack = run.layout.unpack
    with torch.no_grad():
        if pointmass:
            from mrdiffusion.sampling import ExponentialAdams

            ref = draw(run, n_starts, nfe=640, solver=ExponentialAdams(3), seed=seed)[0].double()
            ref_name = "ExponentialAdams(3) data, 640 NFE"
        else:
            ref = _reference(run, x_T)
            ref_name = "dopri5, rtol = atol = 1e-5, float64"
    rows = []
    for name, solver in _samplers(pointmass).items():
        for nfe in NFES:
            nfe_used = nfe - (nfe - solver.final_evals) % solver.evals_per_step
            with torch.no_grad():
                x, info = draw(run, n_starts, nfe=nfe_used, solver=solver, seed=seed)
            rms = float((unpack(x.double()) - unpack(ref)).pow(2).mean().sqrt())
            rows.append({"sampler": name, "nfe": int(info["nfe"]), "rms": rms})
            log(f"  {name} @ {info['nfe']} NFE: RMS {rms:.3g}")
    if kdiffusion and not pointmass:
        rows += _kdiffusion_rows(run, x_T, ref, unpack, log)
    return {"reference": ref_name, "rows": rows}


def _kdiffusion_rows(run, x_T, ref, unpack, log):
    """k-diffusion's ODE samplers on the plain model, on its Karras grid to σ = 0.002, then one denoising."""
    from ._kdiffusion import load_sampling

    kd, why = load_sampling()
    if kd is None:
        log(f"  k-diffusion skipped: {why}")
        return [{"sampler": "k-diffusion", "nfe": None, "rms": None, "note": why}]
    D = run.denoiser

    def model(x, sigma):  # k-diffusion passes one σ per sample; the plain model's time is σ
        return D(x, float(sigma.reshape(-1)[0]))

    # k-diffusion's grids end at σ = 0 and its last step is then the final denoising: with n steps, the
    # one-evaluation samplers use n evaluations, Heun and DPM-2 2n - 1 (their last step is Euler)
    per_step = {"euler": 1, "heun": 2, "lms": 1, "dpmpp_2m": 1, "dpm_2": 2}
    rows = []
    for name, e in per_step.items():
        fn = getattr(kd, f"sample_{name}")
        for nfe in NFES:
            steps = nfe if e == 1 else (nfe + 1) // 2
            used = steps if e == 1 else 2 * steps - 1
            sigmas = kd.get_sigmas_karras(steps, 0.002, float(run.noising.T), rho=7.0)
            with torch.no_grad():
                x = fn(model, x_T.clone(), sigmas, disable=True)
            rms = float((unpack(x.double()) - unpack(ref)).pow(2).mean().sqrt())
            rows.append({"sampler": f"k-diffusion sample_{name}", "nfe": used, "rms": rms})
            log(f"  k-diffusion {name} @ {used} NFE: RMS {rms:.3g}")
    return rows


# ----------------------------------------------------------------------------- the study


def run(out, *, budget=120.0, seed=0, n_samples=1000, n_starts=1024, n_test=None, log=None):
    from mrdiffusion.data import load_dataset
    from mrdiffusion.metrics import dataset_labels, frechet_distance, load_or_train_classifier

    log = log or (lambda msg: print(f"[learned] {msg}", file=sys.stderr))
    data = load_dataset("digits")
    test = data.test if n_test is None else data.test[:n_test]
    compare = {}
    folders = {name: os.path.join(out, "runs", folder) for name, (folder, _) in MODELS.items()}
    for name, folder in folders.items():
        _train(name, folder, budget, seed, log)
    ytr, yte = dataset_labels(data)
    clf = load_or_train_classifier(data.train, ytr, data.test, yte, data.levels, name="digits", log=log)
    floor = _fd(clf, data.train[:n_samples], data, frechet_distance)
    for name, folder in folders.items():
        log(f"{name}: evaluating")
        if name.startswith("HVAE"):
            row = _hvae_row(folder, data, test, n_samples, seed, clf)
        else:
            row = _diffusion_row(folder, data, n_samples, seed, n_test)
        row["fd_floor"] = floor
        compare[name] = row
    nfe = {}
    for name, folder in folders.items():
        if name.startswith("HVAE"):
            continue
        log(f"{name}: error against NFE from {n_starts} starts")
        nfe[name] = nfe_study(folder, n_starts, seed, log, kdiffusion=name.startswith("plain"))
    result = {"meta": {"budget_cpu_seconds": budget, "seed": seed, "n_samples": n_samples, "n_starts": n_starts,
                       "nfe_compare": NFE_COMPARE, "classifier_acc": clf.accuracy, "classifier_hash": clf.hash,
                       "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")},
              "compare": compare, "nfe": nfe}
    os.makedirs(out, exist_ok=True)
    atomic_write(os.path.join(out, "learned.json"), json.dumps(result, indent=1))
    md = markdown(result)
    atomic_write(os.path.join(out, "learned.md"), md)
    plot(result, os.path.join(out, "learned.png"))
    return result, md


def markdown(result):
    m = result["meta"]
    lines = [f"Digits (8×8, 17 grey levels), {m['budget_cpu_seconds']:g} s of CPU time of training each, seed "
             f"{m['seed']}; FD in the digits classifier's features (test accuracy {m['classifier_acc']:.3f}), "
             f"{m['n_samples']} samples; diffusion samples at {m['nfe_compare']} NFE with the run's default "
             f"sampler.", "",
             "| model | parameters | steps | test bits/dim | FD (floor) | s / sample |", "|---|---|---|---|---|---|"]
    for name, r in result["compare"].items():
        fd = "—" if r["fd"] is None else f"{r['fd']:.3g} ({r['fd_floor']:.3g})"
        lines.append(f"| {name} | {r['parameters']:,} | {r['steps']:,} | {r['bits_per_dim']:.3f} ± "
                     f"{r['bits_per_dim_se']:.3f} | {fd} | {r['sample_seconds_per_image'] * 1e3:.2f} ms |")
    for name, study in result["nfe"].items():
        lines += ["", f"Error against NFE, {name} (RMS per pixel in [-1, 1] to {study['reference']}; "
                      f"{m['n_starts']} starts):", "", "| sampler | " + " | ".join(f"{n} NFE" for n in NFES) + " |",
                  "|---|" + "---|" * len(NFES)]
        by = {}
        for r in study["rows"]:
            by.setdefault(r["sampler"], []).append(r)
        for s, rs in by.items():
            cells = [f"{r['rms']:.3g} ({r['nfe']})" if r["rms"] is not None else r.get("note", "—") for r in rs]
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(result, path):
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    studies = result["nfe"]
    fig, axes = plt.subplots(1, len(studies), figsize=(5.5 * len(studies), 4.5), squeeze=False)
    for ax, (name, study) in zip(axes[0], studies.items()):
        by = {}
        for r in study["rows"]:
            if r["rms"] is not None:
                by.setdefault(r["sampler"], []).append((r["nfe"], r["rms"]))
        for s, pts in by.items():
            ax.loglog(*zip(*pts), marker="o", linestyle="--" if s.startswith("k-diffusion") else "-", label=s)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("model evaluations (NFE)")
        ax.set_ylabel("RMS per pixel to the converged flow")
        ax.legend(fontsize=6)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.learned", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="10 s of training each, 64 starts, 200 samples, 64 test "
                                                        "images (a smoke run for CI)")
    p.add_argument("--out", default=os.path.join("results", "learned"), help="output folder (default: %(default)s)")
    p.add_argument("--budget", type=float, default=120.0, help="CPU seconds of training per model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--starts", type=int, default=1024, help="starts of the error-against-NFE study")
    args = p.parse_args(argv)
    if not args.out:
        p.error("--out: expected a folder, got ''")
    if args.quick:
        result, md = run(args.out, budget=10.0, seed=args.seed, n_samples=200, n_starts=64, n_test=64)
    else:
        result, md = run(args.out, budget=args.budget, seed=args.seed, n_starts=args.starts)
    sys.stdout.write(md)
    return result


if __name__ == "__main__":
    main()
