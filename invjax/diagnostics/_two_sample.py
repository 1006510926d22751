"""Two-sample tests: are two sets of samples from the same distribution?

- :func:`c2st`, the classifier two-sample test (Lopez-Paz and Oquab, 2017), the metric of
  the simulation-based inference benchmark (Lueckmann et al., 2021): the cross-validated
  accuracy of a classifier told to separate the two sets; 0.5 means indistinguishable.
- :func:`mmd`, the maximum mean discrepancy (Gretton et al., 2012) with Gaussian kernels, and
  :func:`misspecification_test`, its permutation test, as BayesFlow uses it in summary
  space: observed data whose summaries lie away from the simulations' reveal a simulator
  that does not describe them.

Exported from :mod:`invjax.diagnostics`.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax


def _two_sets(name: str, x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    x, y = (v[:, None] if v.ndim == 1 else v.reshape(v.shape[0], -1) for v in (x, y))
    if x.shape[1] != y.shape[1] or min(x.shape[0], y.shape[0]) < 2:
        raise ValueError(f"{name}: expected two sets of samples (N, D) and (M, D) with N, M >= 2 and the same D; "
                         f"got {x.shape} and {y.shape}.")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError(f"{name}: the samples contain NaN or Inf.")
    return x, y


def c2st(x, y, *, seed: int = 0, folds: int = 5, hidden: int | None = None, max_epochs: int = 10_000,
         batch_size: int = 200, learning_rate: float = 1e-3, l2: float = 1e-4, tol: float = 1e-4,
         patience: int = 10) -> float:
    """Classifier two-sample test: cross-validated accuracy of an MLP separating ``x`` from ``y``.

    The metric of the simulation-based inference benchmark, ``sbibm.metrics.c2st``, whose
    numbers papers publish: both sets standardised with ``x``'s mean and standard deviation,
    ``folds``-fold cross-validation (shuffled), the mean test accuracy of scikit-learn's
    ``MLPClassifier(hidden_layer_sizes=(10 D, 10 D), max_iter=10000)``, written here in JAX
    with the folds trained as one vectorised program: ReLU, one logistic output, Glorot
    uniform initialisation, Adam on minibatches of 200 reshuffled every epoch, an L2
    penalty ``l2``, training stopped once the epoch's training loss has not improved by
    ``tol`` for more than ``patience`` epochs, the last classifier tested. A stronger
    classifier (longer training, a validation-chosen epoch) separates more and reports
    higher accuracies: keep these defaults to compare with published numbers.

    Args:
        x: ``(N, D)`` samples (e.g. the reference posterior's); a 1-D array is ``D = 1``.
        y: ``(M, D)`` samples (e.g. the flow's). ``N`` and ``M`` may differ; equal sizes
            make 0.5 the chance level.
        seed: the folds', initialisation's and minibatches' randomness.
        folds: cross-validation folds, >= 2.
        hidden: width of the two hidden layers; default ``10 * D``.
        max_epochs: at most this many passes over each fold's training data.
        batch_size: samples per Adam step (the last step of an epoch may take fewer).
        learning_rate: Adam's.
        l2: weight of the penalty ``l2 / 2 * |W|^2 / batch`` on the weights (not biases).
        tol: an epoch improves on the best training loss when it is lower by more than ``tol``.
        patience: training stops after more than ``patience`` epochs without improvement.

    Returns:
        The accuracy, a float in ``[0, 1]``: about 0.5 when the sets come from one
        distribution, 1.0 when they are separable.
    """
    x, y = _two_sets("c2st", x, y)
    if folds < 2 or max_epochs < 1 or batch_size < 1 or patience < 0:
        raise ValueError(f"c2st: folds >= 2, max_epochs >= 1, batch_size >= 1 and patience >= 0 needed; got "
                         f"folds={folds}, max_epochs={max_epochs}, batch_size={batch_size}, patience={patience}.")
    mean, std = x.mean(0), x.std(0, ddof=1)
    std = np.where(std > 0, std, 1.0)
    data = ((np.concatenate([x, y]) - mean) / std).astype(np.float32)
    labels = np.concatenate([np.zeros(len(x)), np.ones(len(y))]).astype(np.float32)
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(data), int)
    fold_of[rng.permutation(len(data))] = np.arange(len(data)) % folds
    # Index arrays padded to one length (with a mask) so the folds run as one vmapped program.
    train = [np.flatnonzero(fold_of != f) for f in range(folds)]
    test = [np.flatnonzero(fold_of == f) for f in range(folds)]
    pad = lambda sets: np.stack([np.resize(s, max(map(len, sets))) for s in sets])
    mask = lambda sets: np.stack([np.arange(max(map(len, sets))) < len(s) for s in sets])
    width = hidden or 10 * data.shape[1]
    accuracy = _c2st_folds(jnp.asarray(data), jnp.asarray(labels), pad(train), mask(train), pad(test), mask(test),
                           jax.random.key(seed), width, max_epochs, min(batch_size, min(map(len, train))),
                           learning_rate, l2, tol, patience)
    return float(np.mean(np.asarray(accuracy)))


def _glorot_mlp(key, sizes, dtype):
    """scikit-learn's MLP initialisation: weights and biases uniform in ``+-sqrt(6 / (fan_in + fan_out))``."""
    layers = []
    for layer_key, fan_in, fan_out in zip(jax.random.split(key, len(sizes) - 1), sizes[:-1], sizes[1:], strict=True):
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        kw, kb = jax.random.split(layer_key)
        layers.append((jax.random.uniform(kw, (fan_in, fan_out), dtype, minval=-bound, maxval=bound),
                       jax.random.uniform(kb, (fan_out,), dtype, minval=-bound, maxval=bound)))
    return layers


def _logits(layers, inputs):
    for w, b in layers[:-1]:
        inputs = jax.nn.relu(inputs @ w + b)
    w, b = layers[-1]
    return (inputs @ w + b)[:, 0]


@eqx.filter_jit
def _c2st_folds(data, labels, train, train_mask, test, test_mask, key, width: int, max_epochs: int,
                batch_size: int, learning_rate: float, l2: float, tol: float, patience: int):
    """Train one classifier per fold (vmapped; each stops by its own rule) and return each
    fold's test accuracy."""
    optimizer = optax.adam(learning_rate)
    length = train.shape[1]
    steps = -(-length // batch_size)

    def one_fold(key, train_idx, train_valid, test_idx, test_valid):
        init_key, shuffle_key = jax.random.split(key)
        params = _glorot_mlp(init_key, (data.shape[1], width, width, 1), data.dtype)
        count = jnp.sum(train_valid)

        def loss(params, idx, valid):
            n = jnp.maximum(jnp.sum(valid), 1)
            bce = optax.sigmoid_binary_cross_entropy(_logits(params, data[idx]), labels[idx])
            penalty = 0.5 * l2 * sum(jnp.sum(w**2) for w, _ in params) / n
            return jnp.sum(bce * valid) / n + penalty

        def epoch(carry):
            params, state, best, stale, done_epochs, key = carry
            key, sub = jax.random.split(key)
            order = jax.random.permutation(sub, length)
            order = jnp.pad(order, (0, steps * batch_size - length), constant_values=0)
            pad_valid = jnp.arange(steps * batch_size) < length
            batches = train_idx[order].reshape(steps, batch_size)
            valids = (train_valid[order] & pad_valid).reshape(steps, batch_size)

            def step(carry, batch):
                params, state = carry
                idx, valid = batch
                value, grads = jax.value_and_grad(loss)(params, idx, valid)
                updates, new_state = optimizer.update(grads, state, params)
                keep = jnp.any(valid)  # an all-padding batch changes nothing
                new = jax.tree.map(lambda a, b: jnp.where(keep, a, b), (optax.apply_updates(params, updates),
                                                                          new_state), (params, state))
                return new, value * jnp.sum(valid)

            (params, state), losses = jax.lax.scan(step, (params, state), (batches, valids))
            epoch_loss = jnp.sum(losses) / count
            stale = jnp.where(epoch_loss > best - tol, stale + 1, 0)
            return params, state, jnp.minimum(best, epoch_loss), stale, done_epochs + 1, key

        def going(carry):
            *_, stale, done_epochs, _ = carry
            return (stale <= patience) & (done_epochs < max_epochs)

        carry = (params, optimizer.init(params), jnp.array(jnp.inf, data.dtype), jnp.array(0), jnp.array(0),
                 shuffle_key)
        params = jax.lax.while_loop(going, epoch, carry)[0]
        predicted = (_logits(params, data[test_idx]) > 0).astype(labels.dtype)
        return jnp.sum((predicted == labels[test_idx]) * test_valid) / jnp.sum(test_valid)

    keys = jax.random.split(key, train.shape[0])
    return jax.vmap(one_fold)(keys, train, train_mask, test, test_mask)


def _median_bandwidth(z: np.ndarray) -> float:
    """The median distance between distinct points (of at most 1,000 of them)."""
    z = z[:1000]
    d = np.sqrt(np.maximum(np.sum((z[:, None] - z[None]) ** 2, -1), 0))
    return float(np.median(d[np.triu_indices(len(z), 1)])) or 1.0


def _gram(a, b, bandwidths) -> np.ndarray:
    """Sum of Gaussian kernels ``exp(-|a - b|^2 / (2 h^2))`` over the bandwidths."""
    d2 = np.maximum(np.sum(a**2, 1)[:, None] + np.sum(b**2, 1)[None] - 2 * a @ b.T, 0)
    return sum(np.exp(-d2 / (2 * h**2)) for h in bandwidths)


def _mmd2_relabelled(gram: np.ndarray, in_x: np.ndarray) -> np.ndarray:
    """Unbiased squared MMD of the pooled samples split by each row of ``in_x`` (bool,
    ``(R, N + M)``), from their one Gram matrix: block sums as quadratic forms."""
    a = in_x.astype(gram.dtype)
    b = 1 - a
    n, m = a.sum(1), b.sum(1)
    diag = np.diag(gram)
    ka = a @ gram
    sxx = np.sum(ka * a, 1) - a @ diag
    syy = np.sum((b @ gram) * b, 1) - b @ diag
    sxy = np.sum(ka * b, 1)
    return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2 * sxy / (n * m)


def _mmd2(x, y, bandwidths) -> float:
    pooled = np.concatenate([x, y])
    in_x = (np.arange(len(pooled)) < len(x))[None]
    return float(_mmd2_relabelled(_gram(pooled, pooled, bandwidths), in_x)[0])


def mmd(x, y, *, bandwidth: float | None = None) -> float:
    """Squared maximum mean discrepancy between the samples ``x`` and ``y``, unbiased.

    With Gaussian kernels ``k(a, b) = exp(-|a - b|^2 / (2 h^2))``: one, of bandwidth
    ``h = bandwidth``, or (default) the sum of three at 0.5, 1 and 2 times the median
    distance between the pooled samples. 0 in expectation when ``x`` and ``y`` come from
    one distribution (the unbiased estimate can be slightly negative).

    Args:
        x: ``(N, D)`` samples (1-D: ``D = 1``).
        y: ``(M, D)`` samples.
        bandwidth: the kernel's ``h``; ``None`` for the median heuristic.

    Returns:
        ``MMD^2``, a float.
    """
    x, y = _two_sets("mmd", x, y)
    if bandwidth is not None and not bandwidth > 0:
        raise ValueError(f"mmd: bandwidth must be > 0 or None, got {bandwidth}.")
    return _mmd2(x, y, _bandwidths(x, y, bandwidth))


def _bandwidths(x, y, bandwidth):
    if bandwidth is not None:
        return (float(bandwidth),)
    h = _median_bandwidth(np.concatenate([x, y]))
    return (0.5 * h, h, 2 * h)


def misspecification_test(observed, simulated, *, model=None, permutations: int = 1000, seed: int = 0) -> dict:
    """Is the observed data like the simulations? MMD in summary space, with a permutation test.

    BayesFlow's model-misspecification check: the summary network maps observations to
    the space the posterior is learned in; observations whose summaries lie away from
    those of simulated data were not produced by the simulator (or the summary network
    never saw their like), and their posteriors are not to be trusted. Under the null
    (same distribution) the pooled summaries are exchangeable, so the p-value is the
    fraction of random relabellings with an MMD at least the observed one.

    Args:
        observed: ``(N, ...)`` observations, or their summaries.
        simulated: ``(M, ...)`` simulated observations (from the prior predictive), or
            their summaries.
        model: a ``Summarized`` model: its summary network maps both sets first
            (``model.condition``). ``None``: the arrays are compared as given.
        permutations: relabellings for the null distribution.
        seed: their randomness.

    Returns:
        ``{"mmd": float, "null": (permutations,), "p_value": float}``: a small p-value
        (e.g. < 0.05) says the observed data are not like the simulations.
    """
    if model is not None:
        observed, simulated = np.asarray(model.condition(observed)), np.asarray(model.condition(simulated))
    x, y = _two_sets("misspecification_test", observed, simulated)
    if permutations < 1:
        raise ValueError(f"misspecification_test: permutations must be >= 1, got {permutations}.")
    pooled = np.concatenate([x, y])
    gram = _gram(pooled, pooled, _bandwidths(x, y, None))
    labels = np.arange(len(pooled)) < len(x)
    value = float(_mmd2_relabelled(gram, labels[None])[0])
    rng = np.random.default_rng(seed)
    shuffled = np.stack([rng.permutation(labels) for _ in range(permutations)])
    chunks = np.array_split(shuffled, -(-permutations // 100))  # 100 relabellings per matrix product
    null = np.concatenate([_mmd2_relabelled(gram, chunk) for chunk in chunks])
    return {"mmd": value, "null": null, "p_value": float((1 + np.sum(null >= value)) / (1 + permutations))}
