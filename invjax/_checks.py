"""Trace-time input validation shared by layers and networks.

Every check runs on static shapes and dtypes, so it costs nothing under ``jax.jit``
and fails before any computation with a message naming what was expected and what
was given.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

_AXES = {0: "D", 1: "W", 2: "H, W", 3: "D, H, W"}


def describe(channels: int | str, spatial_dims: int) -> str:
    """The layout a layer expects, e.g. ``(B, 3, H, W)`` or ``(B, 5)``."""
    if spatial_dims == 0:
        return f"(B, {channels})"
    return f"(B, {channels}, {_AXES[spatial_dims]})"


def check_array(name: str, x, what: str = "x") -> None:
    """``x`` must be a floating-point array with a batch axis."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise ValueError(f"{name}: {what} must be an array, got {type(x).__name__}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(
            f"{name}: {what} must have a floating dtype, got {x.dtype}; "
            f"convert it first, e.g. {what}.astype(jnp.float32)."
        )
    if x.ndim < 2:
        raise ValueError(
            f"{name}: {what} must be batched, with shape (B, C, ...); got shape {tuple(x.shape)}."
        )
    if 0 in x.shape[1:]:
        # An empty batch (B = 0) is fine (an empty result); an empty channel or spatial axis
        # has nothing to transform (and a squeeze cannot halve it).
        raise ValueError(
            f"{name}: every axis of {what} but the batch must have size >= 1; got shape {tuple(x.shape)}."
        )


def check_key(name: str, key, what: str = "key") -> None:
    """``key`` is a JAX PRNG key: ``jax.random.key(seed)`` or a legacy ``jax.random.PRNGKey(seed)``.

    Not ``None`` and not a plain ``int`` seed: JAX's own error for those comes from deep
    inside ``jax.random``.
    """
    dtype = getattr(key, "dtype", None)
    shape = tuple(getattr(key, "shape", ()))
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and shape == ():
        return
    if dtype is not None and dtype == jnp.uint32 and shape == (2,):  # jax.random.PRNGKey(seed)
        return
    given = f"an array of shape {shape} and dtype {dtype}" if dtype is not None else repr(key)[:40]
    raise ValueError(
        f"{name}: {what} must be one JAX PRNG key, e.g. {what}=jax.random.key(0) "
        f"(split it for several); got {given}."
    )


def check_sample_shape(name: str, shape) -> tuple[int, ...]:
    """A ``sample`` shape: a tuple of integers >= 0, batch first (``0`` draws nothing)."""
    if isinstance(shape, (int, np.integer)) or not isinstance(shape, (tuple, list)):
        raise ValueError(f"{name}: shape must be a tuple, batch first, e.g. (16, 3, 64, 64); got {shape!r}.")
    if not shape or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise ValueError(f"{name}: shape must be a non-empty tuple of integers >= 0, batch first; got {shape!r}.")
    return tuple(int(s) for s in shape)


