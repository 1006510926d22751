"""Flows: an invertible map plus a base distribution.

:class:`AbstractFlow` is what every flow offers (``forward``, ``inverse``, ``log_prob``,
``sample``, ...). :class:`AbstractNetwork` is a flow whose map is one invjax layer (its
``body``), differentiated by a :mod:`backprop <invjax._backprop>` value and checked
against the layout it declares; every network in :mod:`invjax.nets` is one, and
:class:`Flow` turns any custom assembly of layers into one.
"""


import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._backprop import AbstractBackprop, Invertible, check_backprop
from ._checks import (
    as_checked_arrays,
    check_array,
    check_cond,
    check_initialize_batch,
    check_key,
    check_layout,
    check_sample_shape,
)
from ._devices import split_like_batch
from ._distributions import AbstractDistribution, StandardNormal, check_base
from ._layer import AbstractLayer
from ._strict import AbstractStrictModule


class AbstractFlow(AbstractStrictModule):
    """A normalizing flow: an invertible map ``x -> z`` and a base distribution of ``z``.

    Every method takes a batch; ``cond`` is the last argument and is ``None`` for an
    unconditional flow. An empty batch (``B = 0``) gives empty results (``sample`` with
    ``shape[0] == 0`` too), as a JAX function does; ``initialize`` refuses it (there is
    nothing to take statistics of). Gradients of anything computed by these methods (``jax.grad``,
    ``eqx.filter_grad``) go through the invertible backward unless the flow was made with
    ``backprop=ij.Autodiff()`` (or switched by :func:`invjax.with_backprop`).

    **Forward mode.** The invertible backward is a ``custom_vjp``, which JAX differentiates
    in reverse mode only: ``jax.jvp``, ``jax.jacfwd``, ``jax.hessian`` and ``jax.linearize``
    of these methods fail with JAX's "can't apply forward-mode autodiff (jvp) to a
    custom_vjp function". Call them on ``ij.with_backprop(flow, ij.Autodiff())`` (the same
    parameters, plain autodiff, which stores activations); Hessian-vector products also
    work under the invertible backward as reverse-over-reverse:

    ```python
    import jax, jax.numpy as jnp, invjax as ij

    flow = ij.nets.RealNVP(in_channels=2, depth=2, hidden=8, key=jax.random.key(0))
    x, v = jnp.ones((3, 2)), jnp.ones((3, 2))

    plain = ij.with_backprop(flow, ij.Autodiff())
    jac = jax.jacfwd(lambda x: plain.log_prob(x).sum())(x)
    hvp = jax.grad(lambda x: jnp.vdot(jax.grad(lambda x: flow.log_prob(x).sum())(x), v))(x)
    ```

    Subclasses implement ``forward``, ``inverse_and_log_det`` and ``initialize``, and hold
    a ``base``; the rest follows from those.
    """

    base: eqx.AbstractVar[AbstractDistribution]

    @abc.abstractmethod
    def forward(self, x: Float[Array, "B ..."], cond=None) -> tuple[Array, Float[Array, " B"]]:
        """``(z, logdet)``: the latent (shape of ``x``) and ``log|det dz/dx|`` per sample.

        Differentiable in reverse mode; for ``jax.jvp``, ``jax.jacfwd``, ``jax.hessian`` or
        ``jax.linearize`` call it on ``ij.with_backprop(flow, ij.Autodiff())`` (class docstring).
        """

    @abc.abstractmethod
    def inverse_and_log_det(self, z: Float[Array, "B ..."], cond=None) -> tuple[Array, Float[Array, " B"]]:
        """``(x, log|det dx/dz|)``, the inverse map and its log-determinant.

        Differentiable in reverse mode; for forward mode call it on
        ``ij.with_backprop(flow, ij.Autodiff())`` (class docstring).
        """

    @abc.abstractmethod
    def initialize(self, x: Float[Array, "B ..."], cond=None) -> "AbstractFlow":
        """Data-dependent initialisation (ActNorm) on a batch; returns a new flow.

        A pure function: ``flow = flow.initialize(x_first_batch)``.
        """

    def inverse(self, z: Float[Array, "B ..."], cond=None) -> Float[Array, "B ..."]:
        """``x`` such that ``forward(x)[0] == z``.

        Differentiable in reverse mode; for forward mode call it on
        ``ij.with_backprop(flow, ij.Autodiff())`` (class docstring).
        """
        return self.inverse_and_log_det(z, cond)[0]

    def log_prob(self, x: Float[Array, "B ..."], cond=None) -> Float[Array, " B"]:
        """``log p(x) = base.log_prob(z) + logdet``, per sample.

        Differentiable in reverse mode, also twice (Hessian-vector products as
        reverse-over-reverse); for ``jax.jvp``, ``jax.jacfwd``, ``jax.hessian`` or
        ``jax.linearize`` call it on ``ij.with_backprop(flow, ij.Autodiff())`` (class docstring).
        """
        z, logdet = self.forward(x, cond)
        return self.base.log_prob(z) + logdet

    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...], cond=None, *, mesh=None) -> Array:
        """Draw ``x = inverse(z)``, ``z ~ base`` of ``shape`` (batch first).

        ``mesh``: ``None``, or an :func:`invjax.device_mesh` to draw at a size one device
        cannot hold: the latent (and ``cond``) is laid out like a batch on it (samples over
        ``"batch"``, the first spatial axes over ``"space"``/``"space2"``), so the inverse
        runs split and no device holds a whole sample. Call it inside ``jax.jit``
        (``eqx.filter_jit``) with the flow on the mesh (:func:`invjax.replicate`); the
        samples equal one device's (JAX's random numbers do not depend on the layout).

        Differentiable in reverse mode; for forward mode call it on
        ``ij.with_backprop(flow, ij.Autodiff())`` (class docstring).
        """
        shape = _check_sampling("sample", self, key, shape)
        z, cond = split_like_batch((self.base.sample(key, shape, self.dtype), cond), mesh, "sample")
        return self.inverse(z, cond)

    def sample_and_log_prob(self, key: PRNGKeyArray, shape: tuple[int, ...], cond=None, *, mesh=None):
        """``(x, log q(x))`` from one inverse pass: ``log q = base.log_prob(z) - log|det dx/dz|``.

        ``mesh``: as for :meth:`sample`.

        Differentiable in reverse mode; for forward mode call it on
        ``ij.with_backprop(flow, ij.Autodiff())`` (class docstring).
        """
        shape = _check_sampling("sample_and_log_prob", self, key, shape)
        z, cond = split_like_batch((self.base.sample(key, shape, self.dtype), cond), mesh, "sample_and_log_prob")
        x, logdet = self.inverse_and_log_det(z, cond)
        return x, self.base.log_prob(z) - logdet

    @property
    def dtype(self):
        """The floating dtype of the parameters (that of samples)."""
        leaves = jax.tree.leaves(eqx.filter(self, eqx.is_inexact_array))
        return leaves[0].dtype if leaves else jnp.zeros(()).dtype


