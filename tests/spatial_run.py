"""Run by tests/test_spatial.py in a fresh process with 4 host CPU devices
(``ij.use_cpu_cores(4)``: the number of devices is fixed when JAX starts): one gradient
step of each named network, on one device and split over space on 4, with what the
comparison needs, printed as JSON.

    python tests/spatial_run.py conditional_glow multiscale_hint_3d fit
"""

import json
import re
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import invjax as ij

if __name__ == "__main__":
    ij.use_cpu_cores(4)  # 4 host devices; before any JAX computation (the next line is one)
_K = jr.key(0)
# name: (build, x shape, cond shape or None). Small, but every level's first spatial size
# stays a multiple of 4 devices... except the deepest, where a device holds 2 rows.
CASES = {  # Glow: the conditional one is the unconditional one plus a condition split like x
    "conditional_glow": (lambda: ij.nets.Glow(2, 2, 1, 8, cond_channels=1, cond_spatial=True, key=_K),
                         (2, 2, 128, 32), (2, 1, 128, 32)),
    "hint": (lambda: ij.nets.HINT(4, 1, 8, key=_K), (2, 4, 64, 32), None),
    "multiscale_hint": (lambda: ij.nets.MultiscaleHINT(2, 2, 1, 8, key=_K), (2, 2, 128, 32), None),
    "hyperbolic": (lambda: ij.nets.Hyperbolic(2, 2, 1, 8, key=_K), (2, 2, 128, 32), None),
    "conditional_hint": (lambda: ij.nets.ConditionalHINT(2, 1, 8, cond_channels=2, key=_K),
                         (2, 2, 64, 32), (2, 2, 64, 32)),
    "multiscale_conditional_hint": (
        lambda: ij.nets.MultiscaleConditionalHINT(2, 2, 1, 8, cond_channels=1, key=_K), (2, 2, 128, 32),
        (2, 1, 128, 32)),
    # Data parallelism alone (4 x 1 mesh): the batch split, every sample whole.
    "batch_glow": (lambda: ij.nets.Glow(1, 2, 2, 8, key=_K), (64, 1, 8, 8), None),
    "glow_3d": (lambda: ij.nets.Glow(1, 2, 1, 4, spatial_dims=3, key=_K), (1, 1, 64, 32, 32), None),
    "multiscale_hint_3d": (lambda: ij.nets.MultiscaleHINT(1, 2, 1, 4, spatial_dims=3, key=_K),
                           (1, 1, 64, 32, 32), None),
}

# Compiled temporaries per device, as a fraction of one device's. A quarter plus halos for
# all but the hyperbolic network, whose split program keeps more per-device copies of its
# two states around the halo exchanges than the one-device program does (0.36 at this
# size, 0.30 to 0.31 at (2, 2, 128, 128) with hidden 16 or 32).
MEMORY_LIMIT = {"hyperbolic": 0.4, "batch_glow": 0.35}


def _gathers(hlo: str):
    """Bytes of every all-gather's result in a compiled program's text."""
    sizes = {"f32": 4, "f64": 8, "s32": 4, "u32": 4, "pred": 1, "f16": 2, "bf16": 2}
    out = []
    for dtype, dims in re.findall(r"= (\w+)\[([\d,]*)\][^=]*? all-gather(?:-start)?\(", hlo):
        out.append(sizes.get(dtype, 4) * int(np.prod([int(d) for d in dims.split(",") if d])))
    return out


def run(name):
    build, shape, cond_shape = CASES[name]
    kx, kc = jr.split(jr.key(1))
    flow = build()
    x = jr.normal(kx, shape)
    cond = None if cond_shape is None else jr.normal(kc, cond_shape)
    flow = flow.initialize(x, cond)  # data-dependent ActNorm: not the identity
    params, static = eqx.partition(flow, eqx.is_inexact_array)

    def loss(params, x, cond):
        return -jnp.mean(eqx.combine(params, static).log_prob(x, cond))

    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2) if cond is not None else (0, 1)))
    mesh = ij.device_mesh(jax.devices()[:4], space=1 if name.startswith("batch_") else 4)
    placed = (ij.replicate(params, mesh), *ij.shard_batch((x, cond), mesh))
    result = {}
    for n, args in ((1, (params, x, cond)), (4, placed)):
        compiled = step.lower(*args).compile()
        value, grads = compiled(*args)
        result[n] = {
            "temp": compiled.memory_analysis().temp_size_in_bytes,
            "loss": float(value),
            "grads": [np.asarray(g).ravel().tolist() for g in jax.tree.leaves(grads)],
            "gathers": _gathers(compiled.as_text()),
        }
    result["largest_parameter"] = max(int(a.nbytes) for a in jax.tree.leaves(params))
    result["row"] = int(x.nbytes // x.shape[2])  # one row of the input along the split axis
    result["x_sharding"] = str(placed[1].sharding.spec)
    return result


def fit_runs():
    """``ij.fit`` of a conditional Glow (feature-map condition) on 1 device, and on 4 as
    4x1 (batch x space: data parallel), 2x2 and 1x4: the losses of each step."""
    flow = ij.nets.Glow(1, 2, 1, 8, cond_channels=1, cond_spatial=True, key=_K)
    x, cond = jr.normal(jr.key(1), (16, 1, 32, 8)), jr.normal(jr.key(2), (16, 1, 32, 8))
    runs = {}
    for label, devices, space in (("1", jax.devices()[:1], 1), ("4x1", jax.devices()[:4], 1),
                                  ("2x2", jax.devices()[:4], 2), ("1x4", jax.devices()[:4], 4)):
        _, history = ij.fit(flow, x, cond, key=jr.key(3), steps=3, batch_size=8, progress=False,
                            devices=devices, space=space)
        runs[label] = history["train"]
    # Online training from a simulator, split the same way (2x2) and on one device.
    simulate = jax.jit(lambda key, n: (jr.normal(key, (n, 1, 32, 8)), jr.normal(jr.fold_in(key, 1), (n, 1, 32, 8))),
                       static_argnums=1)
    for label, devices, space in (("simulator_1", jax.devices()[:1], 1), ("simulator_2x2", jax.devices()[:4], 2)):
        _, history = ij.fit(flow, simulate, key=jr.key(3), steps=3, batch_size=8, progress=False, devices=devices,
                            space=space)
        runs[label] = history["train"]
    errors = []
    calls = (lambda: ij.fit(flow, x, cond, key=_K, steps=1, progress=False, space=3),  # 3 does not divide 4
             lambda: ij.fit(flow, x, cond, key=_K, steps=1, progress=False, space=2, batch_size=5),
             lambda: ij.shard_batch(x[:6, :, :6], ij.device_mesh(jax.devices()[:4], space=4)))
    for call in calls:
        try:
            call()
        except ValueError as error:
            errors.append(str(error))
    return {"runs": runs, "errors": errors}


if __name__ == "__main__":
    assert len(jax.devices()) == 4, jax.devices()
    print(json.dumps({name: fit_runs() if name == "fit" else run(name) for name in sys.argv[1:]}))
