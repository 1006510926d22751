"""Learned reconstruction with an i-RIM (InvertibleNetworks.jl's NetworkLoop): deblurring 32x32 phantoms.

    python examples/irim_deblurring.py            # the full run
    python examples/irim_deblurring.py --quick    # a few steps, a small memory sweep (CI)

The inverse problem of ``examples/imaging_posterior.py``: ``d = blur(x) + 0.05 noise``, the
blur a linear operator written in JAX (its adjoint comes from ``jax.linear_transpose``).
An ``ij.nets.IRIM`` unrolls ``--iterations`` steps, each adding the normalised gradient
``A^T (A eta - d)`` to its memory and mixing the state with an invertible coupling; it is
trained end to end on the mean squared error of its final estimate, on fresh simulated
pairs at every step. Its backward rebuilds each iteration's state instead of storing it,
so the training step's memory does not grow with the iterations: the script measures
XLA's compiled memory of the step against plain autodiff for 2 to 32 iterations.

Writes ``examples/out/irim_deblurring.png`` (truth, observation, Tikhonov, i-RIM) and
``irim_memory.png``.
"""

from __future__ import annotations

import argparse
import resource
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from _digits import OUT, save_grid
from _phantoms import SIZE, blur, psnr
from _reconstruction import memory_sweep, plot_memory, simulate, train

import invjax as ij


def start(d):
    """The initial estimate: ``A^T d`` (the blur is symmetric)."""
    return blur(d)


def loss(net, x, d):
    return jnp.mean((net.reconstruct(start(d), d) - x) ** 2)


def tikhonov(d, weight):
    """``argmin |A x - d|^2 + weight |x|^2`` by conjugate gradients (the classical baseline)."""
    normal = lambda v: blur(blur(v)) + weight * v
    return jax.scipy.sparse.linalg.cg(normal, blur(d), maxiter=200)[0]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--iterations", type=int, default=8)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--quick", action="store_true",
                   help="at most 20 steps, 2 iterations, hidden 8, a one-point memory sweep (CI)")
    args = p.parse_args()
    if args.quick:
        args.steps, args.iterations, args.hidden = min(args.steps, 20), 2, 8
    began = time.perf_counter()
    k_net, k_init, k_train, k_test = jr.split(jr.key(0), 4)

    net = ij.nets.IRIM(4, args.iterations, args.hidden, blur, key=k_net)  # 1 estimate + 3 memory channels
    x0, d0 = simulate(k_init, args.batch)
    net = net.initialize(net.initial_state(start(d0)), d0)  # the gradient normalisation, from data
    net, losses = train(net, loss, steps=args.steps, batch=args.batch, key=k_train, began=began)
    trained = time.perf_counter() - began
    print(f"trained {args.steps} steps ({args.iterations} iterations) in {trained:.0f} s; "
          f"MSE, last 100 steps: {np.mean(losses[-100:]):.5f}")

    x, d = simulate(k_test, 100)
    estimate = eqx.filter_jit(lambda n, d: n.reconstruct(start(d), d))(net, d)
    weights = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
    baselines = {w: jax.jit(tikhonov)(d, w) for w in weights}
    best = max(weights, key=lambda w: psnr(baselines[w], x))  # the baseline's best weight, chosen on the test set
    print(f"held-out PSNR: observation {psnr(d, x):.2f} dB, Tikhonov (best weight {best:g}) "
          f"{psnr(baselines[best], x):.2f} dB, i-RIM {psnr(estimate, x):.2f} dB")

    unit = lambda v: np.clip(np.asarray(v[:6, 0]) + 0.5, 0, 1)
    save_grid([unit(x), unit(d), unit(baselines[best]), unit(estimate)], OUT / "irim_deblurring.png",
              f"Deblurring with an i-RIM ({args.iterations} iterations, invjax)",
              ["truth", "observation (blur + noise)", f"Tikhonov (weight {best:g})", "i-RIM"])

    sweep = (2,) if args.quick else (2, 4, 8, 16, 32)  # quick: one point, two compilations
    build = lambda n, backprop: ij.nets.IRIM(4, n, args.hidden, blur, key=jr.key(0), backprop=backprop)
    memory = memory_sweep(build, loss, args.batch, sweep, "iterations")
    plot_memory(memory, OUT / "irim_memory.png", xlabel="i-RIM iterations",
                title=f"i-RIM training step, batch {args.batch}, {SIZE}x{SIZE}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"wrote {OUT / 'irim_deblurring.png'} and {OUT / 'irim_memory.png'}; "
          f"total {time.perf_counter() - began:.0f} s, peak resident memory {peak:.2f} GiB")


if __name__ == "__main__":
    main()