class AbstractWrappedFlow(AbstractFlow):
    """A flow that wraps another, ``flow``, and changes its inputs or outputs
    (``ij.nets.Constrained``, ``ij.nets.Standardized``): the base distribution and a
    stochastic summary network's key pass through to the flow inside."""

    flow: eqx.AbstractVar[AbstractFlow]

    @property
    def base(self) -> AbstractDistribution:
        """The flow's base distribution."""
        return self.flow.base

    @property
    def stochastic(self) -> bool:
        """Whether the flow inside has a stochastic summary network (``Summarized``)."""
        return getattr(self.flow, "stochastic", False)

    def with_key(self, key):
        """This model with the key of its stochastic summary network (``ij.fit`` sets it per step)."""
        return eqx.tree_at(lambda m: m.flow, self, self.flow.with_key(key))


class AbstractNetwork(AbstractFlow):
    """A flow whose map is one invjax layer, ``body``, run by ``backprop``.

    Subclasses build ``body`` and declare the inputs they accept, which every method
    checks at trace time (a ``ValueError`` naming what was expected and what was given):

    - ``in_channels``: ``C``, axis 1 of ``x`` (``None``: not checked);
    - ``spatial_dims``: 0 for vectors ``(B, C)``, 1, 2 or 3 (``None``: any);
    - ``divisible_by``: every spatial size must be a multiple of it (``2**levels``);
    - ``cond_channels`` and ``cond_spatial``: the condition, the same way for every
      network (see :func:`invjax._checks.check_cond`).
    """

    body: eqx.AbstractVar[AbstractLayer]
    backprop: eqx.AbstractVar[AbstractBackprop]
    in_channels: eqx.AbstractVar[int | None]
    spatial_dims: eqx.AbstractVar[int | None]
    divisible_by: eqx.AbstractVar[int]
    cond_channels: eqx.AbstractVar[int | None]
    cond_spatial: eqx.AbstractVar[bool]

    def _check_input(self, x, cond):
        """The checked input and condition, as JAX arrays (NumPy data converted as JAX would)."""
        name = type(self).__name__
        if self.in_channels is None:
            check_array(name, x)
        else:
            allowed = (0, 1, 2, 3) if self.spatial_dims is None else self.spatial_dims
            check_layout(name, x, self.in_channels, allowed, divisible_by=self.divisible_by)
        check_cond(name, cond, x, self.cond_channels, self.cond_spatial)
        return as_checked_arrays(name, self, x, cond)

    def forward(self, x, cond=None):
        x, cond = self._check_input(x, cond)
        return self.backprop.forward(self.body, x, cond)

    def inverse_and_log_det(self, z, cond=None):
        z, cond = self._check_input(z, cond)
        return self.backprop.inverse_and_log_det(self.body, z, cond)

    def initialize(self, x, cond=None):
        """Data-dependent initialisation (ActNorm) on a batch; returns a new flow.

        Raises ``ValueError`` for an empty batch (no statistics to take) and, outside
        ``jax.jit``, for a batch holding NaN or Inf (it would make the parameters NaN).
        """
        x, cond = self._check_input(x, cond)
        check_initialize_batch(type(self).__name__, x, cond)
        body, _ = self.body.initialize(x, cond)
        return eqx.tree_at(lambda f: f.body, self, body)


