"""i-RIM's down- and upsampling blocks: ``ResidualBlock(stride > 1)`` as invjax runs it against the
same block through its Equinox modules (``eqx.nn.Conv`` / ``ConvTranspose``, channels first).

    python benchmarks/strided_blocks.py                 # kernel 4 / stride 4 (the default) and 4 / 2
    python benchmarks/strided_blocks.py --repeats 21

The gradient of an i-RIM (4 channels, 4 iterations, hidden 16, a masking operator) on a batch
``(8, 4, 64, 64)``, jitted; the two ways alternate call by call, and each reports the median
over ``--repeats`` calls after a warm-up. invjax runs the strided convolution and its transpose
as reshapes and stride-1 convolutions (space-to-depth and sub-pixel), channels-last like every
convolution inside its scans (``invjax/layers/_conv.py``); the values are the same
(``tests/test_conv.py``). Writes ``benchmarks/results/strided_blocks.json``.
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

import invjax as ij
from invjax.layers import ResidualBlock

HERE = pathlib.Path(__file__).resolve().parent


def _compiled(net, x, d, *, equinox: bool):
    """The jitted gradient, compiled; with ``equinox`` the blocks run through their Equinox modules
    (the reference, invjax before 2026-12-06), patched in only while tracing."""
    params, static = eqx.partition(net, eqx.is_inexact_array)
    grad = jax.jit(jax.grad(lambda p, x, d: jnp.sum(eqx.combine(p, static).forward(x, d)[0] ** 2)))
    ours = ResidualBlock.__call__
    if equinox:
        ResidualBlock.__call__ = lambda self, h: self._output(self._body(*self.convs, h))
    try:
        compiled = grad.lower(params, x, d).compile()
    finally:
        ResidualBlock.__call__ = ours
    return lambda: compiled(params, x, d)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    mask = lambda x: x * (jnp.arange(x.shape[-1]) % 2 == 0)  # noqa: E731
    x, d = jr.normal(jr.key(1), (8, 4, 64, 64)), jr.normal(jr.key(2), (8, 1, 64, 64))
    results = {}
    for kernel, stride in ((4, 4), (4, 2)):
        net = ij.nets.IRIM(4, 4, 16, mask, key=jr.key(0), kernel=kernel, stride=stride).initialize(x, d)
        calls = {"invjax": _compiled(net, x, d, equinox=False), "equinox": _compiled(net, x, d, equinox=True)}
        first = [jax.block_until_ready(call()) for call in calls.values()]  # warm-up; the same gradients
        # float32: the largest difference relative to that leaf's largest gradient
        error = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
                    for a, b in zip(*map(jax.tree.leaves, first), strict=True))
        times = {name: [] for name in calls}
        for _ in range(args.repeats):
            for name, call in calls.items():
                start = time.perf_counter()
                jax.block_until_ready(call())
                times[name].append(time.perf_counter() - start)
        row = {name: statistics.median(t) for name, t in times.items()}
        row["speed-up"], row["max_relative_gradient_difference"] = row["equinox"] / row["invjax"], error
        results[f"kernel {kernel}, stride {stride}"] = row
        print(f"kernel {kernel} stride {stride}: invjax {1e3 * row['invjax']:.1f} ms, Equinox modules "
              f"{1e3 * row['equinox']:.1f} ms, {row['speed-up']:.2f}x (gradients differ by {error:.1e} relative)",
              flush=True)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "strided_blocks.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
