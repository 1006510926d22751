"""Variational inference by reverse KL against a 2D Gaussian whose answer is known.

    python examples/vi_gaussian.py        # 25 s on a 2-core CPU (docs/examples/vi.md)

The target is an unnormalised log-density, ``log p(x) = -(x - m)^T S^-1 (x - m) / 2``: no
samples of it are needed. ``ij.fit_vi`` trains a RealNVP through its inverse (samples
``x = flow.inverse(z)``, gradients through the engine in reverse) to minimise
``KL(q || p)``. Prints the errors of the flow's mean and covariance (from 100k samples)
against ``m`` and ``S``, and the final ``KL(q || p)`` (the loss plus ``log Z``), and
writes ``examples/out/vi_gaussian.png``.
"""

from __future__ import annotations

import argparse
import time

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from _digits import save_figure

import invjax as ij

MEAN = jnp.array([1.5, -1.0])
COV = jnp.array([[2.0, 1.2], [1.2, 1.0]])


def log_target(x):
    d = x - MEAN
    return -0.5 * jnp.einsum("bi,ij,bj->b", d, jnp.linalg.inv(COV), d)


def main(steps):
    flow = ij.nets.RealNVP(2, depth=4, hidden=32, key=jr.key(0))
    start = time.perf_counter()
    # A decaying learning rate: near the optimum the reverse-KL gradient is small and noisy.
    optimizer = optax.adam(optax.cosine_decay_schedule(1e-3, steps, alpha=0.01))
    flow, history = ij.fit_vi(flow, log_target, (2,), key=jr.key(1), steps=steps, batch_size=256, optimizer=optimizer)
    seconds = time.perf_counter() - start
    x = flow.sample(jr.key(2), (100_000, 2))
    mean, cov = jnp.mean(x, axis=0), jnp.cov(x.T)
    log_z = float(jnp.log(2 * jnp.pi * jnp.sqrt(jnp.linalg.det(COV))))
    kl = np.mean(history["train"][-100:]) + log_z
    print(f"{steps} steps in {seconds:.0f} s; KL(q || p) over the last 100 steps: {kl:.4f} nats")
    print(f"mean: flow {np.round(mean, 3)}, exact {np.asarray(MEAN)}; "
          f"max error {float(jnp.abs(mean - MEAN).max()):.3f}")
    print(f"covariance: flow {np.round(cov, 3).tolist()}, exact {np.asarray(COV).tolist()}; "
          f"max error {float(jnp.abs(cov - COV).max()):.3f}")
    plot(x[:3000], history["train"], log_z)


def plot(x, losses, log_z):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_loss) = plt.subplots(1, 2, figsize=(10, 4.2))
    g = jnp.linspace(-4, 6, 200), jnp.linspace(-4.5, 2.5, 200)
    grid = jnp.stack(jnp.meshgrid(*g), axis=-1).reshape(-1, 2)
    ax.contour(*g, np.exp(log_target(grid)).reshape(200, 200), levels=6, colors="k", linewidths=0.8)
    ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.4, label="flow samples")
    ax.set(title="target (contours) and flow samples", xlabel="$x_1$", ylabel="$x_2$")
    ax.legend(loc="upper right")
    ax_loss.plot(np.asarray(losses) + log_z)
    ax_loss.set_yscale("symlog", linthresh=0.01)
    ax_loss.set(xlabel="step", ylabel="KL(q || p) (nats)", title="reverse KL during training")
    save_figure(fig, "vi_gaussian.png")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    main(parser.parse_args().steps)
