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
                         (2, 2, 128, 128), (2, 2, 128, 128)),
    "multiscale_conditional_hint": (
        lambda: ij.nets.MultiscaleConditionalHINT(2, 2, 1, 8, cond_channels=1, key=_K), (2, 2, 128, 32),
        (2, 1, 128, 32)),
    # Amortized inference from image observations: parameters (B, 4), observations
    # (B, 1, H, W) split over space like an image, summarised by a small CNN.
    "summarized_image": (lambda: ij.nets.Summarized(ij.nets.RealNVP(4, 2, 8, cond_channels=4, key=_K), _cnn()),
                         (2, 4), (2, 1, 64, 32)),
    # Data parallelism alone (4 x 1 mesh): the batch split, every sample whole.
    "batch_glow": (lambda: ij.nets.Glow(1, 2, 2, 8, key=_K), (64, 1, 8, 8), None),
    "glow_3d": (lambda: ij.nets.Glow(1, 2, 1, 4, spatial_dims=3, key=_K), (1, 1, 64, 32, 32), None),
    "multiscale_hint_3d": (lambda: ij.nets.MultiscaleHINT(1, 2, 1, 4, spatial_dims=3, key=_K),
                           (1, 1, 64, 32, 32), None),
    "hint_3d": (lambda: ij.nets.HINT(2, 1, 4, spatial_dims=3, key=_K), (1, 2, 64, 32, 32), None),
    "hyperbolic_3d": (lambda: ij.nets.Hyperbolic(1, 2, 1, 4, spatial_dims=3, key=_K), (1, 1, 64, 32, 32), None),
    "conditional_hint_3d": (lambda: ij.nets.ConditionalHINT(2, 1, 4, cond_channels=2, spatial_dims=3, key=_K),
                            (1, 2, 64, 32, 32), (1, 2, 64, 32, 32)),
    # The invertible U-Net: learnable down- and upsampling between 2 scales.
    "iunet": (lambda: ij.nets.IUNet(2, 2, 1, 8, key=_K), (2, 2, 128, 32), None),
    # i-RIM with a local operator (a pointwise mask): the data d is split over space like x.
    # Overlapping down- and upsampling (kernel 4, stride 2; the default kernel = stride = 4
    # runs the same code with 1x1 kernels).
    "irim": (lambda: ij.nets.IRIM(2, 2, 8, _mask, key=_K, stride=2), (2, 2, 128, 32), (2, 1, 128, 32)),
}


def _mask(x):
    """An i-RIM's forward operator: keeps every other column (inpainting), pointwise in space."""
    return x * (jnp.arange(x.shape[-1]) % 2 == 0)


def _cnn():
    """A summary network of one image ``(1, H, W) -> (4,)``: convolution, ReLU, mean over
    space (a sum over a split axis: an all-reduce)."""
    return eqx.nn.Sequential([eqx.nn.Conv2d(1, 4, 3, padding=1, key=jr.key(5)), eqx.nn.Lambda(jax.nn.relu),
                              eqx.nn.Lambda(lambda h: jnp.mean(h, axis=(1, 2)))])


