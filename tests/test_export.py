"""Programs built for GPU on a machine without one: every network's training step, ``sample``
and ``ij.fit``'s own step, lowered for CUDA and for CPU with ``jax.export``.

invjax tunes some kernels for XLA:CPU (:mod:`invjax.layers._conv`) and chooses them when a
program is lowered, in the ``cpu`` branches of ``lax.platform_dependent``; GPUs and TPUs must
keep XLA's own formulation. Those CPU formulations run under the name scope ``CPU_SCOPE``,
which shows in a lowered program's text. So, with no GPU at hand (JAX lowers for any
platform; the flows' programs are lowered only, never compiled or run), the scope must be
absent from every CUDA program, and present in the CPU training programs (gradient, fit's
step) of the cases in ``CPU_LOOP_EXPECTED`` and only those: the volumes (every 3x3x3
convolution runs through XLA's 2D convolution over depth planes) and the images whose
convolutions are wide and long enough for the per-pencil kernel-gradient loop
(``_pencils_pay``). A CUDA program that held a CPU kernel would run it on the GPU as a slow
loop; a CPU program that lost it would run XLA:CPU's slow kernel gradient.

The flows are built abstractly (``eqx.filter_eval_shape``: shapes, no values), in float32 as
on a GPU, so the cases may be as large as the loop needs at no cost. Split programs are
lowered over an abstract 1 x 2 x 2 mesh (``jax.sharding.AbstractMesh``: the test process has
one device), samples over ``"batch"``, space over ``"space"`` and ``"space2"`` as ``ij.fit``
splits them with ``space=(2, 2)``; there the loop steps aside (``_space_is_split``), on CPU too.
"""

from contextlib import nullcontext

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import pytest
from cases import NETWORKS, tiered
from jax.sharding import AbstractMesh, NamedSharding
from jax.sharding import PartitionSpec as P

import invjax as ij
from invjax import _fit
from invjax._devices import AXES, batch_spec
from invjax.layers._conv import CPU_SCOPE

_K = jr.key(0)


def _summary():
    """One observation ``(1, H, W) -> (4,)``: convolution, ReLU, dropout (a stochastic summary:
    ``fit``'s step gives it a key), mean over space."""
    return eqx.nn.Sequential([eqx.nn.Conv2d(1, 4, 3, padding=1, key=jr.key(5)), eqx.nn.Lambda(jax.nn.relu),
                              eqx.nn.Dropout(0.1), eqx.nn.Lambda(lambda h: jnp.mean(h, axis=(1, 2)))])


# name: (build, x shape, cond shape or None): the networks at depth 1 (cases.py), and what they
# leave out: signals, volumes, a summarized model, and Glows wide and long enough for the
# per-pencil loop (``_pencils_pay``): both 3x3 (3x3x3) convolutions of a coupling read 32 (16)
# or 32 hidden channels and write 32 or more, along pencils of 64 rows after the squeeze.
CASES = {name: (lambda build=build: build(1), x_shape, cond_shape)
         for name, (build, x_shape, cond_shape) in NETWORKS.items()} | {
    "glow_signal": (lambda: ij.nets.Glow(2, 2, 1, 4, key=_K, spatial_dims=1), (2, 2, 16), None),
    "glow_volume": (lambda: ij.nets.Glow(1, 2, 1, 4, key=_K, spatial_dims=3), (2, 1, 8, 8, 8), None),
    "conditional_hint_volume": (lambda: ij.nets.ConditionalHINT(2, 1, 4, cond_channels=2, key=_K, spatial_dims=3),
                                (2, 2, 4, 4, 4), (2, 2, 4, 4, 4)),
    "summarized": (lambda: ij.nets.Summarized(ij.nets.RealNVP(4, 2, 8, cond_channels=4, key=_K), _summary()),
                   (2, 4), (2, 1, 8, 8)),
    "glow_wide_image": (lambda: ij.nets.Glow(16, 1, 1, 32, key=_K), (1, 16, 128, 8), None),
    "glow_wide_volume": (lambda: ij.nets.Glow(4, 1, 1, 32, key=_K, spatial_dims=3), (1, 4, 128, 4, 4), None),
}

# The cases whose CPU training programs (gradient, fit's step) hold a CPU kernel; every other
# case's must not. A case joins when a CPU formulation applies to it.
CPU_LOOP_EXPECTED = frozenset({"glow_wide_image", "glow_wide_volume", "glow_volume", "conditional_hint_volume"})

# The fast tier: the pencil cases (the ones that can regress) and one case per kind of data.
FAST = {"realnvp", "glow", "glow_signal", "glow_volume", "conditional_glow", "summarized"} | CPU_LOOP_EXPECTED
NAMES = tiered(sorted(CASES), slow=set(CASES) - FAST)
# Split over space: a pencil case and a volume (their CPU formulations must step aside) and a
# conditional network whose map condition is split like x.
SPLIT = {"glow_wide_image", "glow_volume", "conditional_hint"}


