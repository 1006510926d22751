"""Amortized posterior inference with a conditional HINT, checked against the exact answer.

    python examples/conditional_hint_posterior.py      # 85 s on a 2-core CPU (docs/examples/posterior.md)

A linear-Gaussian inverse problem: ``x ~ N(0, I_2)``, ``y = A x + sigma * noise`` with
``y`` in R^3. The posterior ``p(x | y)`` is Gaussian with covariance
``(I + A^T A / sigma^2)^-1`` and mean ``cov A^T y / sigma^2``. The conditional HINT is
trained once on simulated pairs ``(x, y)`` (the joint log-likelihood, as
InvertibleNetworks.jl does); then, for new observations, posterior samples come from one inverse pass
each. Prints the relative errors of the learned posterior mean and standard deviation and
writes ``examples/out/conditional_hint_posterior.png``.
"""

from __future__ import annotations

import argparse
import pathlib

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from _digits import OUT, train

import invjax as ij

A = jnp.array([[1.0, 0.5], [-0.3, 1.2], [0.8, -0.6]])
SIGMA = 0.4


def simulate(key, n):
    kx, kn = jr.split(key)
    x = jr.normal(kx, (n, 2))
    return x, x @ A.T + SIGMA * jr.normal(kn, (n, 3))


def exact_posterior(y):
    cov = jnp.linalg.inv(jnp.eye(2) + A.T @ A / SIGMA**2)
    return y @ A @ cov.T / SIGMA**2, cov


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--samples", type=int, default=4000)
    args = p.parse_args()
    k_model, k_init, k_obs, k_post = jr.split(jr.key(0), 4)

    flow = ij.nets.ConditionalHINT(2, args.depth, args.hidden, cond_channels=3, key=k_model, spatial_dims=0)
    flow = flow.initialize(*simulate(k_init, 1024))
    # Fresh simulated pairs every step, as an iterable of (x, y) batches; the loss is the
    # joint log-likelihood log p(x, y).
    draw = jax.jit(simulate, static_argnums=1)
    pairs = (draw(k, 256) for k in jr.split(jr.key(1), args.steps))
    flow, _ = train(flow, pairs, steps=args.steps, loss=lambda f, x, y: -jnp.mean(f.log_prob_joint(x, y)),
                    lr=2e-3, initialize=False, report=lambda nll: f"joint nll, last 50 steps: {nll:.3f}")

    _, observations = simulate(k_obs, 3)
    mean, cov = exact_posterior(observations)
    errors = []
    for i, y in enumerate(observations):
        ys = jnp.broadcast_to(y, (args.samples, 3))
        draws = flow.sample(jr.fold_in(k_post, i), (args.samples, 2), ys)
        m, s = draws.mean(0), draws.std(0)
        exact_s = jnp.sqrt(jnp.diag(cov))
        err_m = float(jnp.linalg.norm(m - mean[i]) / jnp.linalg.norm(exact_s))  # in units of the posterior std
        err_s = float(jnp.max(jnp.abs(s - exact_s) / exact_s))
        errors.append((err_m, err_s))
        print(f"y = {np.round(np.asarray(y), 2)}: mean {np.round(np.asarray(m), 3)} (exact "
              f"{np.round(np.asarray(mean[i]), 3)}), std {np.round(np.asarray(s), 3)} (exact "
              f"{np.round(np.asarray(exact_s), 3)})")
        errors[-1] += (draws,)
    print(f"posterior mean error (|mean - exact| / |exact std|), worst of 3: {max(e[0] for e in errors):.3f}")
    print(f"posterior std relative error, worst of 3: {max(e[1] for e in errors):.3f}")
    plot(errors, mean, cov, OUT / "conditional_hint_posterior.png")


def plot(results, mean, cov, path: pathlib.Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 4))
    angle = np.linspace(0, 2 * np.pi, 200)
    circle = np.stack([np.cos(angle), np.sin(angle)])
    chol = np.linalg.cholesky(np.asarray(cov))
    for ax, (_, _, draws), m in zip(axes, results, np.asarray(mean)):  # noqa: B905 (mean may hold more rows)
        ax.scatter(*np.asarray(draws[:1500]).T, s=2, alpha=0.3, label="conditional HINT samples")
        for r in (1, 2):
            ax.plot(*(m[:, None] + r * chol @ circle), "k-", lw=1, label="exact 1 and 2 sigma" if r == 1 else None)
        ax.set_aspect("equal")
    axes[0].legend(loc="upper left", fontsize=7)
    fig.suptitle("Posterior p(x | y) for three observations: learned vs exact")
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
