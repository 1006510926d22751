"""Speed and memory of the amortized workflow's second half: posterior draws and diagnostics.

    python benchmarks/amortized_workflow.py            # writes benchmarks/results/amortized_workflow.md

1. The 2-D model of ``docs/start/amortized.md`` (a ``Summarized`` RealNVP): 500 draws for
   each of 1000 observations in one ``posterior_draws`` call, then SBC, coverage and
   contraction on them.
2. The imaging example's model (``examples/imaging_posterior.py``: a conditional Glow on
   32x32 images behind a convolutional summary network): 500 draws for each of 100
   observations in one call, passes of ``batch_size`` samples; XLA's compiled temporaries
   of the call for several ``batch_size`` (the memory of the inverse is that of one pass).

Times are wall-clock on this machine (first call: with compilation; then the median of 3).
Untrained parameters: the cost does not depend on them.
"""

from __future__ import annotations

import pathlib
import sys
import time

import equinox as eqx
import jax
import numpy as np

import invjax as ij
from invjax import diagnostics as dx
from invjax.diagnostics import _draw

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))


def timed(fn, repeats=3):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return first, float(np.median(times))


def toy():
    model = ij.nets.Summarized(
        ij.nets.RealNVP(in_channels=2, depth=4, hidden=32, cond_channels=4, key=jax.random.key(2)),
        eqx.nn.MLP(in_size=5, out_size=4, width_size=32, depth=1, key=jax.random.key(3)))
    y = jax.random.normal(jax.random.key(4), (1000, 5))
    truth = np.asarray(jax.random.normal(jax.random.key(5), (1000, 2)))
    draw = lambda: dx.posterior_draws(model, y, 500, (2,), key=jax.random.key(6))
    first, median = timed(draw)
    draws = np.asarray(draw())
    start = time.perf_counter()
    dx.sbc(draws, truth), dx.coverage(draws, truth), dx.contraction(draws, truth, 1.0), dx.recovery(draws, truth)
    diagnostics = time.perf_counter() - start
    return first, median, diagnostics


def imaging():
    from imaging_posterior import SIZE, build_model, simulate

    model = build_model(jax.random.key(0), jax.random.key(1))
    _, y = simulate(jax.random.key(2), 100)
    event = (1, SIZE, SIZE)
    args, static = eqx.partition((model, y, jax.random.key(3)), eqx.is_array)

    def temp_mib(per_pass):
        compiled = jax.jit(lambda a: _draw(*eqx.combine(a, static), 500, event, per_pass)).lower(args).compile()
        return compiled.memory_analysis().temp_size_in_bytes / 2**20

    rows = []
    for batch_size in (500, 2000, 10000, None):
        temp = temp_mib(100 if batch_size is None else batch_size // 500)
        first, median = timed(lambda b=batch_size: dx.posterior_draws(model, y, 500, event, key=jax.random.key(3),
                                                                       batch_size=b), repeats=1)
        rows.append((batch_size or 50000, temp, first, median))
    return rows


def main():
    out = ROOT / "benchmarks" / "results" / "amortized_workflow.md"
    first, median, diagnostics = toy()
    lines = ["**Posterior draws and diagnostics** (`python benchmarks/amortized_workflow.py`)", "",
             f"jax {jax.__version__}, {jax.devices()[0].platform}, {len(jax.devices())} device(s).", "",
             "**1000 observations x 500 draws**, the 2-D model of docs/start/amortized.md:", "",
             f"- `posterior_draws`: {first:.2f} s first call (with compilation), {median:.2f} s after",
             f"- `sbc` + `coverage` + `contraction` + `recovery` on the (1000, 500, 2) draws: {diagnostics:.2f} s", "",
             "**100 observations x 500 draws of 32x32 images** (the imaging example's model):", "",
             "| samples per pass (`batch_size`) | compiled temporaries (MiB) | first call (s) | second call (s) |",
             "|---:|---:|---:|---:|"]
    for batch_size, temp, first, median in imaging():
        lines.append(f"| {batch_size} | {temp:.0f} | {first:.1f} | {median:.1f} |")
    lines += ["", "The result itself, 100 x 500 x 32 x 32 float32, is 195 MiB (an output, not a temporary)."]
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