def check_int(name: str, what: str, value, low: int) -> None:
    """``value`` is an integer (not a bool) of at least ``low``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}: {what} must be an integer >= {low}, got {value!r}.")


def check_finite(name: str, x, what: str = "x") -> None:
    """``x`` holds no NaN or Inf; checked where its values are known (not under ``jax.jit``)."""
    if isinstance(x, jax.core.Tracer) or not jnp.issubdtype(x.dtype, jnp.inexact):
        return
    # On the devices when x spans other processes (its values are not all here): the
    # reduction's result is replicated, so every process reads it.
    finite = np.isfinite(np.asarray(x)).all() if _all_here(x) else bool(jnp.isfinite(x).all())
    if not finite:
        raise ValueError(f"{name}: {what} contains NaN or Inf; clean the data first.")


def _all_here(x) -> bool:
    """Every value of ``x`` is on this process (always, but for a ``jax.Array`` split over
    the devices of several processes)."""
    return getattr(x, "is_fully_addressable", True)


def check_initialize_batch(name: str, x, cond=None) -> None:
    """The batch of a data-dependent initialisation: not empty, and (outside ``jax.jit``) finite."""
    if x.shape[0] == 0:
        raise ValueError(f"{name}.initialize needs at least one sample; got an empty batch, shape {x.shape}.")
    check_finite(f"{name}.initialize", x)
    if cond is not None:
        check_finite(f"{name}.initialize", cond, "cond")


def canonical_dtype(x):
    """The dtype ``jnp.asarray(x)`` has under the current configuration (NumPy float64 is
    float32 while ``jax_enable_x64`` is off, as every JAX function takes it)."""
    return jax.dtypes.canonicalize_dtype(x.dtype)


def as_checked_arrays(name: str, params, x, cond):
    """``(x, cond)`` as JAX arrays after :func:`check_dtype` of each (``cond`` may be ``None``):
    NumPy data is converted as every JAX function converts it."""
    check_dtype(name, x, params)
    if cond is not None:
        check_dtype(name, cond, params, "cond")
        cond = jnp.asarray(cond)
    return jnp.asarray(x), cond


def check_dtype(name: str, x, params, what: str = "x") -> None:
    """``x`` must have the floating dtype of ``params`` (every inexact array in it).

    A mix would otherwise fail deep inside ``lax.scan`` or a convolution (or silently
    promote): the message says what to cast.
    """
    dtypes = {a.dtype for a in jax.tree.leaves(eqx.filter(params, eqx.is_inexact_array))}
    if not dtypes or dtypes == {canonical_dtype(x)}:
        return
    if len(dtypes) > 1:
        raise ValueError(
            f"{name}: the parameters mix dtypes {sorted(map(str, dtypes))}; cast them to one, e.g. "
            f"flow = jax.tree.map(lambda a: a.astype(jnp.float32) if eqx.is_inexact_array(a) else a, flow)."
        )
    (dtype,) = dtypes
    raise ValueError(
        f"{name}: {what} has dtype {x.dtype} but the parameters are {dtype}; cast the input, "
        f"{what}.astype(jnp.{dtype}), or the flow: "
        f"jax.tree.map(lambda a: a.astype(jnp.{x.dtype}) if eqx.is_inexact_array(a) else a, flow)."
    )


def check_layout(
    name: str,
    x,
    channels: int,
    spatial_dims: int | tuple[int, ...],
    divisible_by: int = 1,
    what: str = "x",
) -> None:
    """``x`` has shape ``(B, channels, *spatial)`` with the given number of spatial axes.

    ``spatial_dims`` may be a tuple of allowed values (layers that work on vectors,
    images and volumes alike); ``divisible_by`` is the factor every spatial size must be
    a multiple of (``2**levels`` for a multiscale network).
    """
    check_array(name, x, what)
    allowed = (spatial_dims,) if isinstance(spatial_dims, int) else tuple(spatial_dims)
    sd = x.ndim - 2
    if sd not in allowed:
        want = " or ".join(describe(channels, s) for s in allowed)
        raise ValueError(f"{name}: expected {what} of shape {want}; got shape {tuple(x.shape)}.")
    if x.shape[1] != channels:
        raise ValueError(
            f"{name}: expected {what} with {channels} channels, shape {describe(channels, sd)}; "
            f"got {x.shape[1]} channels, shape {tuple(x.shape)}."
        )
    bad = [s for s in x.shape[2:] if s % divisible_by]
    if bad:
        raise ValueError(
            f"{name}: every spatial size of {what} must be divisible by {divisible_by}; "
            f"got shape {tuple(x.shape)}."
        )


def check_spatial(name: str, x, min_dims: int = 1, what: str = "x") -> None:
    """``x`` is an image or volume whose spatial sizes are even (for a squeeze)."""
    check_array(name, x, what)
    sd = x.ndim - 2
    if not min_dims <= sd <= 3:
        raise ValueError(
            f"{name}: expected {what} of shape (B, C, H, W) or (B, C, D, H, W); "
            f"got shape {tuple(x.shape)}."
        )
    if any(s % 2 for s in x.shape[2:]):
        raise ValueError(
            f"{name}: cannot halve odd spatial sizes; every spatial size of {what} must be even, "
            f"got shape {tuple(x.shape)}."
        )


def check_spatial_dims(name: str, spatial_dims, allowed: tuple[int, ...], hint: str = "") -> int:
    """A constructor's ``spatial_dims`` is one of ``allowed`` (0 vectors, 1 signals, 2 images, 3 volumes)."""
    if not isinstance(spatial_dims, int) or spatial_dims not in allowed:
        raise ValueError(f"{name}: spatial_dims must be one of {allowed}, got {spatial_dims!r}.{hint}")
    return spatial_dims


def check_cond(name: str, cond, x, cond_channels: int | None, cond_spatial: bool = False) -> None:
    """The condition of a flow, described the same way by every network.

    Args:
        cond_channels: ``K``; 0 for an unconditional flow (``cond`` must be ``None``);
            ``None`` for any condition with the input's batch size (``Flow`` of custom layers).
        cond_spatial: ``False`` for a vector condition ``(B, K)``; ``True`` for a feature
            map ``(B, K, *spatial)`` with the spatial sizes of ``x``.
    """
    if cond_channels == 0:
        if cond is not None:
            raise ValueError(
                f"{name} is unconditional but was given cond of shape {tuple(jnp.shape(cond))}; "
                "pass cond=None."
            )
        return
    if cond is None:
        raise ValueError(f"{name} is conditional: cond is required, got None.")
    check_array(name, cond, "cond")
    batch = x.shape[0]
    if cond.shape[0] != batch:
        raise ValueError(
            f"{name}: cond must have the batch size of the input ({batch}); "
            f"got cond of shape {tuple(cond.shape)}."
        )
    if cond_channels is None:
        return
    if not cond_spatial:
        check_layout(name, cond, cond_channels, 0, what="cond")
    elif cond.ndim != x.ndim or cond.shape[1] != cond_channels or cond.shape[2:] != x.shape[2:]:
        expected = ", ".join(map(str, (cond_channels, *x.shape[2:])))
        raise ValueError(
            f"{name}: expected cond of shape (B, {expected}) (a feature map with the spatial sizes of x); "
            f"got shape {tuple(cond.shape)}."
        )
