"""Compiled memory, gradient agreement, float32 drift and step time of a Glow training step.

    python benchmarks/engine_report.py            # writes benchmarks/results/engine_report.json

Memory is XLA's compiled temporary size (``memory_analysis().temp_size_in_bytes``): what
a step needs beyond its inputs and outputs. Times are the median of several steps after
warm-up, invertible and autodiff measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax

import invjax as ij

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "engine_report.json"


def perturb(flow, key, scale):
    params, static = eqx.partition(flow, eqx.is_inexact_array)
    leaves, treedef = jax.tree.flatten(params)
    keys = jr.split(key, len(leaves))
    leaves = [a + scale * jr.normal(k, a.shape, a.dtype) for a, k in zip(leaves, keys, strict=True)]
    return eqx.combine(jax.tree.unflatten(treedef, leaves), static)


def make_step(optimizer):
    @eqx.filter_jit
    def step(flow, state, x):
        loss, grads = eqx.filter_value_and_grad(lambda f: -jnp.mean(f.log_prob(x)))(flow)
        updates, state = optimizer.update(grads, state, eqx.filter(flow, eqx.is_inexact_array))
        return eqx.apply_updates(flow, updates), state, loss

    return step


def temp_mb(flow, x):
    params, static = eqx.partition(flow, eqx.is_array)
    grad = eqx.filter_grad(lambda f, x: -jnp.mean(f.log_prob(x)))
    step = jax.jit(lambda p, x: grad(eqx.combine(p, static), x))
    return step.lower(params, x).compile().memory_analysis().temp_size_in_bytes / 2**20


def step_seconds(flow, x, steps):
    optimizer = optax.adam(1e-4)
    state = optimizer.init(eqx.filter(flow, eqx.is_inexact_array))
    step = make_step(optimizer)
    flow, state, loss = step(flow, state, x)  # compile + warm-up
    jax.block_until_ready(loss)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        flow, state, loss = step(flow, state, x)
        jax.block_until_ready(loss)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depths", type=int, nargs="+", default=[4, 32, 128])
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--time-depth", type=int, default=8)
    p.add_argument("--steps", type=int, default=7)
    p.add_argument("--out", type=pathlib.Path, default=RESULTS, help="the JSON file written")
    args = p.parse_args()
    report = {"config": {k: getattr(args, k) for k in ("size", "batch", "hidden", "levels", "time_depth", "steps")},
              "command": "python benchmarks/engine_report.py", "jax": jax.__version__, "memory": []}
    key = jr.key(0)
    x = jr.normal(key, (args.batch, 3, args.size, args.size))
    make = lambda depth: perturb(
        ij.nets.Glow(3, args.levels, depth, args.hidden, key=jr.key(1)), jr.key(2), 0.01
    )

    print(f"Glow {args.levels} levels, hidden {args.hidden}, batch {args.batch}, 3x{args.size}x{args.size}, float32")
    print("compiled temporary memory of a gradient step (MiB):")
    print(f"{'depth':>6} {'invertible':>11} {'autodiff':>9}")
    for depth in args.depths:
        flow = make(depth)
        inv, ad = temp_mb(flow, x), temp_mb(ij.with_backprop(flow, ij.Autodiff()), x)
        print(f"{depth:>6} {inv:>11.2f} {ad:>9.2f}")
        report["memory"].append({"depth": depth, "invertible_mib": inv, "autodiff_mib": ad})

    flow = make(args.time_depth)
    loss = lambda f: -jnp.mean(f.log_prob(x))
    g_inv = eqx.filter_jit(eqx.filter_grad(loss))(flow)
    g_ad = eqx.filter_jit(eqx.filter_grad(loss))(ij.with_backprop(flow, ij.Autodiff()))
    a = jnp.concatenate([jnp.ravel(v) for v in jax.tree.leaves(g_inv)])
    b = jnp.concatenate([jnp.ravel(v) for v in jax.tree.leaves(g_ad)])
    report["gradient_relative_error"] = float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))
    print(f"gradient relative error vs autodiff (float32, depth {args.time_depth}): "
          f"{report['gradient_relative_error']:.2e}")

    deep = make(64)
    z, _ = eqx.filter_jit(lambda f, x: f.forward(x))(deep, x)
    x_back = eqx.filter_jit(lambda f, z: f.inverse(z))(deep, z)
    report["drift_depth_64"] = float(jnp.linalg.norm(x_back - x) / jnp.linalg.norm(x))
    print(f"float32 reconstruction error at depth 64 (relative, max abs): "
          f"{report['drift_depth_64']:.2e}, {float(jnp.max(jnp.abs(x_back - x))):.2e}")

    t_inv = step_seconds(flow, x, args.steps)
    t_ad = step_seconds(ij.with_backprop(flow, ij.Autodiff()), x, args.steps)
    print(f"step time at depth {args.time_depth} (median of {args.steps}): invertible {t_inv*1e3:.1f} ms, "
          f"autodiff {t_ad*1e3:.1f} ms, ratio {t_inv / t_ad:.2f}")
    report["step_s"] = {"invertible": t_inv, "autodiff": t_ad}
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
