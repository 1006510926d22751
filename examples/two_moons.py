"""Density estimation on two moons with RealNVP, trained by ``ij.fit``.

    python examples/two_moons.py      # 50 s on a 2-core CPU (docs/examples/two_moons.md)

Prints the held-out negative log-likelihood (nats) and writes
``examples/out/two_moons.png``: the data, the learned density and samples.
"""

from __future__ import annotations

import argparse

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from _digits import OUT
from sklearn.datasets import make_moons

import invjax as ij


def main(steps: int, path=OUT / "two_moons.png"):
    data, _ = make_moons(6000, noise=0.06, random_state=0)
    data = jnp.asarray((data - data.mean(0)) / data.std(0), jnp.float32)
    train, test = data[:5000], data[5000:]
    flow = ij.nets.RealNVP(in_channels=2, depth=8, hidden=64, key=jr.key(0))
    flow, history = ij.fit(flow, train, key=jr.key(1), steps=steps, batch_size=256,
                           optimizer=optax.adam(2e-3), validation=0.1, eval_every=250)
    nll = float(-jnp.mean(flow.log_prob(test)))
    print(f"test negative log-likelihood: {nll:.3f} nats (validation curve: "
          + ", ".join(f"{v:.2f}" for _, v in history["val"]) + ")")
    plot(flow, np.asarray(test), path)
    print(f"wrote {path}")
    return nll


def plot(flow, test, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(-2.5, 2.5, 200)
    xx, yy = np.meshgrid(grid, grid)
    points = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], 1), jnp.float32)
    density = np.exp(np.asarray(eqx.filter_jit(lambda f, p: f.log_prob(p))(flow, points))).reshape(xx.shape)
    samples = np.asarray(flow.sample(jr.key(2), (2000, 2)))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharex=True, sharey=True)
    axes[0].scatter(*test.T, s=2, alpha=0.5)
    axes[0].set_title("held-out data")
    axes[1].imshow(density, extent=(-2.5, 2.5, -2.5, 2.5), origin="lower", cmap="viridis")
    axes[1].set_title("RealNVP density")
    axes[2].scatter(*samples.T, s=2, alpha=0.5, color="C1")
    axes[2].set_title("RealNVP samples")
    for ax in axes:
        ax.set_xlim(-2.5, 2.5)
        ax.set_ylim(-2.5, 2.5)
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    main(parser.parse_args().steps)
