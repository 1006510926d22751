"""The docs' figure: compiled memory of a Glow gradient step against depth.

    python benchmarks/memory_figure.py      # writes docs/images/memory_vs_depth.png (a few minutes)

Glow, 3 levels, hidden 32, batch 4, 3x32x32, float32; XLA's compiled temporary memory
(deterministic), invertible backward vs plain autodiff.
"""

from __future__ import annotations

import argparse
import pathlib

import jax.random as jr
from engine_report import perturb, temp_mb

import invjax as ij

OUT = pathlib.Path(__file__).resolve().parents[1] / "docs" / "images" / "memory_vs_depth.png"


def main(depths, path=OUT):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = jr.normal(jr.key(0), (4, 3, 32, 32))
    rows = []
    for depth in depths:
        flow = perturb(ij.nets.Glow(3, 3, depth, 32, key=jr.key(1)), jr.key(2), 0.01)
        rows.append((depth, temp_mb(flow, x), temp_mb(ij.with_backprop(flow, ij.Autodiff()), x)))
        print(f"depth {depth:>4}: invertible {rows[-1][1]:.2f} MiB, autodiff {rows[-1][2]:.2f} MiB", flush=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r[0] for r in rows], [r[2] for r in rows], "o-", label="plain autodiff")
    ax.plot([r[0] for r in rows], [r[1] for r in rows], "s-", label="invjax (invertible backward)")
    ax.set_xlabel("flow steps per level (3 levels)")
    ax.set_ylabel("temporary memory of a gradient step (MiB)")
    ax.set_title("Glow, batch 4, 3x32x32, float32")
    ax.set_xscale("log", base=2)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[4, 8, 16, 32, 64, 128])
    main(parser.parse_args().depths)
