"""Time of the calibration statistics on N = 1,000 observations x L = 1,000 draws x 8 quantities.

    python benchmarks/diagnostics_speed.py

Each statistic's median of 3 calls after one warm-up call (float32 draws, as
``posterior_draws`` returns them), and their sum; writes
``benchmarks/results/diagnostics_speed.md``.
"""

from __future__ import annotations

import pathlib
import time

import numpy as np

from invjax import diagnostics as dx

HERE = pathlib.Path(__file__).resolve().parent


def main(n: int = 1000, draws: int = 1000, quantities: int = 8):
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(n, draws, quantities)).astype(np.float32)
    truth = rng.normal(size=(n, quantities)).astype(np.float32)
    statistics = {
        "sbc (ranks, band, log gamma)": lambda: dx.sbc(samples, truth),
        "coverage": lambda: dx.coverage(samples, truth),
        "calibration_error": lambda: dx.calibration_error(samples, truth),
        "contraction": lambda: dx.contraction(samples, truth, 1.0),
        "recovery": lambda: dx.recovery(samples, truth),
        "tarp": lambda: dx.tarp(samples, truth),
    }
    rows = []
    for name, run in statistics.items():
        run()
        times = []
        for _ in range(3):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        rows.append((name, float(np.median(times))))
        print(f"{name}: {rows[-1][1]:.3f} s", flush=True)
    total = sum(t for _, t in rows)
    lines = [f"Calibration statistics on N = {n} observations x L = {draws} draws x {quantities} quantities "
             "(median of 3 after a warm-up; `python benchmarks/diagnostics_speed.py`).", "",
             "| statistic | seconds |", "|:---|---:|"] + [f"| {name} | {t:.3f} |" for name, t in rows]
    lines.append(f"| **all** | **{total:.3f}** |")
    (HERE / "results" / "diagnostics_speed.md").write_text("\n".join(lines) + "\n")
    print(f"all: {total:.3f} s")


if __name__ == "__main__":
    main()
