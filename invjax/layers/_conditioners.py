"""Conditioner networks for couplings: per-sample Equinox modules.

A coupling ``vmap``s its conditioner over the batch; the conditioner itself sees one
sample, as every Equinox module does. Their last layer starts at zero, so a new coupling
is the identity map. Arguments follow Equinox's own (``eqx.nn.MLP``, ``eqx.nn.Conv``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float

from .._checks import check_spatial_dims
from ._conv import conv_first, conv_same, strided_conv, strided_conv_transpose, to_channels_first, to_channels_last


def _zero_last(module, get):
    """Zero the weight and bias that ``get(module)`` returns (a linear or conv layer)."""
    last = get(module)
    return eqx.tree_at(
        lambda m: (get(m).weight, get(m).bias),
        module,
        (jnp.zeros_like(last.weight), jnp.zeros_like(last.bias)),
    )


class ResidualBlock(eqx.Module):
    """Conv, activation, conv, activation, conv (the last zero-initialised), as in Glow and
    InvertibleNetworks.jl's ``ResidualBlock``.

    By default 3x3, 1x1, 3x3 "same" convolutions with ReLU (Glow's). InvertibleNetworks.jl's
    options: ``kernel`` (its ``k1``) for the first and last convolution, ``middle_kernel``
    (``k2``), ``stride`` (``s1``): with ``stride > 1`` the first convolution downsamples
    by ``stride`` and the last is its transpose, upsampling back (the i-RIM coupling's
    block, ``k1 = s1 = 4``); the padding (``p1``, ``p2``) follows from the kernels so
    that the output has the input's spatial sizes; ``activation``.

    Args:
        in_channels: channels in.
        out_channels: channels out.
        hidden: channels of the two hidden feature maps.
        key: PRNG key.
        spatial_dims: 1 for signals, 2 for images, 3 for volumes.
        kernel: size of the first and last kernels; odd when ``stride == 1``, otherwise
            ``kernel >= stride`` with ``kernel - stride`` even.
        middle_kernel: size of the middle kernel (odd).
        stride: downsampling factor of the first convolution; spatial sizes must be
            multiples of it.
        activation: an elementwise function (a named one, so ``ij.save`` can store it).
        skip: add the middle convolution's input to its output, ``h + conv(h)``
            (InvertibleNetworks.jl's block has this skip connection; Glow's does not).
        final_activation: ``None`` (default, Glow's) or a function applied to the output;
            InvertibleNetworks.jl's ``fan=true`` is ``jax.nn.relu``.
        gated: InvertibleNetworks.jl's ``fan=false``: the last convolution makes
            ``2 out_channels`` channels ``(a, b)`` and the output is the gated linear unit
            ``a * sigmoid(b)`` (its ``GaLU``).

    Shapes (one sample): ``(in_channels, *spatial)`` -> ``(out_channels, *spatial)``.
    """

    convs: tuple
    stride: int = eqx.field(static=True)
    activation: Callable = eqx.field(static=True)
    skip: bool = eqx.field(static=True)
    final_activation: Callable | None = eqx.field(static=True)
    gated: bool = eqx.field(static=True)

    def __init__(self, in_channels: int, out_channels: int, hidden: int, *, key, spatial_dims: int = 2,
                 kernel: int = 3, middle_kernel: int = 1, stride: int = 1, activation: Callable = jax.nn.relu,
                 skip: bool = False, final_activation: Callable | None = None, gated: bool = False):
        check_spatial_dims("ResidualBlock", spatial_dims, (1, 2, 3))
        if stride < 1 or middle_kernel % 2 == 0 or (stride == 1 and kernel % 2 == 0) or kernel < stride or (
                kernel - stride) % 2:
            raise ValueError("ResidualBlock: expected stride >= 1, an odd middle_kernel, and kernel odd (stride 1) "
                             "or >= stride with kernel - stride even; got "
                             f"kernel={kernel}, middle_kernel={middle_kernel}, stride={stride}.")
        for option, value in (("activation", activation), ("final_activation", final_activation or _identity)):
            if not callable(value):
                raise ValueError(f"ResidualBlock: {option} must be a function, got {value!r}.")
        k1, k2, k3 = jr.split(key, 3)
        out_channels = 2 * out_channels if gated else out_channels
        pad = (kernel - stride) // 2
        first = eqx.nn.Conv(spatial_dims, in_channels, hidden, kernel, stride=stride, padding=pad, key=k1)
        middle = eqx.nn.Conv(spatial_dims, hidden, hidden, middle_kernel, padding=middle_kernel // 2, key=k2)
        if stride == 1:
            last = eqx.nn.Conv(spatial_dims, hidden, out_channels, kernel, padding=pad, key=k3)
        else:
            last = eqx.nn.ConvTranspose(spatial_dims, hidden, out_channels, kernel, stride=stride, padding=pad, key=k3)
        self.convs = _zero_last((first, middle, last), lambda c: c[-1])
        self.stride, self.activation = stride, activation
        self.skip, self.final_activation, self.gated = bool(skip), final_activation, bool(gated)

    def __call__(self, x: Float[Array, "c *spatial"]) -> Float[Array, "o *spatial"]:
        if self.stride == 1:
            # Stride-1 convolutions run channels-last (see :mod:`invjax.layers._conv`); the
            # modules keep Equinox's layout and initialisation.
            first, middle, last = (lambda h, c=c: conv_same(h, c.weight, c.bias) for c in self.convs)
            return self._output(to_channels_first(self._body(first, middle, last, to_channels_last(x[None])))[0])
        if any(n % self.stride for n in x.shape[1:]):
            raise ValueError(f"ResidualBlock: spatial sizes must be multiples of the stride {self.stride}; got a "
                             f"sample of shape {x.shape}.")
        # The strided convolution and its transpose as reshapes and stride-1 convolutions: they
        # split over space with halos only (XLA gathers the whole input of a transposed
        # convolution's gradient). The Equinox modules hold the weights.
        first, middle, last = self.convs
        stride, pad = first.stride[0], first.padding[0][0]
        down = lambda h: strided_conv(h, first.weight, first.bias, stride, pad)  # noqa: E731
        up = lambda h: strided_conv_transpose(h, last.weight, last.bias, stride, pad)  # noqa: E731
        same = lambda h: conv_first(h, middle.weight, middle.bias)  # noqa: E731
        return self._output(self._body(down, same, up, x))

    def _body(self, first, middle, last, x):
        h = self.activation(first(x))
        return last(self.activation(h + middle(h) if self.skip else middle(h)))

    def _output(self, out):
        """The final activation or gate, channels first (one sample)."""
        if self.gated:
            out = jax.nn.glu(out, axis=0)  # first half * sigmoid(second half)
        return out if self.final_activation is None else self.final_activation(out)


class ConditionalResidualBlock(eqx.Module):
    """InvertibleNetworks.jl's ``ConditionalResidualBlock``: a (non-invertible) residual
    block of ``x`` given data ``d`` of any shape.

    A dense layer maps ``d`` to ``x``'s shape (activation), the result is concatenated to
    ``x`` along the channels, then: convolution ``2C -> hidden`` (``kernel``),
    activation, a residual convolution ``h + conv(h)`` (``middle_kernel``), activation,
    convolution ``hidden -> C`` (``kernel``, no bias), activation. Stride 1, "same"
    padding (Julia's defaults ``s1 = s2 = 1``, ``p = (k - 1) / 2``). Use it where data of a
    shape unlike the image must shape a feature map, e.g. inside a summary network of
    ``ij.nets.Summarized``, which then conditions a flow on the result (invjax's couplings
    take a condition of the input's spatial sizes, or a vector).

    Args:
        in_channels: ``C`` of ``x``.
        spatial_shape: ``x``'s spatial sizes (1 to 3 of them), for the dense layer.
        cond_shape: the shape of one sample of ``d`` (any, e.g. ``(K, H', W')``).
        hidden: channels of the hidden feature maps.
        key: PRNG key.
        kernel: size of the first and last kernels (odd; Julia's ``k1``).
        middle_kernel: size of the middle kernel (odd; Julia's ``k2``).
        activation: an elementwise function (a named one, so ``ij.save`` can store it).

    Shapes (one sample; ``jax.vmap`` it over a batch): ``x``: ``(C, *spatial_shape)``,
    ``d``: ``cond_shape`` -> ``(C, *spatial_shape)``.
    """

    dense: eqx.nn.Linear
    convs: tuple
    in_channels: int = eqx.field(static=True)
    spatial_shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] = eqx.field(static=True)
    activation: Callable = eqx.field(static=True)

    def __init__(self, in_channels: int, spatial_shape, cond_shape, hidden: int, *, key, kernel: int = 3,
                 middle_kernel: int = 3, activation: Callable = jax.nn.relu):
        spatial_shape, cond_shape = tuple(spatial_shape), tuple(cond_shape)
        check_spatial_dims("ConditionalResidualBlock", len(spatial_shape), (1, 2, 3))
        if kernel % 2 == 0 or middle_kernel % 2 == 0:
            raise ValueError(f"ConditionalResidualBlock: expected odd kernel and middle_kernel, got kernel={kernel}, "
                             f"middle_kernel={middle_kernel}.")
        if not callable(activation):
            raise ValueError(f"ConditionalResidualBlock: activation must be a function, got {activation!r}.")
        n, size = len(spatial_shape), in_channels * math.prod(spatial_shape)
        k0, k1, k2, k3 = jr.split(key, 4)
        self.dense = eqx.nn.Linear(math.prod(cond_shape), size, key=k0)
        self.convs = (eqx.nn.Conv(n, 2 * in_channels, hidden, kernel, padding=kernel // 2, key=k1),
                      eqx.nn.Conv(n, hidden, hidden, middle_kernel, padding=middle_kernel // 2, key=k2),
                      eqx.nn.Conv(n, hidden, in_channels, kernel, padding=kernel // 2, use_bias=False, key=k3))
        self.in_channels, self.spatial_shape, self.cond_shape = in_channels, spatial_shape, cond_shape
        self.activation = activation

    def __call__(self, x: Float[Array, "c *spatial"], d: Array) -> Float[Array, "c *spatial"]:
        expected = (self.in_channels, *self.spatial_shape)
        if x.shape != expected or d.shape != self.cond_shape:
            raise ValueError(f"ConditionalResidualBlock: expected one sample x of shape {expected} and d of shape "
                             f"{self.cond_shape}; got {x.shape} and {d.shape} (vmap the block over a batch).")
        act = self.activation
        data = act(self.dense(d.reshape(-1).astype(x.dtype))).reshape(x.shape)
        first, middle, last = (lambda h, c=c: conv_same(h, c.weight, c.bias) for c in self.convs)
        h = act(first(to_channels_last(jnp.concatenate([x, data])[None])))
        h = act(h + middle(h))
        return to_channels_first(act(last(h)))[0]


def _identity(x):
    return x


class MLP(eqx.Module):
    """A ReLU multilayer perceptron whose last layer starts at zero.

    Args:
        in_size: size in.
        out_size: size out.
        width_size: width of the hidden layers.
        depth: number of hidden layers.
        key: PRNG key.

    Shapes (one sample): ``(in_size,)`` -> ``(out_size,)``.
    """

    mlp: eqx.nn.MLP

    def __init__(self, in_size: int, out_size: int, width_size: int, depth: int = 2, *, key):
        # A named identity rather than Equinox's default lambda, so that ``ij.save`` can
        # store the structure.
        mlp = eqx.nn.MLP(in_size, out_size, width_size, depth, activation=jax.nn.relu,
                         final_activation=_identity, key=key)
        self.mlp = _zero_last(mlp, lambda m: m.layers[-1])

    def __call__(self, x: Float[Array, " i"]) -> Float[Array, " o"]:
        return self.mlp(x)


class ResidualMLP(eqx.Module):
    """A residual multilayer perceptron (nflows' ``ResidualNet``, the conditioner of sbi's
    neural spline flow): a linear layer, ``blocks`` residual blocks ``h + W2 relu(W1 relu(h))``,
    a linear layer that starts at zero.

    The skip connections make a path through linear layers only, so a conditioner that is
    linear in its input (the mean of a Gaussian posterior in the data) is learned exactly;
    a plain :class:`MLP` approximates it with ReLU pieces. On the sbibm gaussian_linear task
    (a Gaussian posterior, mean linear in the data) it took the KL divergence of the trained
    flow from the exact posterior (averaged over the data) from 0.19 to 0.14 nats at 10^4
    simulations and from 0.060 to 0.052 at 10^5 (``benchmarks/sbi.py``'s flow, width 64).
    Use it with ``make_conditioner``::

        make_conditioner=lambda i, o, *, key: ij.layers.ResidualMLP(i, o, 64, key=key)

    Args:
        in_size: size in.
        out_size: size out.
        width_size: width of the hidden layers.
        blocks: number of residual blocks.
        key: PRNG key.

    Shapes (one sample): ``(in_size,)`` -> ``(out_size,)``.
    """

    first: eqx.nn.Linear
    blocks: tuple[tuple[eqx.nn.Linear, eqx.nn.Linear], ...]
    last: eqx.nn.Linear

    def __init__(self, in_size: int, out_size: int, width_size: int, blocks: int = 2, *, key):
        for name, value in (("in_size", in_size), ("out_size", out_size), ("width_size", width_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ResidualMLP: {name} must be a positive integer, got {value!r}.")
        if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 0:
            raise ValueError(f"ResidualMLP: blocks must be an integer >= 0, got {blocks!r}.")
        keys = jr.split(key, 2 * blocks + 2)
        self.first = eqx.nn.Linear(in_size, width_size, key=keys[0])
        self.blocks = tuple((eqx.nn.Linear(width_size, width_size, key=keys[2 * i + 1]),
                             eqx.nn.Linear(width_size, width_size, key=keys[2 * i + 2])) for i in range(blocks))
        self.last = _zero_last(eqx.nn.Linear(width_size, out_size, key=keys[-1]), lambda m: m)

    def __call__(self, x: Float[Array, " i"]) -> Float[Array, " o"]:
        h = self.first(x)
        for inner, outer in self.blocks:
            h = h + outer(jax.nn.relu(inner(jax.nn.relu(h))))
        return self.last(h)


def check_make_conditioner(name: str, make_conditioner):
    """``make_conditioner`` is ``None`` or a function ``(in_channels, out_channels, *, key) -> module``."""
    if make_conditioner is not None and (not callable(make_conditioner) or isinstance(make_conditioner, eqx.Module)):
        raise ValueError(f"{name}: make_conditioner must be None or a function (in_channels, out_channels, *, key) "
                         f"-> module (a module itself is not a factory), got {make_conditioner!r}.")
    return make_conditioner


def build_conditioner(make_conditioner, in_channels: int, out_channels: int, key):
    """``make_conditioner(in_channels, out_channels, key=key)``, or ``None`` (the coupling's default)."""
    return None if make_conditioner is None else make_conditioner(in_channels, out_channels, key=key)


def default_conditioner(in_channels: int, out_channels: int, hidden: int, spatial_dims: int, *, key):
    """An :class:`MLP` for vectors (``spatial_dims=0``), a :class:`ResidualBlock` otherwise."""
    if spatial_dims == 0:
        return MLP(in_channels, out_channels, hidden, key=key)
    return ResidualBlock(in_channels, out_channels, hidden, spatial_dims=spatial_dims, key=key)
