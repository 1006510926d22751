"""Per-device memory of a training step split over space: how large an input fits on N devices.

    python benchmarks/spatial_memory.py                      # both models, 1 4 8 16 host devices
    python benchmarks/spatial_memory.py --model glow2d --devices 1 4
    python benchmarks/spatial_memory.py --run 1024           # also run one real step (see below)

For each model and device count the gradient step of ``-mean(log_prob)`` is compiled with
the input split along its first spatial axis over all N devices (``ij.device_mesh(devices,
space=N)``) and parameters replicated, and XLA's ``memory_analysis()`` gives what each
device holds: arguments (its slice of the input, the parameters) + outputs (the gradients)
+ temporaries. Nothing is allocated: inputs are ``jax.ShapeDtypeStruct``s, so a 4096^2
batch compiles on a laptop. On a CPU the devices are host devices
(``jax_num_cpu_devices``); on a multi-GPU machine pass ``--platform gpu`` and the real GPUs
are used (``benchmarks/gpu.sh --spatial``).

Per-device memory is affine in the number of pixels (parameters and their gradients are
fixed, activations scale), so two sizes give the line, a third checks it, and the largest
square (cube) side whose per-device memory fits 24, 40 and 80 GiB follows; it is rounded
down to a multiple of ``N * 2**levels`` (every level splits evenly) and compiled again to
confirm.

``--run SIZE`` also runs one real step of a 2D Glow (3 levels, depth 2, hidden 16, batch 1,
RGB) at SIZE on 4 host devices and on 1,
in fresh processes, and reports their peak resident memory and loss.

Writes ``benchmarks/results/spatial_memory.{csv,md,png}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
GIB = 2**30
# name: (constructor kwargs, batch, channels, spatial dims, sizes to fit the line, headline size)
MODELS = {
    "glow2d": (dict(in_channels=3, levels=3, depth=16, hidden=64), 8, 3, 2, (1024, 2048, 4096), 4096),
    "glow3d": (dict(in_channels=1, levels=3, depth=8, hidden=32, spatial_dims=3), 1, 1, 3, (64, 128, 256), 256),
}
BUDGETS_GIB = (24, 40, 80)
_FLOWS = {}


def _setup(platform: str, devices: int):
    # Before JAX starts its backends: host devices on a CPU; compile faster (XLA's
    # backend optimisation level does not change buffer assignment, so the memory is the same).
    import jax

    if platform == "cpu":
        jax.config.update("jax_platforms", "cpu")
        jax.config.update("jax_num_cpu_devices", devices)
        os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    return jax


def per_device_bytes(jax, model: str, side: int, n: int) -> dict:
    """Compile the step for ``model`` at ``side`` on the first ``n`` devices; bytes per device."""
    import equinox as eqx
    import jax.numpy as jnp

    import invjax as ij

    kwargs, batch, channels, dims, _, _ = MODELS[model]
    if model not in _FLOWS:  # built once per model (parameters are small; building compiles)
        _FLOWS[model] = ij.nets.Glow(**kwargs, key=jax.random.key(0))
    params, static = eqx.partition(_FLOWS[model], eqx.is_inexact_array)
    mesh = ij.device_mesh(jax.devices()[:n], space=n)
    shape = (batch, channels, *(side,) * dims)
    P = jax.sharding.PartitionSpec
    x = jax.ShapeDtypeStruct(shape, jnp.float32, sharding=jax.NamedSharding(mesh, P("batch", None, "space")))
    same = jax.NamedSharding(mesh, P())
    params = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=same), params)

    def loss(params, x):
        return -jnp.mean(eqx.combine(params, static).log_prob(x))

    start = time.perf_counter()
    compiled = jax.jit(jax.value_and_grad(loss)).lower(params, x).compile()
    m = compiled.memory_analysis()
    total = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
    hlo = compiled.as_text()
    return {"model": model, "side": side, "devices": n, "total": total, "temp": m.temp_size_in_bytes,
            "arguments": m.argument_size_in_bytes, "outputs": m.output_size_in_bytes,
            "compile_s": round(time.perf_counter() - start, 1), "all_gathers": hlo.count(" all-gather("),
            "collective_permutes": hlo.count(" collective-permute("), "all_reduces": hlo.count(" all-reduce(")}


def largest_side(rows, model, n, budget):
    """The largest side (multiple of n * 2**levels) the affine fit puts under ``budget`` bytes."""
    kwargs, _, _, dims, sizes, _ = MODELS[model]
    (s0, b0), (s1, b1) = [(r["side"], r["total"]) for r in rows if r["side"] in (sizes[0], sizes[-1])]
    slope = (b1 - b0) / (s1**dims - s0**dims)
    fixed = b0 - slope * s0**dims
    if budget <= fixed:
        return 0
    step = n * 2 ** kwargs["levels"]
    return int(((budget - fixed) / slope) ** (1 / dims)) // step * step


def sweep(args):
    jax = _setup(args.platform, max(args.devices))
    rows = []
    for model in args.model:
        _, _, _, dims, sizes, _ = MODELS[model]
        for n in args.devices:
            fitted = [per_device_bytes(jax, model, side, n) for side in sizes]
            for r in fitted:
                print(json.dumps(r), flush=True)
            rows += fitted
            for budget in BUDGETS_GIB:
                side = largest_side(fitted, model, n, budget * GIB)
                if side:
                    check = per_device_bytes(jax, model, side, n)
                    check["fits"] = budget
                    print(json.dumps(check), flush=True)
                    rows.append(check)
                else:
                    rows.append({"model": model, "side": 0, "devices": n, "total": 0, "fits": budget})
    return rows


def write(rows, out: pathlib.Path, platform: str):
    out.mkdir(parents=True, exist_ok=True)
    fields = ["model", "side", "devices", "total", "temp", "arguments", "outputs", "compile_s", "all_gathers",
              "collective_permutes", "all_reduces", "fits"]
    with open(out / "spatial_memory.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        w.writerows(rows)
    lines = []
    for model in dict.fromkeys(r["model"] for r in rows):
        kwargs, batch, channels, dims, sizes, headline = MODELS[model]
        devs = sorted({r["devices"] for r in rows if r["model"] == model})
        shape = "x".join([str(headline)] * dims)
        desc = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        lines += [f"### {model}: Glow({desc}), batch {batch}, {channels} channel(s)", "",
                  f"| devices | per-device GiB at {shape} | " + " | ".join(
                      f"largest side for {b} GiB" for b in BUDGETS_GIB) + " |",
                  "|---:|---:|" + "---:|" * len(BUDGETS_GIB)]
        for n in devs:
            at = [r for r in rows if r["model"] == model and r["devices"] == n and r["side"] == headline
                  and "fits" not in r]
            fits = {r["fits"]: r for r in rows if r["model"] == model and r["devices"] == n and r.get("fits")}
            cells = []
            for b in BUDGETS_GIB:
                r = fits.get(b)
                cells.append("none" if not r or not r["side"] else f"{r['side']} ({r['total'] / GIB:.1f} GiB)")
            lines.append(f"| {n} | {at[0]['total'] / GIB:.2f} | " + " | ".join(cells) + " |")
        lines.append("")
    gathers = sum(r.get("all_gathers", 0) for r in rows)
    note = (f"Compiled per-device memory (arguments + outputs + temporaries) from XLA's memory_analysis() on "
            f"{platform} devices; `python benchmarks/spatial_memory.py`. All-gathers in all "
            f"{sum(1 for r in rows if 'all_gathers' in r)} compiled programs: {gathers}.")
    (out / "spatial_memory.md").write_text(note + "\n\n" + "\n".join(lines))
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for model in dict.fromkeys(r["model"] for r in rows):
        headline = MODELS[model][5]
        pts = sorted((r["devices"], r["total"] / GIB) for r in rows
                     if r["model"] == model and r["side"] == headline and "fits" not in r)
        dims = MODELS[model][3]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=f"{model} at {'x'.join([str(headline)] * dims)}")
    for b in BUDGETS_GIB:
        ax.axhline(b, color="gray", lw=0.8, ls="--")
        ax.text(1, b * 1.05, f"{b} GiB", color="gray", fontsize=8)
    ax.set(xscale="log", yscale="log", xlabel="devices sharing one sample", ylabel="per-device memory (GiB)",
           title="A Glow step split over space (compiled memory)")
    ax.set_xticks(sorted({r["devices"] for r in rows}), labels=[str(d) for d in sorted({r["devices"] for r in rows})])
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "spatial_memory.png", dpi=120)


RUN = """
import json, resource, sys, time
import jax
jax.config.update("jax_num_cpu_devices", int(sys.argv[2]))
import equinox as eqx, jax.numpy as jnp
import invjax as ij
side, n = int(sys.argv[1]), int(sys.argv[2])
flow = ij.nets.Glow(3, levels=3, depth=2, hidden=16, key=jax.random.key(0))
params, static = eqx.partition(flow, eqx.is_inexact_array)
mesh = ij.device_mesh(jax.devices()[:n], space=n)
x = jax.jit(lambda k: jax.random.uniform(k, (1, 3, side, side)),
            out_shardings=jax.NamedSharding(mesh, jax.sharding.PartitionSpec("batch", None, "space")))(
    jax.random.key(1))
