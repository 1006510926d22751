"""The 2D Glow benchmarks of ``glow.py``: ``step`` (one configuration, one process) and the
drivers that run it in fresh processes, ``sweep``, ``headline``, ``ratio`` and ``cores``,
with their table writers (``render.py`` calls them on the committed results).

A step is the loss (mean negative log-likelihood), its gradient and an Adam update of
``ij.nets.Glow(3, levels, depth, hidden)`` on a batch of RGB images. ``--impl``:

- ``invjax``: ``ij.nets.Glow`` with the invertible backward (the default);
- ``autodiff``: the same flow under ``ij.with_backprop(flow, ij.Autodiff())``;
- ``normflows``: PyTorch normflows' ``MultiscaleFlow`` of ``GlowBlock``s with the same
  architecture (levels, depth per level, hidden channels, 3x3-1x1-3x3 conditioners,
  LU 1x1 convolutions, ActNorm, channel split, half of the channels factored out per level).

On a CPU, JAX runs as one host device per core with the batch split over them
(``ij.use_cpu_cores``; ``--host-devices 0`` for JAX's single device), the way the docs
recommend training on a CPU. ``peak_rss_mib`` is the process's peak resident memory
(``getrusage``), so it includes the interpreter, the library and, for JAX, the compiler;
``base_rss_mib`` is the resident memory once the model and the batch exist (and, for JAX,
the step is compiled), before the first step. Both implementations hand the memory their
allocator keeps from building the model back to the system before that (``gc.collect`` and
glibc's ``malloc_trim``; JAX also drops the small programs that built the parameters):
otherwise a few hundred MiB of freed but retained memory would count as the step's.
``--compile-only`` (JAX) reports the compiled step's memory without running it: a
deterministic check of sizes that would take too long to run here. On a GPU,
``device_peak_mib`` is the device's peak allocation (JAX:
``memory_stats()["peak_bytes_in_use"]``, PyTorch: ``torch.cuda.max_memory_allocated``).
``step_s`` is the median of ``--steps`` steps after one warm-up step (which, for JAX,
follows compilation).
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
import platform
import statistics
import sys
import time

import _runner as run
from _runner import RESULTS, release, rss_mib, timed

IMPLS = ("invjax", "autodiff", "normflows")
LABELS = {"invjax": "invjax (invertible backward)", "autodiff": "invjax with plain autodiff",
          "normflows": "PyTorch normflows"}
FIELDS = ["impl", "size", "depth", "levels", "hidden", "batch", "status", "peak_rss_mib", "base_rss_mib",
          "compiled_temp_mib", "device_peak_mib", "step_s", "wall_s", "device"]


# ---------------------------------------------------------------- step: one configuration

def glow_training_step(levels, depth, hidden, batch, size, autodiff=False, *, channels=3, spatial_dims=2):
    """``(flow, x, params, opt_state, step)``: the Glow, a batch and the training step this file
    times (``step(params, opt_state, x) -> (params, opt_state, loss)``: loss, gradient, Adam);
    by default on RGB images, with ``channels=1, spatial_dims=3`` on one-channel volumes."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import jax.random as jr
    import optax

    import invjax as ij

    flow = ij.nets.Glow(channels, levels, depth, hidden, spatial_dims=spatial_dims, key=jr.key(0))
    if autodiff:
        flow = ij.with_backprop(flow, ij.Autodiff())
    x = jr.uniform(jr.key(1), (batch, channels, *[size] * spatial_dims))
    params, static = eqx.partition(flow, eqx.is_inexact_array)
    optimizer = optax.adam(1e-4)
    state = optimizer.init(params)

    def step(params, state, x):
        loss, grads = jax.value_and_grad(lambda p: -jnp.mean(eqx.combine(p, static).log_prob(x)))(params)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    return flow, x, params, state, step


