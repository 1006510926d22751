"""``glow.py volumes``: a 3D Glow training step, invjax vs PyTorch, time and memory against the volume's size.

    python benchmarks/glow.py volumes                  # 32^3 64^3 128^3: 3 levels, depth 8, hidden 32, batch 2
    python benchmarks/glow.py volumes --sizes 32 64 --impls invjax torch --steps 5
    python benchmarks/glow.py volumes --largest        # the largest cube each configuration fits in 24 GiB
    python benchmarks/glow.py volumes --quick          # smoke test: 16^3, 2 levels, depth 2, temporary folder
    python benchmarks/glow.py volumes --check          # parameter counts and log-likelihood, invjax vs PyTorch
    python benchmarks/glow.py volumes --gpu            # on a CUDA GPU (bash benchmarks/gpu.sh --volumes)

The model is ``ij.nets.Glow(in_channels=1, levels, depth, hidden, spatial_dims=3)`` on a
batch of one-channel volumes ``(B, 1, N, N, N)``, float32. No PyTorch library has a 3D Glow
(normflows' ``GlowBlock`` is 2D), so the PyTorch side is a plain-PyTorch Glow written for
this benchmark with the same architecture (``_torch_glow3d.py``): 2x2x2 space-to-depth
squeeze, ActNorm, LU 1x1x1 convolution, affine coupling with a 3^3 - 1^3 - 3^3 ReLU
conditioner (last convolution zero) and a sigmoid scale in (0.5, 2), half of the channels
factored out per level. Before measuring, a check (``--check``) counts both models'
parameters and copies invjax's (perturbed, so that no layer is the identity) into the
PyTorch model: both log-likelihoods and their gradients with respect to the input must agree.

A training step is the mean negative log-likelihood (nats), its gradient and an Adam
update. Configurations (``--impls``):

- ``invjax``: the invertible backward on JAX's one host device;
- ``invjax-cores``: the same with one host device per core and the batch split over them,
  as the 2D benchmarks run JAX on a CPU (``glow.py step``, ``glow.py cores``:
  ``ij.use_cpu_cores(batch_size=B)``, so the device count divides the batch: with batch 2,
  two devices however many cores there are);
- ``autodiff``: ``ij.with_backprop(flow, ij.Autodiff())`` on one host device, so that it
  differs from ``invjax`` in the backward alone;
- ``torch``: the PyTorch model, ``torch.set_num_threads(cores)``.

Each configuration runs in a fresh process (``--one``) pinned to ``--cores`` cores
(``os.sched_setaffinity``, before the library starts its threads) and watched by this one:
its resident memory is polled and it is killed at ``--limit-gib`` (recorded as out of
memory, as in ``glow.py sweep``; ``_runner.child``). The JAX runs are ``glow.py step``'s (``run_jax``) with
this 3D Glow in place of its 2D one: ``s/step`` is the median of ``--steps`` steps after a
warm-up step that follows compilation (``compile s``: tracing, lowering and XLA's
compilation); ``compiled temporaries`` is XLA's ``memory_analysis().temp_size_in_bytes``
of the step; ``peak RSS`` is the process's peak resident memory (``getrusage``: the
interpreter, the library and, for JAX, the compiler included). With ``--gpu`` JAX's
default device is the GPU, PyTorch runs on ``cuda``, and memory is the device's peak
(JAX: ``memory_stats()["peak_bytes_in_use"]``, PyTorch: ``torch.cuda.max_memory_allocated``).

``--largest`` finds, per configuration, the largest cube side (a multiple of
``2**levels``) whose training step fits ``--limit-gib``: starting from the smallest of
``--sizes`` it doubles the side until a step does not fit, then bisects. A probe is a fresh
process. A measured probe compiles and runs one step; it fits when it finishes with its
peak (RSS on a CPU, the device's on a GPU) under the limit; a process killed at the limit,
one that fails to allocate, or one past ``--timeout`` does not. PyTorch and the GPU search
with measured probes. JAX on a CPU searches with compiled ones, which stop after
compilation: the step's peak is at least the process's memory before it plus the
compiled temporaries, so where that passes the limit the step does not fit, without
running it (a step of a large volume takes minutes here); one measured probe then confirms
the size found (and if it does not fit, measured probes search below it).

Writes ``glow3d.json``, ``glow3d.md`` and ``glow3d.png`` to ``benchmarks/results/`` (with
``--gpu`` to ``benchmarks/results/gpu/``; ``--quick`` to a temporary folder; ``--results
DIR`` anywhere). The speed table and the largest sizes are kept apart in the JSON file, so
``--largest`` adds to a speed run of the same model rather than replacing it.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import _glow2d
import _runner as run
from _runner import HERE, peak_rss_mib, release, rss_mib, timed

IMPLS = ("invjax", "invjax-cores", "autodiff", "torch")
LABELS = {"invjax": "invjax (1 host device)", "invjax-cores": "invjax (a host device per core)",
          "autodiff": "invjax with plain autodiff", "torch": "PyTorch"}
STYLES = {"invjax": "s-", "invjax-cores": "D-", "autodiff": "o--", "torch": "^-"}
COLORS = {impl: f"C{i}" for i, impl in enumerate(IMPLS)}
DEFAULTS = dict(sizes=[32, 64, 128], levels=3, depth=8, steps=3)
QUICK = dict(sizes=[16], levels=2, depth=2, steps=2)
# The model and the machine; results of another in the JSON file are dropped, not mixed.
MODEL_KEYS = ("levels", "depth", "hidden", "batch", "gpu", "cores")


# ---------------------------------------------------------------- one configuration (a child)

# ``_glow2d.glow_training_step`` for one-channel volumes: ``(flow, x, params, opt_state, step)``.
glow3d_training_step = functools.partial(_glow2d.glow_training_step, channels=1, spatial_dims=3)


def run_jax(args) -> dict:
    """``_glow2d.run_jax`` (compile, place on the host devices, time) with the 3D Glow."""
    step_args = argparse.Namespace(
        impl="autodiff" if args.one == "autodiff" else "invjax", size=args.size, depth=args.depth,
        levels=args.levels, hidden=args.hidden, batch=args.batch, steps=args.steps, compile_only=args.compile_only,
        host_devices=-1 if args.one == "invjax-cores" else 0)  # -1: one per core, a divisor of the batch
    return _glow2d.run_jax(step_args, build=glow3d_training_step)


def run_torch(args) -> dict:
    """The PyTorch model's step, timed as ``glow.py step`` times normflows'."""
    import torch
    from _torch_glow3d import Glow3d

    torch.manual_seed(0)
    if not args.gpu:
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    device = torch.device("cuda" if args.gpu else "cpu")
    model = Glow3d(1, args.levels, args.depth, args.hidden).to(device)
    x = torch.rand(args.batch, 1, args.size, args.size, args.size, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    release()
    base, losses = rss_mib(), []

    def one():
        optimizer.zero_grad(set_to_none=True)
        loss = -model.log_prob(x).mean()
        loss.backward()
        optimizer.step()
        if args.gpu:
            torch.cuda.synchronize()
        losses.append(float(loss.detach()))

    median, times = timed(one, args.steps)
    return {"base_rss_mib": base, "compiled_temp_mib": None, "compile_s": None, "step_s": median, "times": times,
            "device_peak_mib": torch.cuda.max_memory_allocated() / 2**20 if args.gpu else None,
            "loss": losses[-1], "device": torch.cuda.get_device_name() if args.gpu else "cpu",
            "versions": {"torch": torch.__version__}}


def check(args) -> dict:
    """Parameter counts of both models, and their log-likelihoods and input gradients on one batch."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import jax.random as jr
    import numpy as np
    import torch
    from _torch_glow3d import Glow3d, load_invjax

    import invjax as ij

    flow = ij.nets.Glow(1, args.levels, args.depth, args.hidden, spatial_dims=3, key=jr.key(0))
    params, static = eqx.partition(flow, eqx.is_inexact_array)
    leaves, tree = jax.tree_util.tree_flatten_with_path(params)
    keys = jr.split(jr.key(2), len(leaves))
    # Perturb the parameters: a new Glow is the identity (zero last convolutions, ActNorm at
    # one and zero), which would agree with almost any model. The LU factors stay a
    # rotation's (their log-scales move): noise on the factors of a 128-channel matrix
    # leaves it ill-conditioned (condition number ~300), and the float32 inverses of
    # invjax's backward then differ from autodiff's gradient by 1%, blurring the comparison.
    leaves = [p if any(getattr(k, "name", None) in ("lower", "upper") for k in path) else
              p + 0.05 * jr.normal(key, p.shape) for (path, p), key in zip(leaves, keys, strict=True)]
    flow = eqx.combine(jax.tree.unflatten(tree, leaves), static)
    model = load_invjax(Glow3d(1, args.levels, args.depth, args.hidden), flow)
    side = 2 ** (args.levels + 1)
    x = np.random.default_rng(0).random((2, 1, side, side, side), dtype=np.float32)
    ours = np.asarray(flow.log_prob(jnp.asarray(x)))  # per sample
    ours_grad = np.asarray(jax.grad(lambda v: jnp.sum(flow.log_prob(v)))(jnp.asarray(x)))
    xt = torch.from_numpy(x).requires_grad_()
    theirs = model.log_prob(xt)
    theirs.sum().backward()
    relative = lambda a, b: float(np.max(np.abs(a - b)) / np.max(np.abs(b)))  # noqa: E731
    return {"params_invjax": int(sum(p.size for p in leaves)),
            "params_torch": int(sum(p.numel() for p in model.parameters())),
            "log_prob_invjax": ours.tolist(), "log_prob_torch": theirs.detach().tolist(),
            "log_prob_rel_diff": relative(ours, theirs.detach().numpy()),
            "input_grad_rel_diff": relative(ours_grad, xt.grad.numpy()),
            "check_size": side}


