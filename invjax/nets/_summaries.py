"""Summary networks for amortized inference: sets of i.i.d. trials and time series.

Each maps *one* observation to a vector of ``out_size`` numbers, the Equinox convention
that :class:`~invjax.nets.Summarized` vmaps over the batch. ``Summarized(flow,
DeepSet(...))`` learns ``p(x | y)`` for observations ``y`` of shape ``(B, N, in_size)``.

**Masks.** Sets (and series) of different sizes share one array: pad them to a common
``N`` and build the network with ``masked=True``; an observation is then ``(N, in_size +
1)``, whose last column is the mask (1: the element is there, 0: padding). The padded rows'
values are ignored, whatever they are (finite: ``ij.fit`` refuses NaN in a batch).
:func:`pad_sets` builds such an array from a list of sets. One array per batch (rather
than a ``(values, mask)`` pair, or NaN padding) is what ``Summarized``, ``ij.fit``'s
shuffling, finite checks and device placement take as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

_POOLINGS = ("mean", "max", "sum")


def _check_sizes(name: str, **sizes) -> None:
    for what, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: {what} must be an integer >= 1, got {value!r}.")


def _split_mask(name: str, y, in_size: int, masked: bool, what: str = "set", axis: str = "N"):
    """``(values (N, in_size) with padded rows zeroed, mask (N,) bool)`` of one observation."""
    columns = in_size + masked
    if not hasattr(y, "shape") or y.ndim != 2 or y.shape[1] != columns:
        mask_note = f" ({in_size} features and a last column of 0/1 mask, as masked=True)" if masked else ""
        raise ValueError(
            f"{name}: one observation must be a {what} of shape ({axis}, {columns}){mask_note}, got "
            f"{tuple(getattr(y, 'shape', ())) if hasattr(y, 'shape') else type(y).__name__}; Summarized passes "
            f"one observation at a time (y of shape (B, {axis}, {columns}))."
        )
    if not masked:
        return y, jnp.ones(y.shape[:1], bool)
    mask = y[:, -1] > 0.5
    return jnp.where(mask[:, None], y[:, :-1], 0), mask


def pad_sets(sets: Sequence, size: int | None = None) -> np.ndarray:
    """Pad sets (or time series) of different sizes into one masked array.

    Args:
        sets: ``B`` arrays of shapes ``(n_i, in_size)``.
        size: the padded size ``N`` (default ``max(n_i)``).

    Returns:
        a NumPy array ``(B, N, in_size + 1)``: each set's rows first, zeros after, and a
        last column of mask (1: an element, 0: padding), for a network with ``masked=True``.

    Example:
        >>> import numpy as np, invjax as ij
        >>> ij.nets.pad_sets([np.ones((2, 3)), np.ones((1, 3))]).shape
        (2, 2, 4)
    """
    sets = [np.asarray(s) for s in sets]
    if not sets or any(s.ndim != 2 for s in sets) or len({s.shape[1] for s in sets}) != 1:
        raise ValueError(f"pad_sets: sets must be arrays of shapes (n_i, in_size) with one in_size, got shapes "
                         f"{[s.shape for s in sets]}.")
    longest = max(len(s) for s in sets)
    size = longest if size is None else size
    if size < longest:
        raise ValueError(f"pad_sets: size must be >= the largest set ({longest}), got {size}.")
    dtype = np.result_type(np.float32, *sets)
    out = np.zeros((len(sets), size, sets[0].shape[1] + 1), dtype)
    for i, s in enumerate(sets):
        out[i, : len(s), :-1] = s
        out[i, : len(s), -1] = 1
    return out


class DeepSet(eqx.Module):
    """A Deep Set (Zaheer et al. 2017): an exchangeable set of i.i.d. trials to a vector.

    ``outer(pool(inner(y_j)))``: an MLP per element, poolings over the elements
    (concatenated), an MLP of the pooled features. The output does not depend on the
    elements' order.

    Args:
        in_size: features per element.
        out_size: the summary's size (the flow's ``cond_channels``).
        width: the MLPs' width (the per-element features).
        depth: hidden layers of each MLP.
        pooling: names from ``"mean"``, ``"max"``, ``"sum"``, concatenated. With sets of
            different sizes, include ``"sum"`` (or ``"mean"`` of features that count): the
            mean and the max alone do not tell a set of 5 trials from one of 50, and the
            posterior's width depends on it.
        masked: observations carry a last column of mask (module docstring).
        activation: of the MLPs.
        key: PRNG key of the initialisation.

    Shapes: one observation ``(N, in_size)`` (``(N, in_size + 1)`` when masked) ->
    ``(out_size,)``; in ``Summarized``, ``y`` is ``(B, N, in_size)``.

    Example:
        >>> import jax, invjax as ij
        >>> net = ij.nets.DeepSet(3, 4, width=8, depth=1, key=jax.random.key(0))
        >>> net(jax.numpy.ones((10, 3))).shape
        (4,)
    """

    inner: eqx.nn.MLP
    outer: eqx.nn.MLP
    in_size: int = eqx.field(static=True)
    out_size: int = eqx.field(static=True)
    pooling: tuple[str, ...] = eqx.field(static=True)
    masked: bool = eqx.field(static=True)

    def __init__(self, in_size: int, out_size: int, width: int = 64, depth: int = 2, *,
                 pooling: Sequence[str] = ("mean", "max"), masked: bool = False,
                 activation: Callable = jax.nn.gelu, key: PRNGKeyArray):
        _check_sizes("DeepSet", in_size=in_size, out_size=out_size, width=width, depth=depth)
        pooling = (pooling,) if isinstance(pooling, str) else tuple(pooling)
        if not pooling or any(p not in _POOLINGS for p in pooling):
            raise ValueError(f"DeepSet: pooling must be names from {_POOLINGS}, got {pooling!r}.")
        k1, k2 = jr.split(key)
        self.inner = eqx.nn.MLP(in_size, width, width, depth, activation, final_activation=activation, key=k1)
        self.outer = eqx.nn.MLP(width * len(pooling), out_size, width, depth, activation, key=k2)
        self.in_size, self.out_size, self.pooling, self.masked = in_size, out_size, pooling, bool(masked)

    def __call__(self, y: Float[Array, "N C"]) -> Float[Array, " out_size"]:
        """The summary of one set ``(N, in_size)`` (``(N, in_size + 1)`` when masked)."""
        values, mask = _split_mask("DeepSet", y, self.in_size, self.masked)
        h = jax.vmap(self.inner)(values)
        return self.outer(_pool(h, mask, self.pooling))


def _pool(h, mask, pooling):
    """Masked poolings of ``h (N, F)`` over its elements, concatenated (zeros for an empty set)."""
    m = mask[:, None]
    count = jnp.sum(mask)
    total = jnp.sum(jnp.where(m, h, 0), axis=0)
    pooled = {
        "sum": lambda: total,
        "mean": lambda: total / jnp.maximum(count, 1),
        "max": lambda: jnp.where(count > 0, jnp.max(jnp.where(m, h, -jnp.inf), axis=0), 0),
    }
    return jnp.concatenate([pooled[p]() for p in pooling])


class _MAB(eqx.Module):
    """Multihead attention block (Lee et al. 2019): ``H = LN(Q + att(Q, K)); LN(H + rFF(H))``."""

    attention: eqx.nn.MultiheadAttention
    norm1: eqx.nn.LayerNorm
    norm2: eqx.nn.LayerNorm
    feedforward: eqx.nn.MLP

    def __init__(self, width: int, heads: int, activation, *, key):
        k1, k2 = jr.split(key)
        self.attention = eqx.nn.MultiheadAttention(heads, width, use_query_bias=True, use_key_bias=True,
                                                   use_value_bias=True, use_output_bias=True, key=k1)
        self.norm1, self.norm2 = eqx.nn.LayerNorm(width), eqx.nn.LayerNorm(width)
        self.feedforward = eqx.nn.MLP(width, width, width, 1, activation, key=k2)

    def __call__(self, q, kv, mask=None):
        """``q (M, width)`` attends to the rows of ``kv (N, width)`` where ``mask (N,)`` holds."""
        m = None if mask is None else jnp.broadcast_to(mask, (q.shape[0], kv.shape[0]))
        h = jax.vmap(self.norm1)(q + self.attention(q, kv, kv, mask=m))
        return jax.vmap(self.norm2)(h + jax.vmap(self.feedforward)(h))


class _Block(eqx.Module):
    """SAB (``MAB(X, X)``) or, with inducing points ``I``, ISAB (``MAB(X, MAB(I, X))``)."""

    mab: _MAB
    inducing: Array | None
    induced: _MAB | None

    def __init__(self, width: int, heads: int, inducing: int | None, activation, *, key):
        k1, k2, k3 = jr.split(key, 3)
        self.mab = _MAB(width, heads, activation, key=k1)
        self.inducing = None if inducing is None else jr.normal(k2, (inducing, width)) / np.sqrt(width)
        self.induced = None if inducing is None else _MAB(width, heads, activation, key=k3)

    def __call__(self, x, mask):
        if self.inducing is None:
            return self.mab(x, x, mask)
        return self.mab(x, self.induced(self.inducing, x, mask))


class SetTransformer(eqx.Module):
    """A Set Transformer (Lee et al. 2019): self-attention over the elements, then pooling
    by multihead attention (PMA) with learned seeds.

    The elements are embedded (a linear map), pass ``blocks`` self-attention blocks (SAB;
    ISAB with ``inducing`` learned points, linear rather than quadratic in ``N``), and
    ``seeds`` learned seed vectors attend to them (PMA); an MLP maps the seeds' outputs to
    ``out_size``. Padded elements (``masked=True``) are never attended to. The output does
    not depend on the elements' order. Unlike a :class:`DeepSet`, elements interact
    before pooling (pairs of trials, e.g. differences), at ``O(N^2)`` cost per block
    (``O(N * inducing)`` with ISAB).

    Args:
        in_size: features per element.
        out_size: the summary's size (the flow's ``cond_channels``).
        width: the attention's width (a multiple of ``heads``).
        heads: attention heads.
        blocks: self-attention blocks.
        inducing: ``None`` (SAB) or the number of inducing points (ISAB).
        seeds: PMA's seed vectors.
        masked: observations carry a last column of mask (module docstring).
        activation: of the feed-forward layers.
        key: PRNG key of the initialisation.

    Shapes: one observation ``(N, in_size)`` (``(N, in_size + 1)`` when masked) ->
    ``(out_size,)``.

    Example:
        >>> import jax, invjax as ij
        >>> net = ij.nets.SetTransformer(3, 4, width=8, heads=2, key=jax.random.key(0))
        >>> net(jax.numpy.ones((10, 3))).shape
        (4,)
    """

    embed: eqx.nn.Linear
    blocks: tuple[_Block, ...]
    seeds: Array
    pool: _MAB
    head: eqx.nn.MLP
    in_size: int = eqx.field(static=True)
    out_size: int = eqx.field(static=True)
    masked: bool = eqx.field(static=True)

    def __init__(self, in_size: int, out_size: int, width: int = 64, heads: int = 4, *, blocks: int = 2,
                 inducing: int | None = None, seeds: int = 1, masked: bool = False,
                 activation: Callable = jax.nn.gelu, key: PRNGKeyArray):
        _check_sizes("SetTransformer", in_size=in_size, out_size=out_size, width=width, heads=heads,
                     blocks=blocks, seeds=seeds)
        if inducing is not None:
            _check_sizes("SetTransformer", inducing=inducing)
        if width % heads:
            raise ValueError(f"SetTransformer: width must be a multiple of heads ({heads}), got {width}.")
        keys = jr.split(key, blocks + 4)
        self.embed = eqx.nn.Linear(in_size, width, key=keys[0])
        self.blocks = tuple(_Block(width, heads, inducing, activation, key=k) for k in keys[4:])
        self.seeds = jr.normal(keys[1], (seeds, width)) / np.sqrt(width)
        self.pool = _MAB(width, heads, activation, key=keys[2])
        self.head = eqx.nn.MLP(seeds * width, out_size, width, 1, activation, key=keys[3])
        self.in_size, self.out_size, self.masked = in_size, out_size, bool(masked)

    def __call__(self, y: Float[Array, "N C"]) -> Float[Array, " out_size"]:
        """The summary of one set ``(N, in_size)`` (``(N, in_size + 1)`` when masked)."""
        values, mask = _split_mask("SetTransformer", y, self.in_size, self.masked)
        h = jax.vmap(self.embed)(values)
        for block in self.blocks:
            h = block(h, mask)
        return self.head(self.pool(self.seeds, h, mask).ravel())


class TimeSeriesNetwork(eqx.Module):
    """A time-series summary: causal 1-D convolutions, then a GRU over the time steps.

    The convolutions (kernel ``kernel_size``, padded on the left only) give every step
    features of its recent past; a GRU (``eqx.nn.GRUCell`` run by ``lax.scan``) reads them
    in order and its last state, through a linear map, is the summary. Every stage is
    causal: the state after step ``t`` (:meth:`states`) depends on steps ``<= t`` only.

    With ``masked=True`` (a last column of mask, 1: observed), the GRU skips masked steps
    (keeps its state) and the convolutions see them as zeros; series of different lengths
    padded at the end give exactly the summaries of the unpadded series.

    Args:
        in_size: features per time step.
        out_size: the summary's size (the flow's ``cond_channels``).
        width: convolution channels and GRU state size.
        conv_layers: causal convolutions before the GRU (0: the GRU reads the raw series).
        kernel_size: the convolutions' kernel.
        masked: observations carry a last column of mask (module docstring).
        activation: after each convolution.
        key: PRNG key of the initialisation.

    Shapes: one observation ``(T, in_size)`` (``(T, in_size + 1)`` when masked) ->
    ``(out_size,)``; in ``Summarized``, ``y`` is ``(B, T, in_size)``.

    Example:
        >>> import jax, invjax as ij
        >>> net = ij.nets.TimeSeriesNetwork(2, 4, width=8, key=jax.random.key(0))
        >>> net(jax.numpy.ones((20, 2))).shape
        (4,)
    """

    convs: tuple[eqx.nn.Conv1d, ...]
    gru: eqx.nn.GRUCell
    head: eqx.nn.Linear
    in_size: int = eqx.field(static=True)
    out_size: int = eqx.field(static=True)
    masked: bool = eqx.field(static=True)
    activation: Callable = eqx.field(static=True)

    def __init__(self, in_size: int, out_size: int, width: int = 64, *, conv_layers: int = 2,
                 kernel_size: int = 3, masked: bool = False, activation: Callable = jax.nn.gelu,
                 key: PRNGKeyArray):
        _check_sizes("TimeSeriesNetwork", in_size=in_size, out_size=out_size, width=width, kernel_size=kernel_size)
        if isinstance(conv_layers, bool) or not isinstance(conv_layers, int) or conv_layers < 0:
            raise ValueError(f"TimeSeriesNetwork: conv_layers must be an integer >= 0, got {conv_layers!r}.")
        keys = jr.split(key, conv_layers + 2)
        sizes = [in_size] + [width] * conv_layers
        self.convs = tuple(eqx.nn.Conv1d(a, b, kernel_size, padding=((kernel_size - 1, 0),), key=k)
                           for a, b, k in zip(sizes[:-1], sizes[1:], keys[2:], strict=True))
        self.gru = eqx.nn.GRUCell(sizes[-1], width, key=keys[0])
        self.head = eqx.nn.Linear(width, out_size, key=keys[1])
        self.in_size, self.out_size, self.masked = in_size, out_size, bool(masked)
        self.activation = activation

    def states(self, y: Float[Array, "T C"]) -> Float[Array, "T width"]:
        """The GRU's state after every step of one series ``(T, in_size)``: ``(T, width)``."""
        values, mask = _split_mask("TimeSeriesNetwork", y, self.in_size, self.masked, "series", "T")
        h = values.T  # (channels, T): Equinox's convolution layout
        for conv in self.convs:
            h = self.activation(conv(h))

        def step(state, inputs):
            features, present = inputs
            state = jnp.where(present, self.gru(features, state), state)
            return state, state

        state = jnp.zeros(self.gru.hidden_size, h.dtype)
        return jax.lax.scan(step, state, (h.T, mask))[1]

    def __call__(self, y: Float[Array, "T C"]) -> Float[Array, " out_size"]:
        """The summary of one series ``(T, in_size)`` (``(T, in_size + 1)`` when masked)."""
        return self.head(self.states(y)[-1])


__all__ = ["DeepSet", "SetTransformer", "TimeSeriesNetwork", "pad_sets"]
