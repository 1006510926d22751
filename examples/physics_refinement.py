"""Physics-based refinement of an amortized posterior for observations off its training distribution.

    python examples/physics_refinement.py            # the full run (docs/examples/physics_refinement.md)
    python examples/physics_refinement.py --quick    # a few steps (CI)

The imaging posterior of ``imaging_posterior.py`` (deblurring 32x32 phantoms, a conditional
Glow behind a convolutional summary network) is trained online on observations with noise
0.05. Then it meets observations whose noise is ``--shifted-noise`` (0.15 by default):
off its training distribution, its posterior is overconfident and its mean noisier. For
each such observation, ``ij.refine_posterior`` keeps the trained network fixed and learns
an elementwise affine map of its latent by reverse KL against the physics (the blur and
the true noise level): the data misfit of the mapped samples plus the standard normal on
the corrected latent (Siahkoohi et al., 2023). Before and after: PSNR of the posterior
mean, the share of true pixels inside the 90% credible intervals, and pictures.

Writes ``examples/out/physics_refinement.png``; the full run also writes its numbers to
``benchmarks/results/physics_refinement.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from _digits import OUT, save_grid
from _phantoms import BLUR, NOISE, SIZE, blur, phantoms, psnr
from imaging_posterior import build_model, simulate

import invjax as ij

RESULTS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def interval_coverage(draws, truth, level=0.9):
    """The share of true pixels inside the central ``level`` credible interval of ``draws`` (S, ...)."""
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return float(np.mean((truth >= lo) & (truth <= hi)))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1500, help="training steps of the amortized posterior")
    p.add_argument("--observations", type=int, default=8, help="shifted observations to refine for")
    p.add_argument("--shift", choices=("blur", "noise"), default="blur",
                   help="what differs in the shifted observations: a wider blur (--shifted-blur) or more noise "
                        "(--shifted-noise)")
    p.add_argument("--shifted-blur", type=float, default=2.5, help="the blur (pixels) of the shifted observations")
    p.add_argument("--shifted-noise", type=float, default=0.15, help="the noise of the shifted observations")
    p.add_argument("--model", type=pathlib.Path, help="load the trained posterior from this file if it exists, "
                                                       "else train it and save it there")
    p.add_argument("--refine-steps", type=int, default=300)
    p.add_argument("--refine-rate", type=float, default=2e-2, help="Adam's learning rate (cosine decay) in refinement")
    p.add_argument("--draws", type=int, default=200, help="posterior draws per observation")
    p.add_argument("--quick", action="store_true", help="10 training steps, depth 1, 2 observations, 5 refinement "
                                                        "steps (CI)")
    args = p.parse_args()
    depth, hidden = 4, 32
    if args.quick:
        args.steps, args.observations, args.refine_steps, args.draws = 10, 2, 5, 20
        depth, hidden = 1, 8
    start = time.perf_counter()
    k_model, k_summary, k_fit, k_test, k_noise, k_post, k_refine = jr.split(jr.key(0), 7)

    if args.model is not None and args.model.exists():
        model = ij.load(args.model)
        print(f"loaded the trained posterior from {args.model}")
    else:
        model = build_model(k_model, k_summary, depth=depth, hidden=hidden)
        optimizer = optax.chain(optax.clip_by_global_norm(10.0),
                                optax.adam(optax.warmup_cosine_decay_schedule(0.0, 1e-3, 100, max(args.steps, 101))))
        model, _ = ij.fit(model, jax.jit(simulate, static_argnums=1), key=k_fit, steps=args.steps, batch_size=32,
                          optimizer=optimizer, progress=False)
        print(f"trained {args.steps} steps on blur {BLUR}, noise {NOISE} in {time.perf_counter() - start:.0f} s")
        if args.model is not None:
            ij.save(args.model, model)

    # The shifted observations and their physics: the operator and noise level that made them.
    width, noise = (args.shifted_blur, NOISE) if args.shift == "blur" else (BLUR, args.shifted_noise)
    operator = lambda x: blur(x, width)
    truth = phantoms(k_test, args.observations)
    y = operator(truth) + noise * jr.normal(k_noise, truth.shape)
    sample = eqx.filter_jit(lambda m, key, cond: m.sample(key, (args.draws, 1, SIZE, SIZE), cond))
    unit = lambda v: np.asarray(v)[..., 0, :, :] + 0.5
    rows = {"before": [], "after": []}
    pictures = {"mean before": [], "mean after": [], "std before": [], "std after": []}
    for i in range(args.observations):
        y_i = y[i:i + 1]
        cond = jnp.repeat(y_i, args.draws, axis=0)
        before = np.asarray(sample(model, jr.fold_in(k_post, i), cond))

        def log_likelihood(theta, y_i=y_i):  # the physics of the shifted observation
            return -0.5 * jnp.sum((operator(theta) - y_i) ** 2, axis=(1, 2, 3)) / noise**2

        refined, losses = ij.refine_posterior(model, y_i, log_likelihood, key=jr.fold_in(k_refine, i),
                                              steps=args.refine_steps, batch_size=8, shape=(1, SIZE, SIZE),
                                              optimizer=optax.adam(optax.cosine_decay_schedule(args.refine_rate, args.refine_steps)))
        after = np.asarray(refined.sample(jr.fold_in(k_post, 1000 + i), args.draws))
        for name, draws in (("before", before), ("after", after)):
            rows[name].append((psnr(unit(draws.mean(0)[None]), unit(truth[i:i + 1])),
                               interval_coverage(draws, np.asarray(truth[i])), float(draws.std(0).mean())))
            pictures[f"mean {name}"].append(unit(draws.mean(0)[None])[0])
            pictures[f"std {name}"].append(draws.std(0)[0])
        print(f"observation {i}: PSNR {rows['before'][-1][0]:.2f} -> {rows['after'][-1][0]:.2f} dB, 90% interval "
              f"coverage {rows['before'][-1][1]:.3f} -> {rows['after'][-1][1]:.3f}, objective {losses[0]:.0f} -> "
              f"{losses[-1]:.0f}", flush=True)

    summary = {name: dict(zip(("psnr_db", "coverage_90", "mean_std"), np.mean(r, axis=0).tolist(), strict=True))
               for name, r in rows.items()}
    observation = psnr(unit(y), unit(truth))
    shift = f"blur {width}, noise {noise}; trained on blur {BLUR}, noise {NOISE}"
    print(f"mean over {args.observations} observations ({shift}): "
          f"observation PSNR {observation:.2f} dB; posterior mean PSNR {summary['before']['psnr_db']:.2f} -> "
          f"{summary['after']['psnr_db']:.2f} dB; 90% interval coverage {summary['before']['coverage_90']:.3f} -> "
          f"{summary['after']['coverage_90']:.3f}; mean std {summary['before']['mean_std']:.3f} -> "
          f"{summary['after']['mean_std']:.3f}")
    std_max = max(np.max(s) for s in pictures["std before"] + pictures["std after"])
    show = min(args.observations, 6)
    grid = [unit(truth[:show]), unit(y[:show])] + [np.stack(pictures[k][:show]) for k in ("mean before", "mean after")]
    grid += [np.stack(pictures[k][:show]) / std_max for k in ("std before", "std after")]
    save_grid([np.clip(r, 0, 1) for r in grid], OUT / "physics_refinement.png",
              f"Shifted observations ({shift}): before and after refinement",
              ["truth", "observation", "mean, amortized", "mean, refined", "std, amortized", "std, refined"])
    total = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"wrote {OUT / 'physics_refinement.png'}; total {total:.0f} s, peak resident memory {peak:.2f} GiB")
    if not args.quick:
        write_results(args, shift, summary, observation, total)


def write_results(args, shift, summary, observation, total):
    command = "python examples/physics_refinement.py"
    config = {k: str(v) if isinstance(v, pathlib.Path) else v for k, v in vars(args).items()}
    data = {"command": command, "config": config, "shift": shift, "observation_psnr_db": observation,
            "summary": summary, "total_s": total}
    (RESULTS / "physics_refinement.json").write_text(json.dumps(data, indent=1) + "\n")
    lines = [f"{args.observations} shifted observations ({shift}; {args.steps} training steps), each refined for "
             f"{args.refine_steps} steps; `{command}` ({total:.0f} s on this 2-core CPU). Observation PSNR "
             f"{observation:.2f} dB.", "",
             "| posterior | mean PSNR (dB) | true pixels in the 90% intervals | mean std |", "|---|---:|---:|---:|"]
    for name, label in (("before", "amortized"), ("after", "refined by the physics")):
        s = summary[name]
        lines.append(f"| {label} | {s['psnr_db']:.2f} | {s['coverage_90']:.3f} | {s['mean_std']:.3f} |")
    (RESULTS / "physics_refinement.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
