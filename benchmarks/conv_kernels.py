"""One "same" convolution, its input gradient and its kernel gradient: invjax vs PyTorch.

    python benchmarks/conv_kernels.py            # 1D, 2D, 3D; one core, then every core
    python benchmarks/conv_kernels.py --quick    # small shapes, a smoke test
    python benchmarks/conv_kernels.py --gpu      # on a CUDA GPU (benchmarks/gpu.sh --speed runs it)

Each (library, cores) pair runs in a fresh process, pinned to its cores before the library
loads (``os.sched_setaffinity``; PyTorch also gets ``torch.set_num_threads``), so "one
core" is one thread for both. Every part is jitted (JAX) and timed alone: the median of
``--repeats`` calls after one warm-up call, float32, channels 64 -> 64 (32 for 3D), and the
3x3x3 convolutions a 3D Glow really runs (thin: 4 -> 32, 32 -> 8, ...).

Columns: ``forward`` is ``conv_same`` / ``torch.nn.functional.conv{n}d``; ``input grad``
and ``kernel grad`` are the two halves of its reverse-mode gradient
(``torch.nn.grad.conv{n}d_input`` / ``_weight``). For invjax each part is the one a training
step runs on this platform (on CPU: a volume through XLA's 2D convolution, kernel gradients
as loops of GEMMs where they pay; ``invjax/layers/_conv.py``); ``XLA conv`` is the same part
as XLA's own convolution (invjax's choice on GPU and TPU, and for volumes on CPU before they
went through the 2D convolution). Writes ``benchmarks/results/conv_kernels.{json,md}`` and
the 3D rows, XLA's convolution beside invjax's, as ``conv_kernels_3d.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
CASES = {  # name: (batch, in channels, out channels, spatial, kernel)
    "1D": (8, 64, 64, (65536,), 3),
    "2D": (8, 64, 64, (256, 256), 3),
    "3D": (2, 32, 32, (64, 64, 64), 3),
    # The 3x3x3 convolutions of a 3D Glow's conditioners (one channel in, 3 levels, hidden
    # 32): first (half the channels -> hidden) and last (hidden -> scale and shift) at each
    # level's size, for 64^3 (levels at 32^3, 16^3, 8^3) and 128^3 (64^3) inputs.
    "3D Glow": (2, 4, 32, (32, 32, 32), 3),
    "3D Glow last": (2, 32, 8, (32, 32, 32), 3),
    "3D Glow level 2": (2, 16, 32, (16, 16, 16), 3),
    "3D Glow level 2 last": (2, 32, 32, (16, 16, 16), 3),
    "3D Glow level 3": (2, 64, 32, (8, 8, 8), 3),
    "3D Glow level 3 last": (2, 32, 128, (8, 8, 8), 3),
    "3D Glow 128^3": (2, 4, 32, (64, 64, 64), 3),
    "3D Glow 128^3 last": (2, 32, 8, (64, 64, 64), 3),
}
QUICK = {"1D": (2, 16, 16, (1024,), 3), "2D": (2, 16, 16, (32, 32), 3), "3D": (1, 8, 8, (8, 8, 8), 3),
         "3D thin": (1, 8, 4, (8, 8, 8), 3)}


def _median_ms(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _jax_worker(cases, repeats):
    import jax
    import jax.numpy as jnp

    sys.path.insert(0, str(HERE.parent))
    from invjax.layers._conv import _by_kernel_as_conv, conv_same

    rows = {}
    for name, (batch, in_ch, out_ch, spatial, k) in cases.items():
        n = len(spatial)
        keys = jax.random.split(jax.random.key(0), 3)
        x = jax.random.normal(keys[0], (batch, *spatial, in_ch))
        dy = jax.random.normal(keys[1], (batch, *spatial, out_ch))
        w = jax.random.normal(keys[2], (out_ch, in_ch, *(k,) * n)) * 0.05
        forward = jax.jit(conv_same)
        input_grad = jax.jit(lambda w, dy: jax.vjp(lambda x: conv_same(x, w), x)[1](dy)[0])
        kernel_grad = jax.jit(lambda x, dy: jax.vjp(lambda w: conv_same(x, w), w)[1](dy)[0])
        # XLA's own convolution, alone at the top level (where XLA lays it out as it likes).
        s = "DHW"[3 - n:]
        xla = lambda x, w: jax.lax.conv_general_dilated(x, w, (1,) * n, "SAME",
                                                        dimension_numbers=(f"N{s}C", f"OI{s}", f"N{s}C"))
        xla_forward = jax.jit(xla)
        xla_input_grad = jax.jit(lambda w, dy: jax.vjp(lambda x: xla(x, w), x)[1](dy)[0])
        xla_grad = jax.jit(lambda x, dy: jax.linear_transpose(lambda d: _by_kernel_as_conv(x, d), w)(dy)[0])
        run = lambda f, *a: (lambda: jax.block_until_ready(f(*a)))
        err = jnp.max(jnp.abs(kernel_grad(x, dy) - xla_grad(x, dy))) / jnp.max(jnp.abs(xla_grad(x, dy)))
        rows[name] = {"forward": _median_ms(run(forward, x, w), repeats),
                      "forward_xla_conv": _median_ms(run(xla_forward, x, w), repeats),
                      "input_grad_xla_conv": _median_ms(run(xla_input_grad, w, dy), repeats),
                      "input_grad": _median_ms(run(input_grad, w, dy), repeats),
                      "kernel_grad": _median_ms(run(kernel_grad, x, dy), repeats),
                      "kernel_grad_xla_conv": _median_ms(run(xla_grad, x, dy), repeats),
                      "kernel_grad_rel_diff": float(err)}
    return {"versions": {"jax": jax.__version__}, "rows": rows}


def _torch_worker(cases, repeats, threads, device="cpu"):
    import torch

    torch.set_num_threads(threads)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    timed = lambda f: _median_ms(lambda: (f(), sync()), repeats)
    rows = {}
    for name, (batch, in_ch, out_ch, spatial, k) in cases.items():
        n = len(spatial)
        conv = getattr(torch.nn.functional, f"conv{n}d")
        grad_in, grad_w = getattr(torch.nn.grad, f"conv{n}d_input"), getattr(torch.nn.grad, f"conv{n}d_weight")
        x = torch.randn(batch, in_ch, *spatial, device=device)
        dy = torch.randn(batch, out_ch, *spatial, device=device)
        w = torch.randn(out_ch, in_ch, *(k,) * n, device=device) * 0.05
        with torch.no_grad():
            rows[name] = {"forward": timed(lambda: conv(x, w, padding=k // 2)),
                          "input_grad": timed(lambda: grad_in(x.shape, w, dy, padding=k // 2)),
                          "kernel_grad": timed(lambda: grad_w(x, w.shape, dy, padding=k // 2))}
    return {"versions": {"torch": torch.__version__}, "rows": rows}


def _worker(args):
    cores = sorted(os.sched_getaffinity(0))[: args.cores] if args.cores else sorted(os.sched_getaffinity(0))
    if not args.gpu:
        os.sched_setaffinity(0, cores)  # before the library starts its threads
    cases = QUICK if args.quick else CASES
    if args.worker == "jax":  # on a GPU, JAX's default device is the GPU
        out = _jax_worker(cases, args.repeats)
    else:
        out = _torch_worker(cases, args.repeats, len(cores), "cuda" if args.gpu else "cpu")
    out["cores"] = "GPU" if args.gpu else len(cores)
    print(json.dumps(out), flush=True)


def _ms(value):
    """Milliseconds with three significant figures or so (1893, 35.5, 1.24)."""
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _table(results, cases, volumes=False):
    """The whole table; with ``volumes`` the 3D rows, XLA's own convolution (what invjax ran
    before volumes went through its 2D convolution, and runs on GPU) first."""
    if volumes:
        lines = ["| case | cores | part | XLA's 3D conv (ms) | invjax (ms) | PyTorch (ms) | XLA / PyTorch | "
                 "invjax / PyTorch |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    else:
        lines = ["| case | cores | part | invjax (ms) | PyTorch (ms) | invjax / PyTorch | XLA conv (ms) |",
                 "|---|---:|---|---:|---:|---:|---:|"]
    for cores in sorted({r["cores"] for r in results.values()}, key=str):
        ours, theirs = results[f"jax-{cores}"]["rows"], results[f"torch-{cores}"]["rows"]
        for name, (batch, in_ch, out_ch, spatial, k) in cases.items():
            if volumes and len(spatial) != 3:
                continue
            label = f"{name} {batch}x{'x'.join(map(str, spatial))}, {in_ch} -> {out_ch}, {k}^{len(spatial)}"
            for part in ("forward", "input_grad", "kernel_grad"):
                a, b, xla = ours[name][part], theirs[name][part], ours[name].get(f"{part}_xla_conv")
                what = part.replace("_", " ")
                if volumes:
                    lines.append(f"| {label} | {cores} | {what} | {_ms(xla)} | {_ms(a)} | {_ms(b)} | {xla / b:.2f}x | "
                                 f"**{a / b:.2f}x** |")
                else:
                    lines.append(f"| {label} | {cores} | {what} | {_ms(a)} | {_ms(b)} | {a / b:.2f}x | "
                                 f"{'' if xla is None else _ms(xla)} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small shapes (a smoke test, not a measurement)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--gpu", action="store_true", help="on the GPU (JAX's default device; PyTorch on cuda)")
    p.add_argument("--worker", choices=["jax", "torch"], help=argparse.SUPPRESS)
    p.add_argument("--cores", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return _worker(args)
    every = len(os.sched_getaffinity(0))
    results = {}
    for cores in [every] if args.gpu else sorted({1, every}):
        for lib in ("jax", "torch"):
            cmd = [sys.executable, __file__, "--worker", lib, "--cores", str(cores), "--repeats", str(args.repeats)]
            extra = ["--quick"] if args.quick else []
            out = subprocess.run(cmd + extra + (["--gpu"] if args.gpu else []), capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"{lib} on {cores} core(s) failed:\n{out.stderr[-2000:]}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            results[f"{lib}-{result['cores']}"] = result
    table = _table(results, QUICK if args.quick else CASES)
    print(table)
    if not args.quick:
        out = HERE / "results" / ("gpu" if args.gpu else "")
        out.mkdir(parents=True, exist_ok=True)
        (out / "conv_kernels.json").write_text(json.dumps(results, indent=1))
        write_tables(results, out)


def write_tables(results, out: pathlib.Path):
    """``conv_kernels.md`` and its 3D rows, ``conv_kernels_3d.md``, from the results (``render.py`` too)."""
    gpu = any(r["cores"] == "GPU" for r in results.values())
    how = f"{'' if gpu else ' pinned to its cores'}; `python benchmarks/conv_kernels.py{' --gpu' if gpu else ''}`."
    (out / "conv_kernels.md").write_text("One convolution and its two gradients, float32, median of 3 after warm-up, "
                                         f"each library in a fresh process{how}\n\n{_table(results, CASES)}\n")
    (out / "conv_kernels_3d.md").write_text("The 3D rows of `conv_kernels.md`: float32, median of 3 after warm-up, "
                                            f"each library in a fresh process{how}\n\n"
                                            f"{_table(results, CASES, volumes=True)}\n")


if __name__ == "__main__":
    main()
