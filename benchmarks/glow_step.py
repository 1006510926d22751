"""One Glow training step, one configuration, one process: peak memory and seconds per step.

    python benchmarks/glow_step.py --impl invjax --size 256 --depth 16
    python benchmarks/glow_step.py --impl autodiff --size 256 --depth 16
    python benchmarks/glow_step.py --impl normflows --size 256 --depth 16

Prints one JSON line. On a CPU, JAX runs as one host device per core with the batch split
over them (``ij.use_cpu_cores``; ``--host-devices 0`` for JAX's single device), the way
the docs recommend training on a CPU. ``--impl``:

- ``invjax``: ``ij.nets.Glow`` with the invertible backward (the default);
- ``autodiff``: the same flow under ``ij.with_backprop(flow, ij.Autodiff())``;
- ``normflows``: PyTorch normflows' ``MultiscaleFlow`` of ``GlowBlock``s with the same
  architecture (levels, depth per level, hidden channels, 3x3-1x1-3x3 conditioners,
  LU 1x1 convolutions, ActNorm, channel split, half of the channels factored out per level).

A step is the loss (mean negative log-likelihood), its gradient and an Adam update. Run a
fresh process per configuration (``glow_sweep.py`` does): ``peak_rss_mib`` is the
process's peak resident memory (``getrusage``), so it includes the interpreter, the
library and, for JAX, the compiler; ``base_rss_mib`` is the resident memory once the
model and the batch exist (and, for JAX, the step is compiled), before the first step.
Both implementations hand the memory their allocator keeps from building the model back
to the system before that (``gc.collect`` and glibc's ``malloc_trim``; JAX also drops
the small programs that built the parameters): otherwise a few hundred MiB of freed
but retained memory would count as the step's. ``--compile-only`` (JAX) reports the
compiled step's memory without running it: a deterministic check of sizes that would
take too long to run here. On a GPU, ``device_peak_mib`` is the
device's peak allocation (JAX: ``memory_stats()["peak_bytes_in_use"]``, PyTorch:
``torch.cuda.max_memory_allocated``). ``step_s`` is the median of ``--steps`` steps after
one warm-up step (which, for JAX, follows compilation).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import resource
import statistics
import sys
import time


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def release():
    """Give memory that is freed but kept by the allocator back to the system."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc
        pass


def timed(step, steps):
    """Median seconds of ``steps`` steps after a warm-up step (of the warm-up step alone if 0)."""
    t = time.perf_counter()
    step()  # warm-up
    if steps == 0:
        return time.perf_counter() - t, []
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def glow_training_step(levels, depth, hidden, batch, size, autodiff=False):
    """``(flow, x, params, opt_state, step)``: the Glow, a batch and the training step this file
    times (``step(params, opt_state, x) -> (params, opt_state, loss)``: loss, gradient, Adam)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import jax.random as jr
    import optax

    import invjax as ij

    flow = ij.nets.Glow(3, levels, depth, hidden, key=jr.key(0))
    if autodiff:
        flow = ij.with_backprop(flow, ij.Autodiff())
    x = jr.uniform(jr.key(1), (batch, 3, size, size))
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
    flow, x, params, state, step = (build or glow_training_step)(args.levels, args.depth, args.hidden, args.batch, args.size,
                                                      autodiff=args.impl == "autodiff")
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
        return {"base_rss_mib": base, "compiled_temp_mib": temp, "compile_s": compile_s, "device_peak_mib": None, "step_s": None,
                "times": [], "compiled_total_mib": (analysis.temp_size_in_bytes + analysis.argument_size_in_bytes
                                                    + analysis.output_size_in_bytes) / 2**20,
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--impl", choices=["invjax", "autodiff", "normflows"], required=True)
    p.add_argument("--size", type=int, default=64, help="height = width of the RGB images")
    p.add_argument("--depth", type=int, default=16, help="flow steps per level")
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    p.add_argument("--host-devices", type=int, default=-1,
                   help="JAX on a CPU: this many host devices (ij.use_cpu_cores), the batch split over them; "
                        "-1 (default): one per core (a divisor of --batch); 0: JAX's default, one device")
    p.add_argument("--compile-only", action="store_true", help="JAX: compiled memory only, no step is run")
    args = p.parse_args(argv)
    start = time.perf_counter()
    result = (run_torch if args.impl == "normflows" else run_jax)(args)
    result.update(
        impl=args.impl, size=args.size, depth=args.depth, levels=args.levels, hidden=args.hidden,
        batch=args.batch, peak_rss_mib=peak_rss_mib(), wall_s=time.perf_counter() - start,
        python=sys.version.split()[0], machine=f"{platform.machine()}, {os.cpu_count()} cpus",
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
