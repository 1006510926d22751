"""Start-up cost: seconds to build a small Glow in a fresh process, and to compile its gradient.

    python benchmarks/startup.py
    XLA_FLAGS=--xla_backend_optimization_level=0 python benchmarks/startup.py

Building runs each parameter's random initialisation eagerly, and JAX compiles a small
program for each new shape the first time; the gradient is one larger program. Both are
compile time, paid once per process (or once per machine with JAX's persistent
compilation cache, ``jax.config.update("jax_compilation_cache_dir", path)``).
"""

from __future__ import annotations

import time

import equinox as eqx
import jax
import jax.numpy as jnp

import invjax as ij


def main():
    start = time.perf_counter()
    flow = ij.nets.Glow(in_channels=3, levels=2, depth=4, hidden=32, key=jax.random.key(0))
    jax.block_until_ready(eqx.filter(flow, eqx.is_array))
    built = time.perf_counter() - start
    again = time.perf_counter()
    flow = ij.nets.Glow(in_channels=3, levels=2, depth=4, hidden=32, key=jax.random.key(1))
    jax.block_until_ready(eqx.filter(flow, eqx.is_array))
    rebuilt = time.perf_counter() - again
    x = jnp.zeros((8, 3, 32, 32))
    params, static = eqx.partition(flow, eqx.is_inexact_array)
    grad = jax.jit(jax.grad(lambda p: -eqx.combine(p, static).log_prob(x).mean()))
    start = time.perf_counter()
    grad.lower(params).compile()
    compiled = time.perf_counter() - start
    print(f"build {built:.1f} s (again in the same process {rebuilt:.2f} s), compile the gradient {compiled:.1f} s")


if __name__ == "__main__":
    main()
