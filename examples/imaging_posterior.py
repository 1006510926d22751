"""An imaging posterior, trained online and checked for calibration: deblurring 32x32 phantoms.

    python examples/imaging_posterior.py            # the full run (docs/examples/imaging_posterior.md)
    python examples/imaging_posterior.py --quick    # a few steps and a small check (CI)

The inverse problem: ``y = blur(x) + 0.05 noise`` for random phantoms ``x`` (ellipses of
random sizes, angles and intensities, with a texture), made in JAX by a simulator. A
conditional Glow with a convolutional summary network in front (``ij.nets.Summarized``)
learns ``p(x | y)`` from fresh simulated pairs at every step (``ij.fit`` given the
simulator). On held-out pairs it draws posterior samples (one batched call for all of
them, ``invjax.diagnostics.posterior_draws``) and checks them: PSNR and SSIM of the
posterior mean, simulation-based calibration and coverage of region means and pixels,
posterior contraction. Writes ``examples/out/imaging_posterior.png`` (truth, observation,
samples, mean, std) and ``imaging_posterior_sbc.png``, ``..._coverage.png``,
``..._contraction.png``.
"""

from __future__ import annotations

import argparse
import resource
import time

import equinox as eqx
import jax
import jax.random as jr
import numpy as np
import optax
from _digits import OUT, save_grid
from _phantoms import NOISE, SIZE, blur, phantoms, psnr

import invjax as ij
from invjax import diagnostics as dx


def simulate(key, n):
    """``n`` pairs ``(x, y)``: a phantom and its blurred, noisy observation."""
    kx, kn = jr.split(key)
    x = phantoms(kx, n)
    return x, blur(x) + NOISE * jr.normal(kn, x.shape)


def summaries(v):
    """Scalars checked for calibration: the four quadrant means and four pixels, ``(..., 8)``."""
    h = SIZE // 2
    quads = [v[..., 0, :h, :h], v[..., 0, :h, h:], v[..., 0, h:, :h], v[..., 0, h:, h:]]
    means = [q.mean(axis=(-2, -1)) for q in quads]
    pixels = [v[..., 0, r, c] for r, c in ((8, 8), (8, 24), (16, 16), (24, 12))]
    return np.stack([np.asarray(a) for a in means + pixels], axis=-1)


NAMES = ["mean top-left", "mean top-right", "mean bottom-left", "mean bottom-right",
         "pixel (8, 8)", "pixel (8, 24)", "pixel (16, 16)", "pixel (24, 12)"]


def ssim(a, b):
    """Mean structural similarity of two batches of images in a unit range (7x7 windows)."""
    from scipy.ndimage import uniform_filter

    c1, c2 = 0.01**2, 0.03**2
    f = lambda v: uniform_filter(v, size=(1, 7, 7))
    ma, mb = f(a), f(b)
    va, vb, cov = f(a * a) - ma**2, f(b * b) - mb**2, f(a * b) - ma * mb
    return float(np.mean((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2))))