def one(args):
    """Run one configuration (or the check) in this process and print one JSON line."""
    if not args.gpu:  # before the library starts its threads
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
    start = time.perf_counter()
    if args.one == "check":
        result = check(args)
    else:
        result = (run_torch if args.one == "torch" else run_jax)(args)
        result.update(size=args.size, peak_rss_mib=peak_rss_mib())
    result.update(impl=args.one, wall_s=time.perf_counter() - start)
    print(json.dumps(result), flush=True)


# ---------------------------------------------------------------- the driver

def child(impl, size, args, steps=None, compile_only=False) -> dict:
    """One configuration in a fresh, watched process; its row (``status`` "ok" or why not)."""
    steps = args.steps if steps is None else steps
    cmd = [sys.executable, str(HERE / "glow.py"), "volumes", "--one", impl, "--steps", str(steps),
           "--levels", str(args.levels), "--depth", str(args.depth), "--hidden", str(args.hidden),
           "--batch", str(args.batch), "--cores", str(args.cores)]
    on_gpu = args.gpu and impl != "check"  # the check is small: on the CPU
    cmd += (["--size", str(size)] if size else []) + (["--gpu"] if on_gpu else [])
    cmd += ["--compile-only"] if compile_only else []
    # On a CPU keep JAX off any GPU the machine has; on a GPU insist on it, and let JAX allocate
    # what it uses rather than most of the device, so that its peak compares with PyTorch's.
    env = dict(os.environ, JAX_PLATFORMS="cuda" if on_gpu else "cpu", XLA_PYTHON_CLIENT_PREALLOCATE="false")
    row = {"impl": impl, "size": size, "steps": steps, "compile_only": compile_only}
    limit = None if on_gpu or impl == "check" else args.limit_gib
    return run.child(cmd, row, limit_gib=limit, timeout=args.timeout, env=env)


