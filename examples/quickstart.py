"""Quickstart: train a Glow on scikit-learn's handwritten digits, in plain JAX + optax.

    pip install -e ".[examples]" && python examples/quickstart.py

The gradient is an ordinary ``eqx.filter_value_and_grad`` of the negative log-likelihood;
invjax computes it by reconstructing activations instead of storing them. Prints the
training loss falling, the test negative log-likelihood in bits per dimension, and writes
samples to ``examples/out/quickstart_samples.png``. A few minutes on a laptop CPU.
"""

from __future__ import annotations

import argparse
import math
import time

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from _digits import OUT, bits_per_dim, dequantize, load, save_grid
from tqdm import tqdm

import invjax as ij


def main():
    p = argparse.ArgumentParser(description="Train Glow on the digits data set.")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--depth", type=int, default=8)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    args = p.parse_args()

    key_data, key_model, key_train, key_sample = jr.split(jr.key(0), 4)
    train, test = load(key_data)
    dims = math.prod(train.shape[1:])

    flow = ij.nets.Glow(in_channels=1, levels=2, depth=args.depth, hidden=args.hidden, key=key_model)
    flow = flow.initialize(dequantize(key_train, train[:512]))  # ActNorm data init, pure

    optimizer = optax.chain(optax.clip_by_global_norm(10.0), optax.adam(args.lr))
    state = optimizer.init(eqx.filter(flow, eqx.is_inexact_array))

    @eqx.filter_jit
    def step(flow, state, key):
        k1, k2 = jr.split(key)
        batch = dequantize(k2, train[jr.choice(k1, len(train), (args.batch,), replace=False)])
        loss, grads = eqx.filter_value_and_grad(lambda f: -jnp.mean(f.log_prob(batch)))(flow)
        updates, state = optimizer.update(grads, state, eqx.filter(flow, eqx.is_inexact_array))
        return eqx.apply_updates(flow, updates), state, loss

    @eqx.filter_jit
    def test_nll(flow, key):
        return -jnp.mean(flow.log_prob(dequantize(key, test)))

    print(f"Glow: 2 levels x {args.depth} steps, hidden {args.hidden}; "
          f"{len(train)} training and {len(test)} test digits of 8x8")
    print(f"test bits/dim before training: {bits_per_dim(float(test_nll(flow, key_sample)), dims):.3f}")
    start, history = time.perf_counter(), []
    bar = tqdm(range(args.steps), desc="training", unit="step")
    for i, key in zip(bar, jr.split(key_train, args.steps), strict=True):
        flow, state, loss = step(flow, state, key)
        history.append(float(loss))
        if i % 50 == 0:
            bar.set_postfix(bpd=f"{bits_per_dim(np.mean(history[-50:]), dims):.3f}")
        if i % (args.steps // 6) == 0 or i == args.steps - 1:
            tqdm.write(f"step {i:5d}  train loss (bits/dim) {bits_per_dim(np.mean(history[-50:]), dims):.3f}")
    elapsed = time.perf_counter() - start
    final = bits_per_dim(float(test_nll(flow, key_sample)), dims)
    print(f"test bits/dim after {args.steps} steps ({elapsed:.0f} s): {final:.3f}")

    samples = jnp.clip(flow.sample(key_sample, (32, 1, 8, 8)) + 0.5, 0, 1)[:, 0]
    save_grid([samples[i : i + 8] for i in range(0, 32, 8)], OUT / "quickstart_samples.png",
              "Glow samples after training on digits (invjax)")


if __name__ == "__main__":
    main()