def run_jax(args, build=None):
    """Compile, place on the host devices and time the training step that ``build`` makes
    (``glow_training_step``'s signature; by default the 2D Glow of this benchmark)."""
    import equinox as eqx
    import jax

    import invjax as ij

    if args.host_devices:  # before JAX starts; no effect on GPUs
        ij.use_cpu_cores(None if args.host_devices < 0 else args.host_devices, batch_size=args.batch)
    flow, x, params, state, step = (build or glow_training_step)(args.levels, args.depth, args.hidden, args.batch,
                                                                 args.size, autodiff=args.impl == "autodiff")
    if jax.default_backend() == "cpu" and len(jax.devices()) > 1:  # the batch split over host devices
        mesh = ij.device_mesh()
        x, params, state = ij.shard_batch(x, mesh), ij.replicate(params, mesh), ij.replicate(state, mesh)
    jax.clear_caches()
    release()
    start = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, x).compile()
    compile_s = time.perf_counter() - start  # tracing, lowering and XLA's compilation
    analysis = compiled.memory_analysis()
    temp = analysis.temp_size_in_bytes / 2**20
    release()
    base = rss_mib()
    if args.compile_only:
        total = analysis.temp_size_in_bytes + analysis.argument_size_in_bytes + analysis.output_size_in_bytes
        return {"base_rss_mib": base, "compiled_temp_mib": temp, "compile_s": compile_s, "device_peak_mib": None,
                "step_s": None, "times": [], "compiled_total_mib": total / 2**20,
                "device": str(jax.devices()[0].device_kind), "versions": {"jax": jax.__version__}}
    carry = [params, state]

    def one():
        carry[0], carry[1], loss = compiled(carry[0], carry[1], x)
        jax.block_until_ready(loss)
        carry.append(float(loss))

    median, times = timed(one, args.steps)
    device = jax.devices()[0]
    stats = device.memory_stats() or {}
    return {
        "base_rss_mib": base,
        "compiled_temp_mib": temp,
        "compile_s": compile_s,
        "device_peak_mib": stats.get("peak_bytes_in_use", float("nan")) / 2**20 if stats else None,
        "step_s": median,
        "times": times,
        "loss": carry[-1],
        "device": str(device.device_kind),
        "devices": len(jax.devices()),
        "versions": {"jax": jax.__version__, "equinox": eqx.__version__, "invjax": ij.__version__},
    }