def _float32(tree):
    """The abstract floating-point arrays of ``tree`` in float32."""
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, jnp.float32)
                        if isinstance(a, jax.ShapeDtypeStruct) and jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def _abstract(name):
    """``(params, static, x, cond)``: the case's flow split into its abstract arrays and the
    rest, and abstract float32 inputs (``cond`` ``None`` for an unconditional flow)."""
    build, x_shape, cond_shape = CASES[name]
    flow = _float32(eqx.filter_eval_shape(build))
    params, static = eqx.partition(flow, lambda a: isinstance(a, jax.ShapeDtypeStruct))
    cond = None if cond_shape is None else jax.ShapeDtypeStruct(cond_shape, jnp.float32)
    return params, static, jax.ShapeDtypeStruct(x_shape, jnp.float32), cond


class _Built(Exception):
    """Raised by the stand-in ``make_step``: ``fit`` has built its step; stop there."""


def _fit_step(monkeypatch, static, params, x_shape, cond_shape):
    """``ij.fit``'s own ``(init, step)``: ``fit`` runs on zeros up to building its step (its loss
    around the user's: the step key, ``with_step_key``, the transform) and stops."""
    built = []

    def build(loss, optimizer=None):
        built.append(ij.make_step(loss, optimizer))
        raise _Built

    monkeypatch.setattr(_fit, "make_step", build)
    flow = eqx.combine(params, static)  # abstract: nothing before the step reads its values
    cond = None if cond_shape is None else jnp.zeros(cond_shape, jnp.float32)
    with pytest.raises(_Built):  # on one device: unsplit (split programs are lowered under a mesh)
        ij.fit(flow, jnp.zeros(x_shape, jnp.float32), cond, key=jr.key(1), steps=1, batch_size=x_shape[0],
               initialize=False, progress=False, check_inputs=False, devices=jax.devices()[:1])
    return built[0]


def _programs(monkeypatch, name, mesh=None):
    """``{what: (function of arrays, abstract arguments)}`` for the training step (gradient of
    the negative log-likelihood), ``sample`` and ``fit``'s step; under ``mesh``, ``fit``'s step
    alone, called under the mesh as ``fit`` calls it."""
    params, static, x, cond = _abstract(name)
    key = jax.eval_shape(lambda: jr.key(0))
    init, step = _fit_step(monkeypatch, static, params, x.shape, None if cond is None else cond.shape)
    opt_state = jax.eval_shape(lambda p: init(eqx.combine(p, static)), params)

    def fit_step(params, opt_state, key, x, cond):
        with nullcontext() if mesh is None else jax.sharding.use_abstract_mesh(mesh):
            flow, opt_state, value = step(eqx.combine(params, static), opt_state, key, x, cond)
        return eqx.filter(flow, eqx.is_array), opt_state, value

    fit = (fit_step, (params, opt_state, key, x, cond))
    if mesh is not None:
        return {"fit_step": fit}

    def grad(params, x, cond):
        loss = lambda f: -jnp.mean(f.log_prob(x, cond))
        return eqx.filter(eqx.filter_grad(loss)(eqx.combine(params, static)), eqx.is_array)

    def sample(params, key, cond):
        return eqx.combine(params, static).sample(key, x.shape, cond)

    return {"grad": (grad, (params, x, cond)), "sample": (sample, (params, key, cond)), "fit_step": fit}


def _lowered(function, args, platform, shardings=None):
    exported = jax.export.export(jax.jit(function, in_shardings=shardings), platforms=[platform])(*args)
    assert exported.platforms == (platform,)
    return exported


@pytest.mark.parametrize("name", NAMES)
def test_cuda_programs_hold_no_cpu_kernel_and_cpu_training_programs_hold_theirs(monkeypatch, name):
    for what, (function, args) in _programs(monkeypatch, name).items():
        cuda = _lowered(function, args, "cuda").mlir_module()
        assert CPU_SCOPE not in cuda, f"{name}: the CUDA {what} program runs a CPU kernel formulation"
        if what == "sample":  # no kernel gradient: the loop has no place there
            continue
        cpu = _lowered(function, args, "cpu").mlir_module()
        expected = name in CPU_LOOP_EXPECTED
        assert (CPU_SCOPE in cpu) == expected, (
            f"{name}: the CPU {what} program {'lacks' if expected else 'holds'} a CPU kernel formulation "
            f"({'in' if expected else 'not in'} CPU_LOOP_EXPECTED)")


@pytest.mark.parametrize("name", tiered(sorted(SPLIT), slow=set(SPLIT) - CPU_LOOP_EXPECTED))
def test_fit_steps_split_over_space_hold_no_cpu_kernel(monkeypatch, name):
    mesh = AbstractMesh((1, 2, 2), AXES)
    function, args = _programs(monkeypatch, name, mesh)["fit_step"]
    params, opt_state, key, x, cond = args
    replicated = NamedSharding(mesh, P())
    split = lambda a: None if a is None else NamedSharding(mesh, batch_spec(len(a.shape)))
    shardings = jax.tree.map(lambda _: replicated, (params, opt_state, key)) + (split(x), split(cond))
    for platform in ("cuda", "cpu"):
        exported = _lowered(function, args, platform, shardings)
        assert exported.nr_devices == 4
        text = exported.mlir_module()
        spec = '[{"batch"}, {}, {"space"}, {"space2"}' + ", {}" * (len(x.shape) - 4) + "]"
        assert spec in text  # x arrives split over space
        assert CPU_SCOPE not in text, f"{name}: the split {platform} fit step runs the per-pencil loop"
