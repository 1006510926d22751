"""Per-network figures: compiled memory flat in depth (both directions), gradient
agreement with autodiff, float32 reconstruction drift at depth 64.

    python benchmarks/network_report.py      # writes benchmarks/results/networks.md

Memory is XLA's compiled temporary size of a gradient step (what the step needs beyond
its inputs and outputs), for maximum likelihood (``log_prob``) and for a reverse-KL-style
loss of ``sample_and_log_prob``; invertible backward vs the same flow under
``ij.with_backprop(flow, ij.Autodiff())``. Every parameter is perturbed by 0.01-scale noise
so that no layer is the identity. Float32 throughout.
"""

from __future__ import annotations

import argparse
import pathlib
import platform

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from engine_report import perturb

import invjax as ij

K = jr.key(0)
# name: (depth -> flow, x shape, cond shape or None)
NETWORKS = {
    "RealNVP (D=16)": (lambda d: ij.nets.RealNVP(16, d, 64, key=K), (64, 16), None),
    "RealNVP, conditional (D=16, K=4)": (
        lambda d: ij.nets.RealNVP(16, d, 64, cond_channels=4, key=K), (64, 16), (64, 4)),
    "Glow (3 levels, 1x32x32)": (lambda d: ij.nets.Glow(1, 3, d, 16, key=K), (4, 1, 32, 32), None),
    "Glow, conditional (2 levels, map cond)": (
        lambda d: ij.nets.Glow(1, 2, d, 16, cond_channels=1, cond_spatial=True, key=K), (4, 1, 32, 32), (4, 1, 32, 32)),
    "HINT (4x32x32)": (lambda d: ij.nets.HINT(4, d, 16, key=K), (4, 4, 32, 32), None),
    "MultiscaleHINT (3 levels, 1x32x32)": (lambda d: ij.nets.MultiscaleHINT(1, 3, d, 16, key=K), (4, 1, 32, 32), None),
    "MultiscaleHINT 3D (2 levels, 1x16^3)": (
        lambda d: ij.nets.MultiscaleHINT(1, 2, d, 8, key=K, spatial_dims=3), (2, 1, 16, 16, 16), None),
    "Hyperbolic (2 levels, 1x32x32)": (lambda d: ij.nets.Hyperbolic(1, 2, d, 16, key=K), (4, 1, 32, 32), None),
    "ConditionalHINT (x, y: 2x32x32)": (
        lambda d: ij.nets.ConditionalHINT(2, d, 16, cond_channels=2, key=K), (4, 2, 32, 32), (4, 2, 32, 32)),
    "MultiscaleConditionalHINT (2 levels)": (
        lambda d: ij.nets.MultiscaleConditionalHINT(1, 2, d, 16, cond_channels=1, key=K),
        (4, 1, 32, 32), (4, 1, 32, 32)),
    "IRIM (4 channels, 32x32; depth = iterations)": (
        lambda d: ij.nets.IRIM(4, d, 16, lambda v: 0.5 * (v + jnp.roll(v, 1, -1)), key=K),
        (4, 4, 32, 32), (4, 1, 32, 32)),
    "IUNet (4 levels, 2x64x64)": (lambda d: ij.nets.IUNet(2, 4, d, 16, key=K), (4, 2, 64, 64), None),
    "IUNet 3D (3 levels, 2x16^3)": (
        lambda d: ij.nets.IUNet(2, 3, d, 8, key=K, spatial_dims=3), (2, 2, 16, 16, 16), None),
}


def ml_grad(flow, x, cond):
    return eqx.filter_grad(lambda f: -jnp.mean(f.log_prob(x, cond)))(flow)


def kl_grad(flow, x, cond):
    def loss(f):
        samples, log_q = f.sample_and_log_prob(jr.key(5), x.shape, cond)
        return jnp.mean(samples**2) / 2 + jnp.mean(log_q)

    return eqx.filter_grad(loss)(flow)


def temp_mib(step, flow, x, cond):
    arrays, static = eqx.partition((flow, x, cond), eqx.is_array)
    compiled = jax.jit(lambda a: step(*eqx.combine(a, static))).lower(arrays).compile()
    return compiled.memory_analysis().temp_size_in_bytes / 2**20


def rel_err(a, b):
    a = jnp.concatenate([jnp.ravel(v) for v in jax.tree.leaves(a)])
    b = jnp.concatenate([jnp.ravel(v) for v in jax.tree.leaves(b)])
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def measure(build, x_shape, cond_shape, depths, grad_depth):
    x = jr.normal(jr.key(1), x_shape)
    cond = None if cond_shape is None else jr.normal(jr.key(2), cond_shape)
    make = lambda d: perturb(build(d), jr.key(3), 0.01)
    row = {}
    for d in depths:
        flow = make(d)
        for label, step in (("ml", ml_grad), ("kl", kl_grad)):
            row[f"{label}{d}"] = (temp_mib(step, flow, x, cond),
                                  temp_mib(step, ij.with_backprop(flow, ij.Autodiff()), x, cond))
    flow = make(grad_depth)
    for label, step in (("ml", ml_grad), ("kl", kl_grad)):
        inv = eqx.filter_jit(step)(flow, x, cond)
        ad = eqx.filter_jit(step)(ij.with_backprop(flow, ij.Autodiff()), x, cond)
        row[f"err_{label}"] = rel_err(inv, ad)
    deep = make(64)
    z, _ = eqx.filter_jit(lambda f: f.forward(x, cond))(deep)
    x_back = eqx.filter_jit(lambda f: f.inverse(z, cond))(deep)
    row["drift"] = float(jnp.linalg.norm(x_back - x) / jnp.linalg.norm(x))
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depths", type=int, nargs=2, default=[4, 32])
    p.add_argument("--grad-depth", type=int, default=8)
    p.add_argument("--only", nargs="*", help="substrings of network names to run")
    p.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "networks.md"))
    args = p.parse_args()
    lo, hi = args.depths
    lines = [
        f"Compiled temporary memory (MiB) of a float32 gradient step, invertible / autodiff, depth {lo} and "
        f"{hi}; gradient relative error vs autodiff at depth {args.grad_depth}; float32 reconstruction "
        f"error at depth 64. jax {jax.__version__}, {platform.processor() or platform.machine()}, "
        f"`python benchmarks/network_report.py`.",
        "",
        f"| network | log_prob d{lo} | log_prob d{hi} | sample_and_log_prob d{lo} | sample_and_log_prob d{hi} "
        "| grad err (ML / KL) | drift d64 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, (build, x_shape, cond_shape) in NETWORKS.items():
        if args.only and not any(s in name for s in args.only):
            continue
        r = measure(build, x_shape, cond_shape, (lo, hi), args.grad_depth)
        cell = lambda k, r=r: f"{r[k][0]:.2f} / {r[k][1]:.2f}"
        line = (f"| {name} | {cell(f'ml{lo}')} | {cell(f'ml{hi}')} | {cell(f'kl{lo}')} | {cell(f'kl{hi}')} "
                f"| {r['err_ml']:.1e} / {r['err_kl']:.1e} | {r['drift']:.1e} |")
        print(line, flush=True)
        lines.append(line)
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