params = ij.replicate(params, mesh)
step = jax.jit(jax.value_and_grad(lambda p, x: -jnp.mean(eqx.combine(p, static).log_prob(x))))
compiled = step.lower(params, x).compile()
m = compiled.memory_analysis()
start = time.perf_counter()
loss, grads = compiled(params, x)
loss = float(loss)
print(json.dumps({"side": side, "devices": n, "loss": loss, "step_s": round(time.perf_counter() - start, 1),
                  "per_device_compiled_gib": (m.argument_size_in_bytes + m.output_size_in_bytes
                                              + m.temp_size_in_bytes) / 2**30,
                  "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def run_real(side: int):
    """One step at ``side`` on 4 host devices and on 1, each in a fresh process."""
    results = []
    for n in (4, 1):
        out = subprocess.run([sys.executable, "-c", RUN, str(side), str(n)], capture_output=True, text=True)
        if out.returncode:
            results.append({"side": side, "devices": n, "error": out.stderr[-500:]})
        else:
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--devices", nargs="+", type=int, default=[1, 4, 8, 16])
    parser.add_argument("--platform", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--results", type=pathlib.Path, default=HERE / "results")
    parser.add_argument("--run", type=int, default=0, help="also run one real 2D step at this side on 4 host devices")
    parser.add_argument("--run-only", action="store_true", help="only the real step")
    args = parser.parse_args()
    if args.run:
        real = run_real(args.run)
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / "spatial_run.json").write_text(json.dumps(real, indent=1))
        if args.run_only:
            return
    write(sweep(args), args.results, args.platform)


if __name__ == "__main__":
    main()
