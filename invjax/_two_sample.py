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


def c2st(x, y, *, seed: int = 0, folds: int = 5, hidden: int | None = None, epochs: int = 100,
         batch_size: int = 128, learning_rate: float = 1e-3) -> float:
    """Classifier two-sample test: cross-validated accuracy of an MLP separating ``x`` from ``y``.

    As in the simulation-based inference benchmark (``sbibm.metrics.c2st``): both sets
    standardised with ``x``'s mean and standard deviation, a two-hidden-layer ReLU MLP of
    width ``10 * D``, Adam, ``folds``-fold cross-validation (shuffled), the mean test
    accuracy. Trained with JAX, the folds in one vectorised program (full passes over
    shuffled minibatches for ``epochs`` epochs; the classifier of the epoch with the best
    accuracy on a tenth of each fold's training data held out is the one tested, as
    early stopping would).

    Args:
        x: ``(N, D)`` samples (e.g. the reference posterior's); a 1-D array is ``D = 1``.
        y: ``(M, D)`` samples (e.g. the flow's). ``N`` and ``M`` may differ; equal sizes
            make 0.5 the chance level.
        seed: the folds', initialisation's and minibatches' randomness.
        folds: cross-validation folds, >= 2.
        hidden: width of the hidden layers; default ``10 * D``.
        epochs: passes over each fold's training data.
        batch_size: samples per Adam step.
        learning_rate: Adam's.

    Returns:
        The accuracy, a float in ``[0, 1]``: about 0.5 when the sets come from one
        distribution, 1.0 when they are separable.
    """
    x, y = _two_sets("c2st", x, y)
    if folds < 2 or epochs < 1 or batch_size < 1:
        raise ValueError(f"c2st: folds >= 2, epochs >= 1 and batch_size >= 1 needed; got folds={folds}, "
                         f"epochs={epochs}, batch_size={batch_size}.")
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 0, std, 1.0)
    data = ((np.concatenate([x, y]) - mean) / std).astype(np.float32)
    labels = np.concatenate([np.zeros(len(x)), np.ones(len(y))]).astype(np.int32)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data))
    fold_of = np.empty(len(data), int)
    fold_of[order] = np.arange(len(data)) % folds
    # Each fold's test set, and its training set with a tenth held out for the choice of
    # epoch; index arrays padded to one length so the folds run as one vmapped program.
    test = [np.flatnonzero(fold_of == f) for f in range(folds)]
    train = [rng.permutation(np.flatnonzero(fold_of != f)) for f in range(folds)]
    held = [t[: max(1, len(t) // 10)] for t in train]
    fit = [t[len(h):] for t, h in zip(train, held, strict=True)]
    pad = lambda sets: np.stack([np.resize(s, max(map(len, sets))) for s in sets])
    mask = lambda sets: np.stack([np.arange(max(map(len, sets))) < len(s) for s in sets])
    width = hidden or 10 * data.shape[1]
    accuracy = _c2st_folds(jnp.asarray(data), jnp.asarray(labels), pad(fit), pad(held), mask(held), pad(test),
                           mask(test), jax.random.key(seed), width, epochs, min(batch_size, min(map(len, fit))),
                           learning_rate)
    return float(np.mean(np.asarray(accuracy)))


@eqx.filter_jit
def _c2st_folds(data, labels, fit, held, held_mask, test, test_mask, key, width: int, epochs: int, batch_size: int,
                learning_rate: float):
    """Train one classifier per fold (vmapped) and return each fold's test accuracy."""
    optimizer = optax.adam(learning_rate)
    steps_per_epoch = fit.shape[1] // batch_size

    def accuracy(model, idx, valid):
        predicted = jax.vmap(model)(data[idx]).argmax(-1)
        return jnp.sum((predicted == labels[idx]) * valid) / jnp.sum(valid)

    def one_fold(key, fit_idx, held_idx, held_valid, test_idx, test_valid):
        init_key, shuffle_key = jax.random.split(key)
        model = eqx.nn.MLP(data.shape[1], 2, width, 2, activation=jax.nn.relu, key=init_key)
        params, static = eqx.partition(model, eqx.is_array)

        def loss(params, idx):
            logits = jax.vmap(eqx.combine(params, static))(data[idx])
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels[idx]).mean()

        def epoch(carry, key):
            params, state, best, best_acc = carry
            batches = jax.random.permutation(key, fit_idx)[: steps_per_epoch * batch_size].reshape(steps_per_epoch, -1)

            def step(carry, idx):
                params, state = carry
                grads = jax.grad(loss)(params, idx)
                updates, state = optimizer.update(grads, state, params)
                return (optax.apply_updates(params, updates), state), None

            (params, state), _ = jax.lax.scan(step, (params, state), batches)
            acc = accuracy(eqx.combine(params, static), held_idx, held_valid)
            better = acc > best_acc
            best = jax.tree.map(lambda new, old: jnp.where(better, new, old), params, best)
            return (params, state, best, jnp.maximum(acc, best_acc)), None

        carry = (params, optimizer.init(params), params, jnp.array(-1.0))
        (_, _, best, _), _ = jax.lax.scan(epoch, carry, jax.random.split(shuffle_key, epochs))
        return accuracy(eqx.combine(best, static), test_idx, test_valid)

    keys = jax.random.split(key, fit.shape[0])
    return jax.vmap(one_fold)(keys, fit, held, held_mask, test, test_mask)


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