# Compiled temporaries per device, as a fraction of one device's. A quarter plus halos for
# all but the hyperbolic network, whose split program keeps more per-device copies of its
# two states around the halo exchanges than the one-device program does (0.36 at this
# size with space=4 and 0.39 with space=(2, 2); 0.30 to 0.31 at (2, 2, 128, 128) with
# hidden 16 or 32 and space=4; 0.31 and 0.34 for the volume); and i-RIM with stride 2, whose
# 4x4 kernels' halos are wide for slabs of 16 rows (0.30 and 0.37; 0.29 and 0.34 at 128x128).
MEMORY_LIMIT = {"hyperbolic": 0.4, "hyperbolic_3d": 0.4, "irim": 0.4, "batch_glow": 0.35}


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
    result = {}
    runs = [(1, (params, x, cond))]
    for label, space in ((4, 1),) if name.startswith("batch_") else ((4, 4), ("2x2", (2, 2))):
        mesh = ij.device_mesh(jax.devices()[:4], space=space)
        placed = (ij.replicate(params, mesh), *ij.shard_batch((x, cond), mesh))
        runs.append((label, placed))
        # The layout of the widest input (the observations of a vector x's Summarized model).
        widest_placed = max((a for a in placed[1:] if a is not None), key=lambda a: a.ndim)
        result[f"x_sharding_{label}"] = str(widest_placed.sharding.spec)
    for n, args in runs:
        compiled = step.lower(*args).compile()
        value, grads = compiled(*args)
        result[n] = {
            "temp": compiled.memory_analysis().temp_size_in_bytes,
            "loss": float(value),
            "grads": [np.asarray(g).ravel().tolist() for g in jax.tree.leaves(grads)],
            "gathers": _gathers(compiled.as_text()),
        }
    result["largest_parameter"] = max(int(a.nbytes) for a in jax.tree.leaves(params))
    # One row of the largest input along the split axis (a vector x: the observations').
    widest = max((a for a in (x, cond) if a is not None and a.ndim >= 3), key=lambda a: a.nbytes)
    result["row"] = int(widest.nbytes // widest.shape[2])
    return result


def pencil_gathers():
    """The CPU kernel-gradient loop (``layers/_conv.py``) slices along space: traced under a
    mesh that splits space (``jax.set_mesh``, as ``ij.fit`` does) it steps aside for XLA's
    convolution, so nothing is gathered; without the mesh in context (the counter-check)
    the loop runs and its slices are gathered."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from invjax.layers._conv import conv_same

    x, w = jr.normal(jr.key(1), (2, 128, 64, 64)), jr.normal(jr.key(2), (64, 64, 3, 3)) * 0.05  # NHWC, thick
    grad = jax.jit(jax.grad(lambda w, x: jnp.sum(conv_same(x, w) ** 2)))
    reference = grad(w, x)
    out = {}
    for label, space in (("4", 4), ("2x2", (2, 2))):
        mesh = ij.device_mesh(jax.devices()[:4], space=space)
        args = (jax.device_put(w, NamedSharding(mesh, P())),
                jax.device_put(x, NamedSharding(mesh, P("batch", "space", "space2"))))
        with jax.set_mesh(mesh):
            compiled = grad.lower(*args).compile()
        error = float(jnp.max(jnp.abs(compiled(*args) - reference)) / jnp.max(jnp.abs(reference)))
        out[label] = {"gathers": _gathers(compiled.as_text()), "error": error,
                      "gathers_without_mesh": _gathers(grad.lower(*args).compile().as_text())}
    return out


def sampling():
    """``sample`` and ``posterior_draws`` with ``mesh=`` and ``fit_vi`` with ``space``, on
    4 devices as ``space=4`` and ``space=(2, 2)``, against one device."""
    # Unconditional: no split input for XLA to propagate a layout from; the mesh alone
    # must split the latent.
    shape = (4, 1, 64, 32)
    flow = ij.nets.Glow(1, 2, 1, 8, key=_K).initialize(jr.normal(jr.key(1), shape))
    cond = None
    draw = eqx.filter_jit(lambda f, k, c, mesh: f.sample(k, shape, c, mesh=mesh))
    temp = lambda *args: draw.lower(*args).compile().compiled.memory_analysis().temp_size_in_bytes
    model = ij.nets.Summarized(ij.nets.RealNVP(4, 2, 8, cond_channels=4, key=_K), _cnn())
    observations = jr.normal(jr.key(3), (2, 1, 64, 32))
    posterior = lambda mesh: ij.diagnostics.posterior_draws(model, observations, 4, (4,), key=jr.key(4), mesh=mesh)
    # Reverse KL to a Gaussian with a mean of 1 on (1, 32, 16) samples.
    target = lambda x: -0.5 * jnp.sum((x - 1.0) ** 2, axis=(1, 2, 3))
    vi = lambda devices, space: ij.fit_vi(ij.nets.Glow(1, 2, 1, 8, key=_K), target, (1, 32, 16), key=jr.key(6),
                                          steps=3, batch_size=4, progress=False, devices=devices,
                                          space=space)[1]["train"]
    out = {"1": {"sample": np.asarray(draw(flow, jr.key(7), cond, None)).ravel().tolist(),
                 "sample_temp": temp(flow, jr.key(7), cond, None),
                 "posterior": np.asarray(posterior(None)).ravel().tolist(), "vi": vi(jax.devices()[:1], 1)}}
    for label, space in (("4", 4), ("2x2", (2, 2))):
        mesh = ij.device_mesh(jax.devices()[:4], space=space)
        f, c = ij.replicate(flow, mesh), ij.shard_batch(cond, mesh)
        samples = draw(f, jr.key(7), c, mesh)
        out[label] = {
            "sample": np.asarray(samples).ravel().tolist(), "sample_spec": str(samples.sharding.spec),
            "sample_temp": temp(f, jr.key(7), c, mesh),
            "sample_gathers": _gathers(draw.lower(f, jr.key(7), c, mesh).compile().compiled.as_text()),
            "posterior": np.asarray(posterior(mesh)).ravel().tolist(),
            "posterior_gathers": _gathers(ij.diagnostics._draw.lower(
                ij.replicate(model, mesh), observations, jr.key(4), 4, (4,), 2, mesh).compile().compiled.as_text()),
            "vi": vi(jax.devices()[:4], space),
        }
    return out


def fit_runs():
    """``ij.fit`` of a conditional Glow (feature-map condition) on 1 device, and on 4 as
    4x1 (batch x space: data parallel), 2x2 and 1x4: the losses of each step."""
    flow = ij.nets.Glow(1, 2, 1, 8, cond_channels=1, cond_spatial=True, key=_K)
    x, cond = jr.normal(jr.key(1), (16, 1, 32, 8)), jr.normal(jr.key(2), (16, 1, 32, 8))
    runs = {}
    for label, devices, space in (("1", jax.devices()[:1], 1), ("4x1", jax.devices()[:4], 1),
                                  ("2x2", jax.devices()[:4], 2), ("1x4", jax.devices()[:4], 4),
                                  ("1x2x2", jax.devices()[:4], (2, 2))):
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
    special = {"fit": fit_runs, "pencils": pencil_gathers, "sampling": sampling}
    print(json.dumps({name: special[name]() if name in special else run(name) for name in sys.argv[1:]}))
