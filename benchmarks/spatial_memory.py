"""Per-device memory of a training step split over space: how large an input fits on N devices,
with each sample split along one spatial axis (slabs) or two (tiles of an image, pencils of a volume).

    python benchmarks/spatial_memory.py                      # both models, 1 4 16 64 256 host devices
    python benchmarks/spatial_memory.py --model glow2d --devices 1 4
    python benchmarks/spatial_memory.py --run 1024           # also run one real step (see below)

For each model, device count N and layout the gradient step of ``-mean(log_prob)`` is
compiled with each sample split over all N devices, ``space=N`` (one axis) or ``space=(r,
r)`` with ``r * r = N`` (two axes), and parameters replicated; XLA's ``memory_analysis()``
gives what each device holds: arguments (its piece of the input, the parameters) + outputs
(the gradients) + temporaries. Nothing is allocated: inputs are ``jax.ShapeDtypeStruct``s,
so a 16384^2 batch compiles on a laptop, for 256 devices declared for compilation alone
(host devices, ``jax_num_cpu_devices``). Each step is traced under ``jax.set_mesh`` (as
``ij.fit`` does), so the CPU-only kernel-gradient loop steps aside and the program is the
one a GPU would get. On a multi-GPU machine pass ``--platform gpu`` and the real GPUs are
used (``benchmarks/gpu.sh --spatial``).

Per-device memory is affine in the number of pixels (parameters and their gradients are
fixed, activations scale), so the two sizes give the line and the largest square (cube)
side whose per-device memory fits 24, 40 and 80 GiB follows; it is rounded down to a
multiple of ``r * 2**levels`` (every level splits evenly; ``r`` the devices along the
most-split axis) and compiled again to confirm. A size whose coarsest level has fewer
rows than devices along an axis is split unevenly by XLA (padded); the table counts the
all-gathers such a program needs.

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
    "glow2d": (dict(in_channels=3, levels=3, depth=16, hidden=64), 8, 3, 2, (8192, 16384), 16384),
    "glow3d": (dict(in_channels=1, levels=3, depth=8, hidden=32, spatial_dims=3), 1, 1, 3, (512, 1024), 1024),
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


def layouts(n: int):
    """``(label, space)`` for ``n`` devices per sample: one axis, and two (a square grid) where
    ``n`` is a square above 1."""
    r = round(n**0.5)
    return [("one axis", n)] + ([("two axes", (r, r))] if n > 1 and r * r == n else [])


def per_device_bytes(jax, model: str, side: int, n: int, space=None) -> dict:
    """Compile the step for ``model`` at ``side`` on the first ``n`` devices, each sample split
    as ``space`` (default ``n``: one axis); bytes per device."""
    import equinox as eqx
    import jax.numpy as jnp

    import invjax as ij

    kwargs, batch, channels, dims, _, _ = MODELS[model]
    if model not in _FLOWS:  # built once per model (parameters are small; building compiles)
        _FLOWS[model] = ij.nets.Glow(**kwargs, key=jax.random.key(0))
    params, static = eqx.partition(_FLOWS[model], eqx.is_inexact_array)
    space = n if space is None else space
    mesh = ij.device_mesh(jax.devices()[:n], space=space)
    shape = (batch, channels, *(side,) * dims)
    P = jax.sharding.PartitionSpec
    x = jax.ShapeDtypeStruct(shape, jnp.float32, sharding=jax.NamedSharding(mesh, P("batch", None, "space", "space2")))
    same = jax.NamedSharding(mesh, P())
    params = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=same), params)

    def loss(params, x):
        return -jnp.mean(eqx.combine(params, static).log_prob(x))

    start = time.perf_counter()
    with jax.set_mesh(mesh):  # as ij.fit traces: layers see that space is split
        compiled = jax.jit(jax.value_and_grad(loss)).lower(params, x).compile()
    m = compiled.memory_analysis()
    total = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
    hlo = compiled.as_text()
    return {"model": model, "side": side, "devices": n, "layout": layouts(n)[0][0] if space == n else "two axes",
            "space": str(space), "total": total, "temp": m.temp_size_in_bytes,
            "arguments": m.argument_size_in_bytes, "outputs": m.output_size_in_bytes,
            "compile_s": round(time.perf_counter() - start, 1), "all_gathers": hlo.count(" all-gather("),
            "collective_permutes": hlo.count(" collective-permute("), "all_reduces": hlo.count(" all-reduce(")}


def largest_side(rows, model, space, budget):
    """The largest side (a multiple of r * 2**levels, r the most devices along one axis) the
    affine fit puts under ``budget`` bytes."""
    kwargs, _, _, dims, sizes, _ = MODELS[model]
    (s0, b0), (s1, b1) = [(r["side"], r["total"]) for r in rows if r["side"] in (sizes[0], sizes[-1])]
    slope = (b1 - b0) / (s1**dims - s0**dims)
    fixed = b0 - slope * s0**dims
    if budget <= fixed:
        return 0
    step = max(space if isinstance(space, tuple) else (space,)) * 2 ** kwargs["levels"]
    return int(((budget - fixed) / slope) ** (1 / dims)) // step * step


def sweep(args):
    jax = _setup(args.platform, max(args.devices))
    rows = []
    for model in args.model:
        _, _, _, dims, sizes, _ = MODELS[model]
        for n in args.devices:
            for label, space in layouts(n):
                fitted = [per_device_bytes(jax, model, side, n, space) for side in sizes]
                for r in fitted:
                    print(json.dumps(r), flush=True)
                rows += fitted
                for budget in BUDGETS_GIB:
                    side = largest_side(fitted, model, space, budget * GIB)
                    if side:
                        check = per_device_bytes(jax, model, side, n, space)
                        check["fits"] = budget
                        print(json.dumps(check), flush=True)
                        rows.append(check)
                    else:
                        rows.append({"model": model, "side": 0, "devices": n, "layout": label, "space": str(space),
                                     "total": 0, "fits": budget})
    return rows


FIELDS = ["model", "side", "devices", "layout", "space", "total", "temp", "arguments", "outputs", "compile_s",
          "all_gathers", "collective_permutes", "all_reduces", "fits"]


def write(rows, out: pathlib.Path, platform: str):
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "spatial_memory.csv", "w", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        w.writerows(rows)
    write_table(rows, out, platform)
    plot(rows, out)


def read(path: pathlib.Path) -> list:
    """The rows of ``spatial_memory.csv`` as ``sweep`` makes them (numbers, no empty fields)."""
    with open(path) as f:
        return [{k: v if k in ("model", "layout", "space") else float(v) if k == "compile_s" else int(v)
                 for k, v in r.items() if v != ""} for r in csv.DictReader(f)]


def write_table(rows, out: pathlib.Path, platform: str):
    lines = []
    for model in dict.fromkeys(r["model"] for r in rows):
        kwargs, batch, channels, dims, sizes, headline = MODELS[model]
        mine = [r for r in rows if r["model"] == model]
        shapes = ["x".join([str(side)] * dims) for side in sizes]
        desc = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        lines += [f"**{model}:** Glow({desc}), batch {batch}, {channels} channel(s)", "",
                  "| devices | split (space) | " + " | ".join(f"per-device GiB at {s}" for s in shapes)
                  + " | all-gathers | " + " | ".join(f"largest side for {b} GiB" for b in BUDGETS_GIB) + " |",
                  "|---:|:---|" + "---:|" * (len(sizes) + 1 + len(BUDGETS_GIB))]
        for n, label in dict.fromkeys((r["devices"], r["layout"]) for r in mine):
            group = [r for r in mine if r["devices"] == n and r["layout"] == label]
            at = {r["side"]: r for r in group if "fits" not in r}
            fits = {r["fits"]: r for r in group if r.get("fits")}
            cells = [f"{at[side]['total'] / GIB:.2f}" for side in sizes]
            gathers = max(r.get("all_gathers", 0) for r in group if "fits" not in r)
            budgets = ["none" if not fits.get(b) or not fits[b]["side"] else
                       f"{fits[b]['side']} ({fits[b]['total'] / GIB:.1f} GiB)" for b in BUDGETS_GIB]
            lines.append(f"| {n} | {label} ({group[0]['space']}) | " + " | ".join(cells) + f" | {gathers} | "
                         + " | ".join(budgets) + " |")
        lines.append("")
    gathers = sum(r.get("all_gathers", 0) for r in rows)
    note = (f"Compiled per-device memory (arguments + outputs + temporaries) from XLA's memory_analysis() on "
            f"{platform} devices; `python benchmarks/spatial_memory.py`. All-gathers in all "
            f"{sum(1 for r in rows if 'all_gathers' in r)} compiled programs: {gathers}.")
    (out / "spatial_memory.md").write_text(note + "\n\n" + "\n".join(lines))
    print("\n".join(lines))


def plot(rows, out: pathlib.Path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for model in dict.fromkeys(r["model"] for r in rows):
        headline, dims = MODELS[model][5], MODELS[model][3]
        for label, style in (("one axis", "o-"), ("two axes", "s--")):
            pts = sorted((r["devices"], r["total"] / GIB) for r in rows if r["model"] == model and
                         r["side"] == headline and "fits" not in r and (r["layout"] == label or r["devices"] == 1))
            if len(pts) > 1:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style,
                        label=f"{model} at {'x'.join([str(headline)] * dims)}, {label}")
    for b in BUDGETS_GIB:
        ax.axhline(b, color="gray", lw=0.8, ls="--")
        ax.text(1, b * 1.05, f"{b} GiB", color="gray", fontsize=8)
    ax.set(xscale="log", yscale="log", xlabel="devices sharing one sample", ylabel="per-device memory (GiB)",
           title="A Glow step split over space (compiled memory)")
    ax.set_xticks(sorted({r["devices"] for r in rows}), labels=[str(d) for d in sorted({r["devices"] for r in rows})])
    ax.legend(fontsize=8)
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
if n > 1:
    jax.set_mesh(mesh)  # as ij.fit traces: layers see that space is split
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
    parser.add_argument("--devices", nargs="+", type=int, default=[1, 4, 16, 64, 256])
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
