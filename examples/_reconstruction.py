"""Shared by the learned-reconstruction examples (i-RIM, invertible U-Net): the deblurring
problem, online training on its pairs, and the memory sweep of a training step."""

from __future__ import annotations

import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from _phantoms import NOISE, SIZE, blur, phantoms

import invjax as ij


def simulate(key, n):
    """``n`` pairs ``(x, d)``: a phantom and its blurred, noisy observation."""
    kx, kn = jr.split(key)
    x = phantoms(kx, n)
    return x, blur(x) + NOISE * jr.normal(kn, x.shape)


def train(net, loss, *, steps, batch, key, began):
    """Adam (cosine-decayed from 1e-3) on ``loss(net, x, d)``, fresh pairs at every step;
    prints progress 20 times. Returns ``(net, losses)``."""
    optimizer = optax.adam(optax.cosine_decay_schedule(1e-3, max(steps, 1)))
    opt_state = optimizer.init(eqx.filter(net, eqx.is_inexact_array))

    @eqx.filter_jit
    def train_step(net, opt_state, key):
        x, d = simulate(key, batch)
        value, grads = eqx.filter_value_and_grad(loss)(net, x, d)
        updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(net, eqx.is_inexact_array))
        return eqx.apply_updates(net, updates), opt_state, value

    losses = []
    for i in range(steps):
        net, opt_state, value = train_step(net, opt_state, jr.fold_in(key, i))
        losses.append(float(value))
        if (i + 1) % max(steps // 20, 1) == 0:
            print(f"step {i + 1}/{steps}: MSE {np.mean(losses[-50:]):.5f} ({time.perf_counter() - began:.0f} s)",
                  flush=True)
    return net, losses


def step_memory(net, loss, batch):
    """XLA's compiled memory (MiB: temporaries) of one training step of ``net``, compile only.

    Integer arrays (an LU convolution's permutation) stay static: they take no gradient."""
    x = jax.ShapeDtypeStruct((batch, 1, SIZE, SIZE), jnp.float32)
    params, static = eqx.partition(net, eqx.is_inexact_array)
    grad = jax.jit(lambda p, x, d: jax.grad(lambda p: loss(eqx.combine(p, static), x, d))(p))
    return grad.lower(params, x, x).compile().memory_analysis().temp_size_in_bytes / 2**20


def memory_sweep(build, loss, batch, sweep, what):
    """``[(n, invertible MiB, autodiff MiB)]`` for ``build(n, backprop)`` over ``sweep``, printed."""
    memory = [(n, step_memory(build(n, ij.Invertible()), loss, batch),
               step_memory(build(n, ij.Autodiff()), loss, batch)) for n in sweep]
    for n, invertible, autodiff in memory:
        print(f"training step, {what} {n:2d}: {invertible:6.1f} MiB invjax, {autodiff:6.1f} MiB plain autodiff")
    return memory


def plot_memory(memory, path, *, xlabel, title):
    """Log-log plot of ``memory``: rows ``(x, invertible MiB, autodiff MiB)``."""
    import matplotlib.pyplot as plt

    sweep = [m[0] for m in memory]
    figure, axis = plt.subplots(figsize=(4.5, 3.2))
    axis.plot(sweep, [m[1] for m in memory], "o-", label="invjax (invertible backward)")
    axis.plot(sweep, [m[2] for m in memory], "s--", label="plain autodiff")
    axis.set(xlabel=xlabel, ylabel="compiled temporaries (MiB)", xscale="log", yscale="log", title=title)
    axis.minorticks_off()  # log axes' minor labels overlap the sweep's values
    axis.set_xticks(sweep, [str(n) for n in sweep])
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)
