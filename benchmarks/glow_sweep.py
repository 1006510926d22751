"""Glow training step against image size and depth: invjax, plain autodiff, PyTorch normflows.

    pip install -e ".[bench]"       # torch==2.13.0 (CPU), normflows, matplotlib
    python benchmarks/glow_sweep.py                   # both sweeps, CSV + PNG + table
    python benchmarks/glow_sweep.py --sweep size --sizes 64 128 256
    python benchmarks/glow_sweep.py --plot-only       # redraw from the CSV files

Each configuration runs in a fresh process (``glow_step.py``), watched by this one: its
resident memory is polled, and a process that passes ``--limit-gib`` is killed and
recorded as ``out of memory`` (with the memory it had reached), so that the machine
survives the configurations that do not fit. Once an implementation runs out of
memory at some size, larger sizes are recorded as ``skipped``.

Writes ``benchmarks/results/glow_size.csv``, ``glow_depth.csv``, ``glow_sweep.png`` and
``glow_sweep.md`` (the tables in the README), plus ``glow_machine.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE / "results"  # --results changes it (the GPU script writes to results/gpu)
IMPLS = ("invjax", "autodiff", "normflows")
LABELS = {"invjax": "invjax (invertible backward)", "autodiff": "invjax with plain autodiff",
          "normflows": "PyTorch normflows"}
FIELDS = ["impl", "size", "depth", "levels", "hidden", "batch", "status", "peak_rss_mib", "base_rss_mib",
          "compiled_temp_mib", "device_peak_mib", "step_s", "wall_s", "device"]


def _rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def run_one(impl, size, depth, args) -> dict:
    """One configuration in a watched subprocess; returns its row."""
    cmd = [sys.executable, str(HERE / "glow_step.py"), "--impl", impl, "--size", str(size), "--depth", str(depth),
           "--levels", str(args.levels), "--hidden", str(args.hidden), "--batch", str(args.batch),
           "--steps", str(args.big_steps if size >= args.big_size else args.steps)]
    row = {"impl": impl, "size": size, "depth": depth, "levels": args.levels, "hidden": args.hidden,
           "batch": args.batch}
    start, seen = time.perf_counter(), 0.0
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    status = None
    while proc.poll() is None:
        seen = max(seen, _rss_mib(proc.pid))
        if seen > args.limit_gib * 1024:
            proc.kill()
            status = "out of memory"
        elif time.perf_counter() - start > args.timeout:
            proc.kill()
            status = "timeout"
        time.sleep(0.1)
    out, err = proc.communicate()
    if status is None:
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if proc.returncode == 0 and lines:
            result = json.loads(lines[-1])
            row.update({k: result.get(k) for k in FIELDS if k in result}, status="ok")
            return row
        last = err.strip().splitlines()[-1] if err.strip() else ""
        oom = any(m in err for m in ("RESOURCE_EXHAUSTED", "out of memory", "MemoryError"))
        status = "out of memory" if oom else f"failed (rc {proc.returncode}): {last}"
    row.update(status=status, peak_rss_mib=seen, wall_s=time.perf_counter() - start)
    return row


def sweep(kind, args):
    """Run the configurations; rows already in the CSV for other configurations are kept."""
    path = RESULTS / f"glow_{kind}.csv"
    configs = ([(s, args.size_depth) for s in args.sizes] if kind == "size"
               else [(args.depth_size, d) for d in args.depths])
    rows = {(r["impl"], int(r["size"]), int(r["depth"])): r for r in read(kind)}
    for impl in args.impls:
        failed = False
        for size, depth in configs:
            if failed:
                row = {"impl": impl, "size": size, "depth": depth, "levels": args.levels, "hidden": args.hidden,
                       "batch": args.batch, "status": "skipped (a smaller configuration ran out of memory)"}
            else:
                row = run_one(impl, size, depth, args)
                failed = row["status"] == "out of memory"
            rows[(impl, size, depth)] = row
            with open(path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows[k] for k in sorted(rows, key=lambda k: (IMPLS.index(k[0]), k[1], k[2])))
            print(f"{kind} sweep: {impl:>9} size {size:>4} depth {depth:>3}: {row['status']:<14} "
                  f"peak {float(row.get('peak_rss_mib') or 0):8.0f} MiB  step {_fmt(row.get('step_s'), 's')}",
                  flush=True)


def _fmt(v, unit=""):
    if v in (None, "", "nan"):
        return "-"
    return f"{float(v):.3g} {unit}".strip()


def machine_info() -> dict:
    info = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        with open("/proc/meminfo") as f:
            info["memory_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, StopIteration):
        pass
    from importlib.metadata import PackageNotFoundError, version

    for package in ("jax", "jaxlib", "equinox", "invjax", "torch", "normflows"):
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            info[package] = None
    return info


def read(kind):
    path = RESULTS / f"glow_{kind}.csv"
    if not path.exists():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def peak_gib(row) -> float:
    """The device's peak on a GPU, else the process's peak resident memory."""
    device = row.get("device_peak_mib")
    return float(device if device not in (None, "", "None", "nan") else row["peak_rss_mib"]) / 1024


def _ok(rows, impl, key):
    pts = [(int(r[key]), peak_gib(r), float(r["step_s"])) for r in rows if r["impl"] == impl and r["status"] == "ok"]
    return sorted(pts)


def plot(path=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = path or RESULTS / "glow_sweep.png"
    size_rows, depth_rows = read("size"), read("depth")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    machine = RESULTS / "glow_machine.json"
    ram = json.loads(machine.read_text()).get("memory_gib") if machine.exists() else None
    if ram:
        axes[0].axhline(ram, color="grey", linestyle=":", label=f"this machine's memory ({ram} GiB)")
    styles = {"invjax": "s-", "autodiff": "o--", "normflows": "^-"}
    for impl in IMPLS:
        pts = _ok(size_rows, impl, "size")
        if pts:
            axes[0].plot([p[0] for p in pts], [p[1] for p in pts], styles[impl], label=LABELS[impl])
            axes[2].plot([p[0] for p in pts], [p[2] for p in pts], styles[impl], label=LABELS[impl])
        oom = [int(r["size"]) for r in size_rows if r["impl"] == impl and r["status"] == "out of memory"]
        if oom and ram:
            axes[0].plot(oom, [ram] * len(oom), "x", color=axes[0].lines[-1].get_color(), markersize=10,
                         mew=2, label=f"{impl}: out of memory")
        pts = _ok(depth_rows, impl, "depth")
        if pts:
            axes[1].plot([p[0] for p in pts], [p[1] for p in pts], styles[impl], label=LABELS[impl])
    info = (depth_rows or size_rows or [{}])[0]
    on_device = info.get("device_peak_mib") not in (None, "", "None", "nan")
    ylabel = "device peak memory (GiB)" if on_device else "peak resident memory (GiB)"
    arch = (f"Glow {info.get('levels', '?')} levels, hidden {info.get('hidden', '?')}, "
            f"batch {info.get('batch', '?')}, RGB")
    size_depth = size_rows[0]["depth"] if size_rows else "?"
    depth_size = depth_rows[0]["size"] if depth_rows else "?"
    axes[0].set(xlabel="image size (pixels per side)", ylabel=ylabel, xscale="log", yscale="log",
                title=f"{arch}\nmemory vs size, depth {size_depth} per level")
    axes[1].set(xlabel="flow steps per level", ylabel=ylabel, xscale="log",
                title=f"memory vs depth, {depth_size}x{depth_size}")
    axes[2].set(xlabel="image size (pixels per side)", ylabel="seconds per training step", xscale="log",
                yscale="log", title=f"step time vs size, depth {size_depth}")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in (axes[0], axes[2]):
        ax.set_xscale("log", base=2)
    axes[1].set_xscale("log", base=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def table(path=None):
    path = path or RESULTS / "glow_sweep.md"
    lines = []
    for kind, key in (("size", "size"), ("depth", "depth")):
        rows = read(kind)
        if not rows:
            continue
        values = sorted({int(r[key]) for r in rows})
        fixed = "depth" if kind == "size" else "size"
        lines += [f"### Against {kind} ({fixed} {rows[0][fixed]}; Glow {rows[0]['levels']} levels, "
                  f"hidden {rows[0]['hidden']}, batch {rows[0]['batch']}, RGB, float32)", "",
                  f"| {kind} | " + " | ".join(f"{LABELS[i]}: peak GiB / s per step" for i in IMPLS) + " |",
                  "|---|" + "---|" * len(IMPLS)]
        for v in values:
            cells = []
            for impl in IMPLS:
                r = next((r for r in rows if r["impl"] == impl and int(r[key]) == v), None)
                if r is None:
                    cells.append("-")
                elif r["status"] == "ok":
                    cells.append(f"{peak_gib(r):.2f} / {float(r['step_s']):.3g}")
                elif r["status"] == "out of memory":
                    # Killed by the watchdog at the limit, or an allocation refused early (XLA
                    # asks for its whole temporary buffer at once).
                    reached = float(r["peak_rss_mib"]) / 1024
                    cells.append(f"out of memory (killed at {reached:.0f} GiB)" if reached > 4
                                 else "out of memory (allocation refused)")
                else:
                    cells.append(r["status"].split(" (")[0])
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
        lines.append("")
    path.write_text("\n".join(lines))
    print(f"wrote {path}")


def main():
    global RESULTS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweep", choices=["size", "depth", "both"], default="both")
    p.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    p.add_argument("--size-depth", type=int, default=16, help="depth per level in the size sweep")
    p.add_argument("--depths", type=int, nargs="+", default=[4, 8, 16, 32, 64, 128])
    p.add_argument("--depth-size", type=int, default=128, help="image size in the depth sweep")
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=3, help="timed steps after a warm-up step")
    p.add_argument("--big-size", type=int, default=1024, help="from this size on, time --big-steps steps")
    p.add_argument("--big-steps", type=int, default=1)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    p.add_argument("--limit-gib", type=float, default=round(total - 3, 1),
                   help="kill a configuration whose resident memory passes this (default: RAM - 3 GiB)")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--plot-only", action="store_true")
    p.add_argument("--results", type=pathlib.Path, default=RESULTS, help="folder for the CSV, PNG and tables")
    args = p.parse_args()
    RESULTS = args.results
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not args.plot_only:
        (RESULTS / "glow_machine.json").write_text(json.dumps(machine_info(), indent=1) + "\n")
        for kind in (("size", "depth") if args.sweep == "both" else (args.sweep,)):
            sweep(kind, args)
    table()
    plot()


if __name__ == "__main__":
    main()
