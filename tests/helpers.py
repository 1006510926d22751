"""Helpers shared by the tests."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


def perturb(module, key, scale=0.1):
    """Add noise to every floating leaf, so couplings and 1x1 convs are not the identity."""
    params, static = eqx.partition(module, eqx.is_inexact_array)
    leaves, treedef = jax.tree.flatten(params)
    # NumPy's generator, seeded by the key: a JAX draw per leaf compiles a program per shape
    # (dozens per flow, most of a small test's time), and one jitted draw of them all compiles
    # slower still.
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    leaves = [jnp.asarray(np.asarray(a) + scale * rng.standard_normal(a.shape), a.dtype) for a in leaves]
    return eqx.combine(jax.tree.unflatten(treedef, leaves), static)


def cast(module, dtype):
    """Cast every floating leaf of ``module`` to ``dtype`` (with NumPy, like ``perturb``: an
    eager JAX cast compiles a program per leaf shape)."""
    return jax.tree.map(lambda a: jnp.asarray(np.asarray(a).astype(dtype)) if eqx.is_inexact_array(a) else a, module)


def flat(tree) -> np.ndarray:
    """All floating leaves of a pytree as one vector."""
    leaves = jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array))
    return np.concatenate([np.ravel(np.asarray(a)) for a in leaves]) if leaves else np.zeros(0)


def rel_err(a, b) -> float:
    a, b = flat(a), flat(b)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def temp_bytes(fn, *args) -> int:
    """XLA's compiled temporary memory of ``fn(*args)`` (deterministic)."""
    arrays, static = eqx.partition(args, eqx.is_array)
    compiled = jax.jit(lambda a: fn(*eqx.combine(a, static))).lower(arrays).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def nll(flow, x, cond=None):
    return -jnp.mean(flow.log_prob(x, cond))