def _check_sampling(method: str, flow, key, shape) -> tuple[int, ...]:
    name = f"{type(flow).__name__}.{method}"
    check_key(name, key)
    return check_sample_shape(name, shape)


def check_flow_options(name: str, base, backprop):
    """The options every network takes: ``(base, backprop)``, checked."""
    return check_base(name, base), check_backprop(name, backprop)


class Flow(AbstractNetwork):
    """Turn any invjax layer (a custom assembly of layers) into a flow.

    Args:
        body: an :class:`invjax.layers.AbstractLayer`, e.g. a ``Chain`` of ``Stack``\\ s.
        conditional: whether ``cond`` is required (``True``: any array with the input's
            batch size) or refused (``False``).
        base: the base distribution (default ``ij.StandardNormal()``).
        backprop: ``ij.Invertible()`` (default) or ``ij.Autodiff()``.

    Example:
        >>> import jax, invjax as ij
        >>> k1, k2 = jax.random.split(jax.random.key(0))
        >>> body = ij.layers.Chain([ij.layers.ActNorm(4), ij.layers.AffineCoupling(4, 16, spatial_dims=0, key=k1)])
        >>> flow = ij.nets.Flow(body)
        >>> flow.log_prob(jax.random.normal(k2, (8, 4))).shape
        (8,)
    """

    body: AbstractLayer
    base: AbstractDistribution
    backprop: AbstractBackprop
    conditional: bool = eqx.field(static=True)

    in_channels: ClassVar[None] = None
    spatial_dims: ClassVar[None] = None
    divisible_by: ClassVar[int] = 1
    cond_spatial: ClassVar[bool] = False

    def __init__(self, body: AbstractLayer, *, conditional: bool = False, base=StandardNormal(),
                 backprop=Invertible()):
        if not isinstance(body, AbstractLayer):
            raise ValueError(f"Flow needs an invjax layer as body, got {type(body).__name__}.")
        self.body = body
        self.conditional = bool(conditional)
        self.base, self.backprop = check_flow_options("Flow", base, backprop)

    @property
    def cond_channels(self):
        return None if self.conditional else 0


def with_backprop(model: AbstractFlow, backprop: AbstractBackprop) -> "AbstractFlow":
    """The same flow (same parameters, same pytree structure), differentiated by ``backprop``.

    Every flow inside ``model`` switches (a ``Summarized`` model's flow too). Because the
    choice is a leaf, not a static field, an optax state made for one choice works with the
    other. Example: ``ij.with_backprop(flow, ij.Autodiff())`` for ``jax.jvp`` or to check
    gradients.
    """
    check_backprop("with_backprop", backprop)
    if not isinstance(model, AbstractFlow):
        raise ValueError(f"with_backprop takes an invjax flow (or Summarized model), got {type(model).__name__}.")
    return jax.tree.map(lambda leaf: backprop if isinstance(leaf, AbstractBackprop) else leaf, model)