def peak_mib(row):
    """The device's peak on a GPU, else the process's peak resident memory."""
    return row.get("device_peak_mib") if row.get("device_peak_mib") is not None else row.get("peak_rss_mib")


def fits(row, args) -> bool:
    return row["status"] == "ok" and peak_mib(row) <= args.limit_gib * 1024


def largest(impl, args, probes) -> dict:
    """The largest side (a multiple of ``2**levels``) whose step fits: double, then bisect.

    For JAX on a CPU the search runs on compiled steps alone (``predict``), each process
    stopping after compilation, and one measured step confirms the answer (searching down
    with measured steps if it does not fit): a step that would not fit then costs a
    compilation, not the run up to the limit.
    """
    unit = 2**args.levels
    tried = {}

    def probe(size, compile_only=False):
        if (size, compile_only) not in tried:
            row = child(impl, size, args, steps=0, compile_only=compile_only)  # compilation (and one step)
            if compile_only:
                ok = row["status"] == "ok" and prediction(row) <= args.limit_gib * 1024
                seen = f"predicted {run.fmt(prediction(row), 'MiB', '.0f')}"
            else:
                ok = fits(row, args)
                seen = f"peak {run.fmt(peak_mib(row), 'MiB', '.0f')}"
            verdict = "fits" if ok else row["status"] if row["status"] != "ok" else "over the limit"
            print(f"largest {impl:>12} {size:>5}^3: {verdict:<14} {seen}", flush=True)
            tried[size, compile_only] = ok
            probes.append(row)
        return tried[size, compile_only]

    predict = impl != "torch" and not args.gpu
    test = (lambda size: probe(size, compile_only=True)) if predict else probe
    good, bad, size = 0, None, max(unit, min(args.sizes) // unit * unit)
    while size <= args.max_size and bad is None:
        good, bad, size = (size, None, 2 * size) if test(size) else (good, size, size)
    if bad is not None:
        good, bad = _bisect(test, good, bad, unit)
    if predict and good and not probe(good):
        bad = good
        good, bad = _bisect(probe, 0, good, unit)
    measured = [r for r in probes if r["impl"] == impl and r.get("step_s") is not None]
    best = next((r for r in measured if r["size"] == good), {})
    result = {"impl": impl, "largest": good or None, "peak_mib": peak_mib(best) if best else None,
              "compiled_temp_mib": best.get("compiled_temp_mib"), "first_not_fitting": bad, "why": None}
    if bad is not None:
        worst = [r for r in probes if r["impl"] == impl and r["size"] == bad][-1]
        result["why"] = (worst["status"] if worst["status"] != "ok" else
                         f"predicted {prediction(worst):.0f} MiB" if worst.get("step_s") is None else
                         f"peak {peak_mib(worst):.0f} MiB")
    return result


def _bisect(test, good, bad, unit):
    """Narrow ``good < bad`` (``test(good)`` true, ``test(bad)`` false) to neighbouring multiples of ``unit``."""
    while bad - good > unit:
        middle = (good + bad) // 2 // unit * unit
        good, bad = (middle, bad) if test(middle) else (good, middle)
    return good, bad


def prediction(row):
    """A lower bound of a JAX step's peak RSS: the process before the step (model, batch, optimiser
    state, executable) plus the compiled temporaries (the outputs reuse the donated arguments)."""
    return row["base_rss_mib"] + row["compiled_temp_mib"] if row["status"] == "ok" else None


def _added(commands, command):
    return [c for c in commands or [] if run.current(c) != command] + [command]


def table(data) -> str:
    c, gpu = data["config"], data["config"]["gpu"]
    where = f"a GPU ({data['machine'].get('gpu', 'CUDA')})" if gpu else f"{c['cores']} CPU cores"
    lines = [f"**3D Glow training step, invjax vs PyTorch ({where})**", "",
             f"`ij.nets.Glow(in_channels=1, levels={c['levels']}, depth={c['depth']}, hidden={c['hidden']}, "
             f"spatial_dims=3)`, batch {c['batch']}, float32; a step is the mean negative log-likelihood, its "
             "gradient and an Adam update. PyTorch: the same architecture in plain PyTorch "
             "(`benchmarks/_torch_glow3d.py`; no PyTorch library has a 3D Glow).", ""]
    k = data.get("check")
    if k:
        lines += [f"Check: parameters invjax {k['params_invjax']:,}, PyTorch {k['params_torch']:,}; with "
                  f"invjax's (perturbed) parameters loaded, the log-likelihoods of a {k['check_size']}^3 batch "
                  f"differ by {k['log_prob_rel_diff']:.1e} (relative), their input gradients by "
                  f"{k['input_grad_rel_diff']:.1e}.", ""]
    memory = "device peak MiB" if gpu else "peak RSS MiB"
    speed = data.get("speed")
    if speed:
        steps = "/".join(str(n) for n in sorted({r["steps"] for r in speed["rows"]}))
        lines += [f"Seconds per step: the median of {steps} steps after a warm-up step; "
                  + "; ".join(f"`{run.current(c)}`" for c in speed["commands"]) + ".", "",
                  f"| size | impl | s/step | / torch | {memory} | compiled temporaries MiB | compile s |",
                  "|---:|---|---:|---:|---:|---:|---:|"]
        for size in sorted({r["size"] for r in speed["rows"]}):
            rows = [r for r in speed["rows"] if r["size"] == size]
            torch_s = next((r.get("step_s") for r in rows if r["impl"] == "torch" and r["status"] == "ok"), None)
            for r in rows:
                if r["status"] != "ok":
                    lines.append(f"| {size}^3 | {r['impl']} | {r['status'].split(':')[0]} | | "
                                 f"{run.fmt(r.get('peak_rss_mib'), '', '.0f')} | | |")
                    continue
                ratio = f"{r['step_s'] / torch_s:.2f}x" if torch_s else "-"
                lines.append(f"| {size}^3 | {r['impl']} | {r['step_s']:.3g} | {ratio} | "
                             f"{run.fmt(peak_mib(r), '', '.0f')} | {run.fmt(r.get('compiled_temp_mib'), '', '.0f')} | "
                             f"{run.fmt(r.get('compile_s'), '', '.1f')} |")
        lines.append("")
    big = data.get("largest")
    if big:
        lines += [f"Largest cube whose step fits {big['limit_gib']:g} GiB ({memory.replace(' MiB', '')}; sides "
                  f"multiples of {2 ** c['levels']}, doubled then bisected; JAX on a CPU on compiled steps, "
                  "then a measured step at the answer, PyTorch and GPUs on measured steps); "
                  + "; ".join(f"`{run.current(c)}`" for c in big["commands"]) + ".", "",
                  f"| impl | largest side | {memory} there | compiled temporaries MiB | next side | why not |",
                  "|---|---:|---:|---:|---:|---|"]
        for r in big["results"]:
            side = f"{r['largest']}^3" if r["largest"] else "none"
            nxt = f"{r['first_not_fitting']}^3" if r["first_not_fitting"] else f"(all to {big['max_size']}^3 fit)"
            lines.append(f"| {r['impl']} | {side} | {run.fmt(r.get('peak_mib'), '', '.0f')} | "
                         f"{run.fmt(r.get('compiled_temp_mib'), '', '.0f')} | {nxt} | {r.get('why') or ''} |")
        lines.append("")
    m = data["machine"]
    lines.append(f"Machine: {m.get('cpu', m.get('machine'))}, {m.get('cpus')} CPUs, {m.get('memory_gib')} GiB; "
                 f"jax {m.get('jax')}, torch {m.get('torch')}, invjax {m.get('invjax')}.")
    return "\n".join(lines) + "\n"


def plot(data, path):
    import matplotlib.ticker

    plt = run.pyplot()

    gpu = data["config"]["gpu"]
    rows = [r for r in (data.get("speed") or {}).get("rows", []) if r["status"] == "ok"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for impl in IMPLS:
        mine = sorted((r for r in rows if r["impl"] == impl), key=lambda r: r["size"])
        if mine:
            sizes = [r["size"] for r in mine]
            left.plot(sizes, [r["step_s"] for r in mine], STYLES[impl], color=COLORS[impl], label=LABELS[impl])
            right.plot(sizes, [peak_mib(r) / 1024 for r in mine], STYLES[impl], color=COLORS[impl],
                       label=LABELS[impl])
    big = data.get("largest")
    if big:
        right.axhline(big["limit_gib"], color="grey", linestyle=":", label=f"limit {big['limit_gib']:g} GiB")
        for r in big["results"]:
            if r.get("largest") and r.get("peak_mib"):
                right.plot([r["largest"]], [r["peak_mib"] / 1024], "*", color=COLORS[r["impl"]], markersize=12,
                           label=f"{r['impl']}: largest {r['largest']}^3")
    c = data["config"]
    title = f"3D Glow, {c['levels']} levels, depth {c['depth']}, hidden {c['hidden']}, batch {c['batch']}"
    left.set(xlabel="volume side N (N^3 voxels)", ylabel="seconds per training step", title=title)
    right.set(xlabel="volume side N (N^3 voxels)", ylabel="device peak (GiB)" if gpu else "peak RSS (GiB)",
              title="peak memory")
    sides = sorted({r["size"] for r in rows} | {r["largest"] for r in (big or {}).get("results", []) if r["largest"]})
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sides, [str(n) for n in sides], minor=False)
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def volumes_arguments(p):
    p.add_argument("--sizes", type=int, nargs="+", help="cube sides (default 32 64 128; --largest starts at the "
                   "smallest)")
    p.add_argument("--impls", nargs="+", choices=IMPLS, help="default: all (on a GPU: all but invjax-cores)")
    p.add_argument("--levels", type=int, help="default 3")
    p.add_argument("--depth", type=int, help="flow steps per level (default 8)")
    p.add_argument("--hidden", type=int, default=32, help="channels of the conditioners")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, help="timed steps after one warm-up step (default 3)")
    p.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)), help="cores each run is pinned to")
    p.add_argument("--largest", action="store_true", help="the largest cube each configuration fits in --limit-gib")
    p.add_argument("--limit-gib", type=float, default=24.0, help="memory limit: a run is killed above it (CPU), and "
                   "--largest counts what stays under it")
    p.add_argument("--max-size", type=int, default=1024, help="--largest: the largest side tried")
    p.add_argument("--timeout", type=float, default=3600, help="seconds a run may take before it is killed")
    p.add_argument("--check", action="store_true", help="only the parameter-count and log-likelihood check")
    p.add_argument("--quick", action="store_true", help="smoke test: 16^3, 2 levels, depth 2, a temporary folder")
    p.add_argument("--gpu", action="store_true", help="on a CUDA GPU (JAX's default device, PyTorch on cuda)")
    p.add_argument("--results", type=pathlib.Path, help="folder for the JSON, table and plot")
    p.add_argument("--one", choices=IMPLS + ("check",), help=argparse.SUPPRESS)  # a child: one configuration
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--compile-only", action="store_true", help=argparse.SUPPRESS)