def build_model(key, summary_key, depth=4, hidden=32):
    """A conditional Glow on ``(B, 1, 32, 32)`` behind a convolutional summary network that
    maps one observation ``(1, 32, 32)`` to an 8-channel feature map (the condition)."""
    flow = ij.nets.Glow(1, levels=2, depth=depth, hidden=hidden, cond_channels=8, cond_spatial=True, key=key)
    k1, k2, k3 = jr.split(summary_key, 3)
    summary = eqx.nn.Sequential([
        eqx.nn.Conv2d(1, 16, 3, padding=1, key=k1), eqx.nn.Lambda(jax.nn.relu),
        eqx.nn.Conv2d(16, 16, 3, padding=1, key=k2), eqx.nn.Lambda(jax.nn.relu),
        eqx.nn.Conv2d(16, 8, 3, padding=1, key=k3),
    ])
    return ij.nets.Summarized(flow, summary)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--test", type=int, default=200, help="held-out pairs for the diagnostics")
    p.add_argument("--draws", type=int, default=99, help="posterior draws per held-out pair")
    p.add_argument("--checkpoint", default=None,
                   help="save training here every 250 steps and resume from it if it exists")
    p.add_argument("--quick", action="store_true", help="at most 30 steps, depth 1, hidden 8, 20 held-out pairs, "
                                                        "19 draws (CI)")
    args = p.parse_args()
    if args.quick:
        args.steps, args.depth, args.hidden, args.test, args.draws = min(args.steps, 30), 1, 8, 20, 19
    start = time.perf_counter()
    k_model, k_summary, k_fit, k_test, k_post = jr.split(jr.key(0), 5)

    model = build_model(k_model, k_summary, depth=args.depth, hidden=args.hidden)
    optimizer = optax.chain(optax.clip_by_global_norm(10.0),
                            optax.adam(optax.warmup_cosine_decay_schedule(0.0, 1e-3, 100, max(args.steps, 101))))
    model, history = ij.fit(model, jax.jit(simulate, static_argnums=1), key=k_fit, steps=args.steps,
                            batch_size=args.batch, optimizer=optimizer, progress=False,
                            checkpoint=args.checkpoint, checkpoint_every=250)
    trained = time.perf_counter() - start
    losses = history["train"]
    print(f"trained {args.steps} steps in {trained:.0f} s; loss (-log p(x|y)), last 100 steps: "
          f"{np.mean(losses[-100:]):.1f}")

    truth, y = simulate(k_test, args.test)
    sampling = time.perf_counter()
    # All held-out posteriors in one compiled call, 2000 samples per inverse pass.
    draws = np.asarray(dx.posterior_draws(model, y, args.draws, (1, SIZE, SIZE), key=k_post, batch_size=2000))
    print(f"{args.draws} draws for each of {args.test} observations in {time.perf_counter() - sampling:.1f} s")
    truth, y = np.asarray(truth), np.asarray(y)
    mean, std = draws.mean(axis=1), draws.std(axis=1)
    unit = lambda v: v[:, 0] + 0.5
    print(f"posterior mean vs truth: PSNR {psnr(unit(mean), unit(truth)):.2f} dB, SSIM "
          f"{ssim(unit(mean), unit(truth)):.3f} (observation: PSNR {psnr(unit(y), unit(truth)):.2f} dB, SSIM "
          f"{ssim(unit(y), unit(truth)):.3f}); mean posterior std {std.mean():.3f}")

    calibration = dx.sbc(draws, truth, confidence=0.95, summaries=summaries)
    coverage = dx.coverage(draws, truth, levels=(0.5, 0.8, 0.9, 0.95), summaries=summaries)
    prior = summaries(np.asarray(phantoms(jr.key(1), 2000))).var(axis=0)
    contraction = dx.contraction(draws, truth, prior, summaries=summaries)
    print(f"SBC ({len(NAMES)} quantities, 95% band): {'calibrated' if calibration['calibrated'] else 'miscalibrated'}"
          f" ({int(calibration['outside'].sum())} outside)")
    levels = ", ".join(f"{lv:.2f}: {ob:.3f}" for lv, ob in zip(coverage["levels"], coverage["observed"].mean(1),
                                                               strict=True))
    print(f"coverage (level: observed, mean over quantities): {levels}")
    print(f"contraction (mean over pairs): {np.round(contraction['contraction'].mean(0), 2).tolist()}")

    show = 6 if args.test >= 6 else args.test
    rows = [unit(truth[:show]), unit(y[:show])] + [unit(draws[:show, k]) for k in range(3)]
    rows += [unit(mean[:show]), std[:show, 0] / std[:show].max()]
    titles = ["truth", "observation y (blur + noise)", "posterior sample", "posterior sample", "posterior sample",
              "posterior mean", "posterior std (scaled)"]
    save_grid([np.clip(r, 0, 1) for r in rows], OUT / "imaging_posterior.png",
              "Deblurring 32x32 phantoms: conditional Glow posterior (invjax)", titles)
    for name, figure in (("sbc", dx.plot_sbc(calibration, NAMES)), ("coverage", dx.plot_coverage(coverage, NAMES)),
                         ("contraction", dx.plot_contraction(contraction, NAMES))):
        figure.savefig(OUT / f"imaging_posterior_{name}.png", dpi=80)
        print(f"wrote {OUT / f'imaging_posterior_{name}.png'}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"total {time.perf_counter() - start:.0f} s, peak resident memory {peak:.2f} GiB")


if __name__ == "__main__":
    main()