def normflows_glow(levels, depth, hidden, size):
    """normflows' Glow, built as in its own Glow example (``examples/glow.ipynb``)."""
    import normflows as nf

    q0, merges, flows = [], [], []
    for i in range(levels):
        channels = 3 * 2 ** (levels + 1 - i)
        flows.append([nf.flows.GlowBlock(channels, hidden, split_mode="channel", scale=True) for _ in range(depth)]
                     + [nf.flows.Squeeze()])
        if i > 0:
            merges.append(nf.flows.Merge())
            shape = (3 * 2 ** (levels - i), size // 2 ** (levels - i), size // 2 ** (levels - i))
        else:
            shape = (3 * 2 ** (levels + 1), size // 2**levels, size // 2**levels)
        q0.append(nf.distributions.DiagGaussian(shape))
    return nf.MultiscaleFlow(q0, flows, merges, class_cond=False)


def run_torch(args):
    import normflows as nf
    import torch

    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    model = normflows_glow(args.levels, args.depth, args.hidden, args.size).to(dev)
    x = torch.rand(args.batch, 3, args.size, args.size, device=dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    release()
    base = rss_mib()
    losses = []

    def one():
        optimizer.zero_grad(set_to_none=True)
        loss = model.forward_kld(x)
        loss.backward()
        optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        losses.append(float(loss.detach()))

    median, times = timed(one, args.steps)
    return {
        "base_rss_mib": base,
        "compiled_temp_mib": None,
        "device_peak_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "step_s": median,
        "times": times,
        "loss": losses[-1],
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "versions": {"torch": torch.__version__, "normflows": nf.__version__},
    }


def results_argument(p):
    p.add_argument("--results", type=pathlib.Path, default=RESULTS, help="folder of the results files")


def model_arguments(p, steps=3):
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=steps, help="timed steps after one warm-up step")


def step_arguments(p):
    p.add_argument("--impl", choices=IMPLS, required=True)
    p.add_argument("--size", type=int, default=64, help="height = width of the RGB images")
    p.add_argument("--depth", type=int, default=16, help="flow steps per level")
    model_arguments(p)
    p.add_argument("--host-devices", type=int, default=-1,
                   help="JAX on a CPU: this many host devices (ij.use_cpu_cores), the batch split over them; "
                        "-1 (default): one per core (a divisor of --batch); 0: JAX's default, one device")
    p.add_argument("--compile-only", action="store_true", help="JAX: compiled memory only, no step is run")


def step(args):
    """One configuration in this process: print one JSON line."""
    start = time.perf_counter()
    result = (run_torch if args.impl == "normflows" else run_jax)(args)
    result.update(
        impl=args.impl, size=args.size, depth=args.depth, levels=args.levels, hidden=args.hidden,
        batch=args.batch, peak_rss_mib=run.peak_rss_mib(), wall_s=time.perf_counter() - start,
        python=sys.version.split()[0], machine=f"{platform.machine()}, {os.cpu_count()} cpus",
    )
    print(json.dumps(result), flush=True)


# ---------------------------------------------------------------- sweep: against size and depth

def sweep_arguments(p):
    p.add_argument("--sweep", choices=["size", "depth", "both"], default="both")
    p.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    p.add_argument("--size-depth", type=int, default=16, help="depth per level in the size sweep")
    p.add_argument("--depths", type=int, nargs="+", default=[4, 8, 16, 32, 64, 128])
    p.add_argument("--depth-size", type=int, default=128, help="image size in the depth sweep")
    model_arguments(p)
    p.add_argument("--big-size", type=int, default=1024, help="from this size on, time --big-steps steps")
    p.add_argument("--big-steps", type=int, default=1)
    p.add_argument("--limit-gib", type=float, default=round(run.ram_gib() - 3, 1),
                   help="kill a configuration whose resident memory passes this (default: RAM - 3 GiB)")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--plot-only", action="store_true", help="only redraw the table and figure from the CSV files")
    results_argument(p)


def sweep(args):
    """Both sweeps (or one), then the table and the figure."""
    args.results.mkdir(parents=True, exist_ok=True)
    if not args.plot_only:
        run.write_json(args.results / "glow_machine.json", run.machine_info())
        for kind in (("size", "depth") if args.sweep == "both" else (args.sweep,)):
            sweep_kind(kind, args)
    run.write_text(args.results / "glow_sweep.md", sweep_table(args.results))
    sweep_plot(args.results, args.results / "glow_sweep.png")


def sweep_kind(kind, args):
    """Run the configurations; rows already in the CSV for other configurations are kept."""
    path = args.results / f"glow_{kind}.csv"
    configs = ([(s, args.size_depth) for s in args.sizes] if kind == "size"
               else [(args.depth_size, d) for d in args.depths])
    rows = {(r["impl"], int(r["size"]), int(r["depth"])): r for r in read(args.results, kind)}
    for impl in args.impls:
        failed = False
        for size, depth in configs:
            row = {"impl": impl, "size": size, "depth": depth, "levels": args.levels, "hidden": args.hidden,
                   "batch": args.batch}
            if failed:
                row["status"] = "skipped (a smaller configuration ran out of memory)"
            else:
                steps = args.big_steps if size >= args.big_size else args.steps
                cmd = run.step_cmd(impl, size, depth, "--levels", args.levels, "--hidden", args.hidden,
                                   "--batch", args.batch, "--steps", steps)
                row = run.child(cmd, row, limit_gib=args.limit_gib, timeout=args.timeout)
                failed = row["status"] == "out of memory"
            rows[(impl, size, depth)] = row
            with open(path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows[k] for k in sorted(rows, key=lambda k: (IMPLS.index(k[0]), k[1], k[2])))
            print(f"{kind} sweep: {impl:>9} size {size:>4} depth {depth:>3}: {row['status']:<14} "
                  f"peak {float(row.get('peak_rss_mib') or 0):8.0f} MiB  step {run.fmt(row.get('step_s'), 's')}",
                  flush=True)


def read(results, kind):
    path = pathlib.Path(results) / f"glow_{kind}.csv"
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


def sweep_plot(results, path):
    plt = run.pyplot()
    size_rows, depth_rows = read(results, "size"), read(results, "depth")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    machine = pathlib.Path(results) / "glow_machine.json"
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
    plt.close(fig)
    print(f"wrote {path}")


def sweep_table(results) -> str:
    lines = [f"Written by `{run.command('sweep')}`.", ""]
    for kind, key in (("size", "size"), ("depth", "depth")):
        rows = read(results, kind)
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
    return "\n".join(lines)


# ---------------------------------------------------------------- headline: the largest image that fits

def headline_arguments(p):
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 1536, 2048, 2560, 3072, 4096])
    p.add_argument("--run", type=int, nargs="*", default=[], help="sizes to run one step at")
    results_argument(p)


