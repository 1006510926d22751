"""Shared helpers of the digits examples: data, dequantisation, bits/dim, timed training with ``ij.fit``, pictures."""

from __future__ import annotations

import math
import os
import pathlib
import time

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from sklearn.datasets import load_digits

import invjax as ij

LEVELS_OF_GREY = 17  # digits pixels are integers 0..16
# Pictures go to examples/out, or to $INVJAX_EXAMPLES_OUT (the tests run every script there).
OUT = pathlib.Path(os.environ.get("INVJAX_EXAMPLES_OUT", pathlib.Path(__file__).parent / "out"))


def load(key):
    """Digits as (N, 1, 8, 8) float32 in [0, 16], split 1500 train / rest test."""
    images = load_digits().images.astype(np.float32)[:, None]
    images = images[np.asarray(jr.permutation(key, len(images)))]
    return jnp.asarray(images[:1500]), jnp.asarray(images[1500:])


def dequantize(key, v):
    """Uniform dequantisation: a continuous density on [0, 17)^D / 17, centred."""
    return (v + jr.uniform(key, v.shape)) / LEVELS_OF_GREY - 0.5


def bits_per_dim(nll, dims):
    """Discrete-data bits/dim from the continuous NLL of the rescaled data."""
    return (nll + dims * math.log(LEVELS_OF_GREY)) / (dims * math.log(2))


def dequantize_batch(key, x, cond):
    """``dequantize`` as ``ij.fit``'s ``transform``: fresh noise every step, inside the jitted step."""
    return dequantize(key, x), cond


def train(flow, x, cond=None, *, steps, transform=None, loss=ij.negative_log_likelihood, lr=1e-3, report=None,
          **fit_kwargs):
    """``ij.fit`` with Adam(``lr``) and gradient clipping at 10, batches of 64; prints the time.

    ``transform(key, x, cond) -> (x, cond)`` turns each batch of raw digits into training
    data (dequantisation, simulated observations). ``report(mean loss of the last 50
    steps)`` is the text printed after training. Returns ``(flow, history)``.
    """
    optimizer = optax.chain(optax.clip_by_global_norm(10.0), optax.adam(lr))
    start = time.perf_counter()
    flow, history = ij.fit(flow, x, cond, key=jr.key(1), steps=steps, batch_size=64, optimizer=optimizer,
                           loss=loss, transform=transform, **fit_kwargs)
    print(f"trained {steps} steps in {time.perf_counter() - start:.0f} s")
    if report and history["train"]:
        print(report(np.mean(history["train"][-50:])))
    return flow, history


def save_figure(fig, name):
    """Write a matplotlib figure to ``examples/out/<name>`` and say so."""
    fig.tight_layout()
    OUT.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT / name, dpi=110)
    print(f"wrote {OUT / name}")


def save_grid(rows, path, title, row_titles=None):
    """A grid of 8x8 images; ``rows`` is a list of arrays (N, 8, 8) in [0, 1]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    n = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), n, figsize=(n, len(rows) * 1.1), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n):
            ax = axes[i, j]
            ax.axis("off")
            if j < len(row):
                ax.imshow(np.asarray(row[j]), cmap="gray_r", vmin=0, vmax=1)
        if row_titles:
            axes[i, 0].set_title(row_titles[i], fontsize=8, loc="left")
    fig.suptitle(title)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")


def density_example(title, make_flow, argv=None):
    """Train ``make_flow(key, depth, hidden)`` on digits by maximum likelihood; print test
    bits/dim before and after, write a grid of samples. Shared by the density examples."""
    import argparse

    p = argparse.ArgumentParser(description=f"Train {title} on the digits data set.")
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--hidden", type=int, default=32)
    args = p.parse_args(argv)
    k_data, k_model, k_init, k_test, k_sample = jr.split(jr.key(0), 5)
    train_set, test_set = load(k_data)
    dims = math.prod(train_set.shape[1:])

    flow = make_flow(k_model, args.depth, args.hidden)
    flow = flow.initialize(dequantize(k_init, train_set[:512]))
    test_bpd = lambda f: bits_per_dim(float(-jnp.mean(f.log_prob(dequantize(k_test, test_set)))), dims)  # noqa: E731
    print(f"{title}, depth {args.depth}, hidden {args.hidden}: test bits/dim {test_bpd(flow):.3f}")

    # ActNorm is initialised above on 512 digits; fit dequantises every batch afresh.
    flow, _ = train(flow, train_set, steps=args.steps, transform=dequantize_batch, initialize=False,
                    report=lambda nll: f"train bits/dim, last 50 steps: {bits_per_dim(nll, dims):.3f}")
    print(f"test bits/dim after training: {test_bpd(flow):.3f}")
    samples = jnp.clip(flow.sample(k_sample, (16, *train_set.shape[1:])) + 0.5, 0, 1)[:, 0]
    name = title.lower().replace(" ", "_")
    save_grid([samples[:8], samples[8:]], OUT / f"{name}_samples.png", f"{title} samples (invjax)")
    return flow
