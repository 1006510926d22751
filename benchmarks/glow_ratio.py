"""Step-time ratios on a noisy machine: the implementations interleaved, several rounds.

    python benchmarks/glow_ratio.py --size 256 --depth 16 --rounds 3

Each round runs invjax, invjax with plain autodiff and normflows once each (fresh
processes, ``glow_step.py``, median of ``--steps`` steps after warm-up), so slow phases of
a shared machine hit all three alike; the reported time of each is the median over the
rounds. Writes ``benchmarks/results/glow_ratio_<size>_d<depth>.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from glow_sweep import HERE, IMPLS, LABELS, RESULTS


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--depth", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args()
    times = {impl: [] for impl in IMPLS}
    for r in range(args.rounds):
        for impl in IMPLS:
            cmd = [sys.executable, str(HERE / "glow_step.py"), "--impl", impl, "--size", str(args.size),
                   "--depth", str(args.depth), "--steps", str(args.steps)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            times[impl].append(json.loads(out.strip().splitlines()[-1])["step_s"])
            print(f"round {r + 1}: {impl:>9} {times[impl][-1]:.3f} s", flush=True)
    median = {impl: statistics.median(t) for impl, t in times.items()}
    lines = [f"Glow {args.size}x{args.size}, depth {args.depth}, 3 levels, hidden 64, batch 8: seconds per step, "
             f"median of {args.rounds} interleaved rounds (each the median of {args.steps} steps after warm-up).", "",
             "| implementation | s per step | rounds |", "|---|---|---|"]
    lines += [f"| {LABELS[i]} | {median[i]:.3g} | {', '.join(f'{t:.3g}' for t in times[i])} |" for i in IMPLS]
    lines += ["", f"invjax / autodiff: {median['invjax'] / median['autodiff']:.2f}; "
              f"invjax / normflows: {median['invjax'] / median['normflows']:.2f}"]
    path = RESULTS / f"glow_ratio_{args.size}_d{args.depth}.md"
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