def headline(args):
    """Compile the invjax step at each size (predicted peak), run it at ``--run``; normflows'
    memory extrapolated from the size sweep's CSV."""
    import numpy as np

    ram = run.ram_gib()
    result = {"ram_gib": round(ram, 1), "predicted": [], "measured": []}
    for size in args.sizes:
        r = run.run_step("invjax", size, 16, "--compile-only")
        predicted = (r["base_rss_mib"] + r["compiled_total_mib"]) / 1024
        result["predicted"].append({"size": size, "compiled_temp_gib": r["compiled_temp_mib"] / 1024,
                                    "predicted_peak_gib": predicted, "fits": predicted < ram})
        print(f"{size}x{size}: compiled temporaries {r['compiled_temp_mib'] / 1024:.2f} GiB, predicted peak "
              f"{predicted:.2f} GiB ({'fits' if predicted < ram else 'does not fit'} in {ram:.1f} GiB)", flush=True)
    for size in args.run:
        r = run.run_step("invjax", size, 16, "--steps", 0)
        result["measured"].append({"size": size, "peak_rss_gib": r["peak_rss_mib"] / 1024, "step_s": r["step_s"]})
        print(f"{size}x{size}: one step took {r['step_s']:.0f} s, peak {r['peak_rss_mib'] / 1024:.2f} GiB", flush=True)
    fits = [row["size"] for row in result["predicted"] if row["fits"]]
    result["largest_fitting_size"] = max(fits) if fits else None

    rows = [r for r in read(args.results, "size") if r["status"] == "ok"]
    torch_rows = [(int(r["size"]) ** 2, float(r["peak_rss_mib"]) / 1024) for r in rows if r["impl"] == "normflows"]
    if len(torch_rows) >= 2:
        slope, intercept = np.polyfit(*zip(*torch_rows, strict=True), 1)
        result["normflows_extrapolated_gib"] = {s: slope * s * s + intercept for s in (1024, 2048)}
    measured_1024 = next((r for r in rows if r["impl"] == "invjax" and int(r["size"]) == 1024), None)
    if measured_1024:
        result["measured"].insert(0, {"size": 1024, "peak_rss_gib": float(measured_1024["peak_rss_mib"]) / 1024,
                                      "step_s": float(measured_1024["step_s"])})
    args.results.mkdir(parents=True, exist_ok=True)
    run.write_json(args.results / "glow_headline.json", result)
    text = headline_table(json.loads(json.dumps(result)))
    run.write_text(args.results / "glow_headline.md", text, echo=False)
    print(text, end="")


