"""An invertible U-Net as a learned reconstruction network: deblurring 32x32 phantoms.

    python examples/iunet_deblurring.py            # the full run
    python examples/iunet_deblurring.py --quick    # a few steps, a small memory sweep (CI)

The inverse problem of ``examples/irim_deblurring.py`` (``d = blur(x) + 0.05 noise``). An
``ij.nets.IUNet`` maps the two-channel image ``(A^T d, d)`` to an image of the same shape;
its first output channel is the estimate, trained end to end on the mean squared error (the
second channel is free: an invertible network needs somewhere to put what it does not
return). The backward pass rebuilds every scale's activations instead of storing them: the
script measures XLA's compiled memory of a training step against plain autodiff as the
depth grows.

Writes ``examples/out/iunet_deblurring.png`` (truth, observation, U-Net estimate) and
``iunet_memory.png``.
"""

from __future__ import annotations

import argparse
import resource
import time

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from _digits import OUT, save_grid
from _phantoms import SIZE, blur, psnr
from _reconstruction import memory_sweep, plot_memory, simulate, train

import invjax as ij


def estimate(net, d):
    """The first output channel of the U-Net on ``(A^T d, d)`` (the blur is symmetric)."""
    return net.forward(jnp.concatenate([blur(d), d], axis=1))[0][:, :1]


def loss(net, x, d):
    return jnp.mean((estimate(net, d) - x) ** 2)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--quick", action="store_true",
                   help="at most 20 steps, 2 levels, depth 1, hidden 8, a one-point memory sweep (CI)")
    args = p.parse_args()
    if args.quick:
        args.steps, args.levels, args.depth, args.hidden = min(args.steps, 20), 2, 1, 8
    began = time.perf_counter()
    k_net, k_init, k_train, k_test = jr.split(jr.key(0), 4)

    net = ij.nets.IUNet(2, args.levels, args.depth, args.hidden, key=k_net)
    x0, d0 = simulate(k_init, args.batch)
    net = net.initialize(jnp.concatenate([blur(d0), d0], axis=1))  # ActNorms, from data
    net, losses = train(net, loss, steps=args.steps, batch=args.batch, key=k_train, began=began)
    trained = time.perf_counter() - began
    print(f"trained {args.steps} steps in {trained:.0f} s; MSE, last 100 steps: {np.mean(losses[-100:]):.5f}")

    x, d = simulate(k_test, 100)
    result = eqx.filter_jit(estimate)(net, d)
    print(f"held-out PSNR: observation {psnr(d, x):.2f} dB, invertible U-Net {psnr(result, x):.2f} dB")
    unit = lambda v: np.clip(np.asarray(v[:6, 0]) + 0.5, 0, 1)
    save_grid([unit(x), unit(d), unit(result)], OUT / "iunet_deblurring.png",
              f"Deblurring with an invertible U-Net ({args.levels} levels, depth {args.depth}, invjax)",
              ["truth", "observation (blur + noise)", "invertible U-Net"])

    sweep = (2,) if args.quick else (2, 4, 8, 16)
    build = lambda n, backprop: ij.nets.IUNet(2, args.levels, n, args.hidden, key=jr.key(0), backprop=backprop)
    memory = memory_sweep(build, loss, args.batch, sweep, "depth")
    plot_memory(memory, OUT / "iunet_memory.png", xlabel="flow steps per scale and way (depth)",
                title=f"iUNet training step, batch {args.batch}, {SIZE}x{SIZE}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"wrote {OUT / 'iunet_deblurring.png'} and {OUT / 'iunet_memory.png'}; "
          f"total {time.perf_counter() - began:.0f} s, peak resident memory {peak:.2f} GiB")


if __name__ == "__main__":
    main()
