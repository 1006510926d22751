"""A Glow step on a CPU: one host device against one per core (batch split), and normflows.

    python benchmarks/cpu_cores.py                              # sizes 64 128 256 512, depth 16
    python benchmarks/cpu_cores.py --sizes 128 --normflows 128  # a quick look

XLA:CPU runs each convolution on one thread; with one host device per core
(``ij.use_cpu_cores()``) and the batch split over them, every core works. Each
configuration runs in a fresh process (``glow_step.py``: Glow 3 levels, hidden 64, batch 8,
RGB; a step is loss, gradient and Adam update; the median of ``--steps`` steps after a
warm-up). Writes ``benchmarks/results/cpu_cores.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent


def step(impl, size, depth, steps, host_devices=0):
    cmd = [sys.executable, str(HERE / "glow_step.py"), "--impl", impl, "--size", str(size), "--depth", str(depth),
           "--steps", str(steps), "--host-devices", str(host_devices)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:  # say why in the log; the table shows "failed"
        print(f"{impl} {size} (host devices {host_devices}) failed:\n{out.stderr[-2000:]}", file=sys.stderr, flush=True)
        return {"impl": impl, "size": size, "error": out.stderr[-400:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    cores = len(os.sched_getaffinity(0))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    p.add_argument("--normflows", type=int, nargs="*", default=[256, 512], help="sizes to time normflows at")
    p.add_argument("--depth", type=int, default=16)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--cores", type=int, default=cores)
    p.add_argument("--append", action="store_true", help="keep the rows of other sizes already in cpu_cores.json")
    args = p.parse_args()
    rows = []
    out = HERE / "results"
    if args.append and (out / "cpu_cores.json").exists():
        rows = [r for r in json.loads((out / "cpu_cores.json").read_text())["rows"] if r["size"] not in args.sizes]
    for size in args.sizes:
        steps = args.steps if size < 512 else max(1, args.steps - 1)
        row = {"size": size}
        for label, n in (("one_device", 1), ("per_core", args.cores)):
            r = step("invjax", size, args.depth, steps, n)
            row[label] = r.get("step_s")
            row[f"{label}_loss"] = r.get("loss")
        if size in args.normflows:
            row["normflows"] = step("normflows", size, args.depth, steps).get("step_s")
        print(json.dumps(row), flush=True)
        rows.append(row)
    rows.sort(key=lambda r: r["size"])
    (out / "cpu_cores.json").write_text(json.dumps({"cores": args.cores, "depth": args.depth, "rows": rows}, indent=1))
    lines = [f"Glow step (3 levels, depth {args.depth}, hidden 64, batch 8, RGB) on {args.cores} CPU cores, "
             "seconds per step (median after warm-up); `python benchmarks/cpu_cores.py`.", "",
             f"| size | 1 host device | {args.cores} host devices (batch split) | speed-up | normflows | "
             f"invjax (1 device) / normflows | invjax ({args.cores} devices) / normflows |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        nf = r.get("normflows")
        speed = r["one_device"] / r["per_core"] if r["one_device"] and r["per_core"] else float("nan")
        vs = f"{r['per_core'] / nf:.2f}x" if nf and r["per_core"] else ""
        vs1 = f"{r['one_device'] / nf:.2f}x" if nf and r["one_device"] else ""
        fmt = lambda v: "failed" if v is None else f"{v:.3g}"
        lines.append(f"| {r['size']} | {fmt(r['one_device'])} | {fmt(r['per_core'])} | {speed:.2f}x | "
                     f"{f'{nf:.3g}' if nf else ''} | {vs1} | {vs} |")
    (out / "cpu_cores.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