def headline_table(result) -> str:
    lines = [f"Glow, 3 levels, depth 16, hidden 64, batch 8, RGB, float32; this machine: {result['ram_gib']:.1f} GiB; "
             f"`{run.command('headline')}`.", "",
             "| size | invjax measured peak (GiB) | invjax s per step | invjax predicted peak (GiB) | "
             "normflows (GiB) |", "|---|---|---|---|---|"]
    extrapolated = {int(s): v for s, v in result.get("normflows_extrapolated_gib", {}).items()}
    measured = {m["size"]: m for m in result["measured"]}
    for row in result["predicted"]:
        m = measured.get(row["size"])
        torch_cell = f"~{extrapolated[row['size']]:.0f} (extrapolated)" if row["size"] in extrapolated else "-"
        ran = f"{m['peak_rss_gib']:.2f} | {m['step_s']:.0f}" if m else "- | -"
        lines.append(f"| {row['size']} | {ran} | {row['predicted_peak_gib']:.2f}"
                     f"{'' if row['fits'] else ' (does not fit)'} | {torch_cell} |")
    lines += ["", f"Largest square size whose step fits: {result['largest_fitting_size']}."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- ratio: interleaved rounds

def ratio_arguments(p):
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--depth", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=3)
    results_argument(p)


def ratio(args):
    """Each round runs the three implementations once each, so slow phases of a shared machine
    hit all three alike; each one's time is the median over the rounds."""
    times = {impl: [] for impl in IMPLS}
    for r in range(args.rounds):
        for impl in IMPLS:
            times[impl].append(run.run_step(impl, args.size, args.depth, "--steps", args.steps)["step_s"])
            print(f"round {r + 1}: {impl:>9} {times[impl][-1]:.3f} s", flush=True)
    data = {"size": args.size, "depth": args.depth, "rounds": args.rounds, "steps": args.steps, "times": times}
    args.results.mkdir(parents=True, exist_ok=True)
    name = args.results / f"glow_ratio_{args.size}_d{args.depth}"
    run.write_json(name.with_suffix(".json"), data)
    text = ratio_table(data)
    run.write_text(name.with_suffix(".md"), text, echo=False)
    print(text, end="")


def ratio_table(data) -> str:
    times, rounds, steps = data["times"], data["rounds"], data["steps"]
    median = {impl: statistics.median(t) for impl, t in times.items()}
    options = [f"--size {data['size']} --depth {data['depth']}"] + [
        f"--{k} {data[k]}" for k, default in (("rounds", 3), ("steps", 3)) if data[k] != default]
    lines = [f"Glow {data['size']}x{data['size']}, depth {data['depth']}, 3 levels, hidden 64, batch 8: seconds per "
             f"step, median of {rounds} interleaved rounds (each the median of {steps} steps after warm-up); "
             f"`{run.command('ratio', *options)}`.", "",
             "| implementation | s per step | rounds |", "|---|---|---|"]
    lines += [f"| {LABELS[i]} | {median[i]:.3g} | {', '.join(f'{t:.3g}' for t in times[i])} |" for i in IMPLS]
    lines += ["", f"invjax / autodiff: {median['invjax'] / median['autodiff']:.2f}; "
              f"invjax / normflows: {median['invjax'] / median['normflows']:.2f}"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- cores: one host device against one per core

def cores_arguments(p):
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    p.add_argument("--normflows", type=int, nargs="*", default=[256, 512], help="sizes to time normflows at")
    p.add_argument("--depth", type=int, default=16)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--append", action="store_true", help="keep the rows of other sizes already in cpu_cores.json")
    results_argument(p)


def cores(args):
    """XLA:CPU runs each convolution on one thread; with one host device per core
    (``ij.use_cpu_cores()``) and the batch split over them, every core works."""

    def one(impl, size, steps, host_devices=0):
        row = run.child(run.step_cmd(impl, size, args.depth, "--steps", steps, "--host-devices", host_devices))
        return row if row["status"] == "ok" else {}  # the table says "failed"

    args.results.mkdir(parents=True, exist_ok=True)
    rows, path = [], args.results / "cpu_cores.json"
    if args.append and path.exists():
        rows = [r for r in json.loads(path.read_text())["rows"] if r["size"] not in args.sizes]
    for size in args.sizes:
        steps = args.steps if size < 512 else max(1, args.steps - 1)
        row = {"size": size}
        for label, n in (("one_device", 1), ("per_core", args.cores)):
            r = one("invjax", size, steps, n)
            row[label] = r.get("step_s")
            row[f"{label}_loss"] = r.get("loss")
        if size in args.normflows:
            row["normflows"] = one("normflows", size, steps).get("step_s")
        print(json.dumps(row), flush=True)
        rows.append(row)
    rows.sort(key=lambda r: r["size"])
    data = {"cores": args.cores, "depth": args.depth, "rows": rows}
    run.write_json(path, data, newline=False)
    text = cores_table(data)
    run.write_text(args.results / "cpu_cores.md", text, echo=False)
    print(text, end="")


def cores_table(data) -> str:
    n, rows = data["cores"], data["rows"]
    lines = [f"Glow step (3 levels, depth {data['depth']}, hidden 64, batch 8, RGB) on {n} CPU cores, "
             f"seconds per step (median after warm-up); `{run.command('cores')}`.", "",
             f"| size | 1 host device | {n} host devices (batch split) | speed-up | normflows | "
             f"invjax (1 device) / normflows | invjax ({n} devices) / normflows |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        nf = r.get("normflows")
        speed = r["one_device"] / r["per_core"] if r["one_device"] and r["per_core"] else float("nan")
        vs = f"{r['per_core'] / nf:.2f}x" if nf and r["per_core"] else ""
        vs1 = f"{r['one_device'] / nf:.2f}x" if nf and r["one_device"] else ""
        fmt = lambda v: "failed" if v is None else f"{v:.3g}"  # noqa: E731
        lines.append(f"| {r['size']} | {fmt(r['one_device'])} | {fmt(r['per_core'])} | {speed:.2f}x | "
                     f"{f'{nf:.3g}' if nf else ''} | {vs1} | {vs} |")
    return "\n".join(lines) + "\n"