def volumes(args):
    """The speed table (or ``--largest``, ``--check``; ``--one``: one configuration, a child)."""
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.one:
        return one(args)
    args.impls = args.impls or [i for i in IMPLS if not (args.gpu and i == "invjax-cores")]
    if args.gpu and "invjax-cores" in args.impls:
        args.error("invjax-cores splits the batch over a CPU's host devices; on a GPU leave it out")
    unit = 2**args.levels
    if any(s % unit for s in args.sizes):
        args.error(f"every size must be a multiple of 2**levels = {unit}, got {args.sizes}")
    if args.results is None:
        args.results = (pathlib.Path(tempfile.mkdtemp(prefix="glow3d-")) if args.quick
                        else HERE / "results" / ("gpu" if args.gpu else ""))
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / "glow3d.json"

    config = {k: getattr(args, k) for k in MODEL_KEYS} | {"cores": None if args.gpu else args.cores}
    data = json.loads(path.read_text()) if path.exists() else {}
    if {k: data.get("config", {}).get(k) for k in MODEL_KEYS} != {k: config[k] for k in MODEL_KEYS}:
        data = {}  # another model: start afresh
    data.update(config=config, machine=run.machine_info())
    if args.gpu:
        data["machine"]["gpu"] = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                                capture_output=True, text=True).stdout.strip().splitlines()[0]
    command = args.command_line

    def save():
        path.write_text(json.dumps(data, indent=1) + "\n")
        (args.results / "glow3d.md").write_text(table(data))

    checked = child("check", None, args)
    if checked["status"] != "ok":
        raise SystemExit(f"the check failed: {checked['status']}")
    data["check"] = {k: v for k, v in checked.items() if k not in ("impl", "size", "status")}
    k = data["check"]
    print(f"parameters: invjax {k['params_invjax']:,}, PyTorch {k['params_torch']:,}; log-likelihoods "
          f"{k['log_prob_invjax']} vs {k['log_prob_torch']} (relative difference "
          f"{k['log_prob_rel_diff']:.1e}), input gradients {k['input_grad_rel_diff']:.1e}", flush=True)
    if args.check:
        return save()
    # Rows of other configurations from earlier runs of the same model stay (glow.py sweep
    # does the same), so a size or an implementation can be added or rerun alone.
    if args.largest:
        big = data.get("largest") or {}
        if (big.get("limit_gib"), big.get("max_size")) != (args.limit_gib, args.max_size):
            big = {}
        big = data["largest"] = {"commands": _added(big.get("commands"), command), "limit_gib": args.limit_gib,
                                 "max_size": args.max_size, "results": big.get("results", []),
                                 "probes": [r for r in big.get("probes", []) if r["impl"] not in args.impls]}
        for impl in args.impls:
            result = largest(impl, args, big["probes"])
            big["results"] = [r for r in big["results"] if r["impl"] != impl] + [result]
            big["results"].sort(key=lambda r: IMPLS.index(r["impl"]))
            save()
    else:
        speed = data.get("speed") or {}
        rerun = {(i, s) for i in args.impls for s in args.sizes}
        speed = data["speed"] = {"commands": _added(speed.get("commands"), command),
                                 "rows": [r for r in speed.get("rows", []) if (r["impl"], r["size"]) not in rerun]}
        failed = set()
        for size in sorted(args.sizes):
            for impl in args.impls:
                if impl in failed:  # a smaller volume did not fit
                    row = {"impl": impl, "size": size, "status": "skipped (a smaller size ran out of memory)"}
                else:
                    row = child(impl, size, args)
                    failed |= {impl} if row["status"] == "out of memory" else set()
                speed["rows"].append(row)
                speed["rows"].sort(key=lambda r: (r["size"], IMPLS.index(r["impl"])))
                print(f"{impl:>12} {size:>4}^3: {row['status']:<14} step {run.fmt(row.get('step_s'), 's')}  "
                      f"peak {run.fmt(peak_mib(row), 'MiB', '.0f')}  compiled temporaries "
                      f"{run.fmt(row.get('compiled_temp_mib'), 'MiB', '.0f')}  "
                      f"compile {run.fmt(row.get('compile_s'), 's')}",
                      flush=True)
                save()
    save()
    plot(data, args.results / "glow3d.png")
    print(f"wrote {path}, glow3d.md and glow3d.png")
