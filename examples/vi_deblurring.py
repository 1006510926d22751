"""Image deblurring by variational inference: a Glow trained by reverse KL, checked exactly.

    python examples/vi_deblurring.py         # 119 s on a 2-core CPU (docs/examples/vi.md)

A digit ``x`` (8x8, grey levels scaled to [0, 1]) is blurred by a 3x3 Gaussian kernel and
observed with noise: ``y = A x + sigma * noise``. The prior is a Gaussian fitted to the
training digits, so the posterior ``p(x | y)`` is Gaussian with a known mean and
covariance, and the flow can be checked against it pixel by pixel. The flow never sees a
posterior sample: ``ij.fit_vi`` minimises ``E_q[log q(x) - log p(y | x) - log p(x)]``,
drawing ``x`` through the flow's inverse, whose gradient the engine computes without
storing activations. Prints the errors of the posterior mean and standard deviation
relative to the exact ones, and writes ``examples/out/vi_deblurring.png`` (truth,
observation, posterior samples, mean and standard deviation, flow vs exact).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import jax.random as jr
import jax.scipy.signal as jss
import numpy as np
import optax
from _digits import load, save_figure

import invjax as ij

SIGMA = 0.05  # noise standard deviation, on [0, 1] grey levels
KERNEL = jnp.outer(jnp.array([1.0, 2.0, 1.0]), jnp.array([1.0, 2.0, 1.0])) / 16


def blur(x):
    """The forward operator ``A``: a 3x3 Gaussian blur with zero padding, ``(B, 1, 8, 8)``."""
    return jax.vmap(lambda img: jss.convolve2d(img[0], KERNEL, mode="same")[None])(x)


def as_matrix(op, n=64):
    """The ``(64, 64)`` matrix of a linear operator on 8x8 images."""
    basis = jnp.eye(n).reshape(n, 1, 8, 8)
    return op(basis).reshape(n, n).T


def gaussian_prior(train):
    flat = train.reshape(len(train), -1) / 16
    return flat.mean(0), jnp.cov(flat.T) + 1e-3 * jnp.eye(64)  # a small ridge: some pixels are always 0


def exact_posterior(y, a, mu, cov):
    precision = jnp.linalg.inv(cov) + a.T @ a / SIGMA**2
    post_cov = jnp.linalg.inv(precision)
    return post_cov @ (jnp.linalg.solve(cov, mu) + a.T @ y.ravel() / SIGMA**2), post_cov


def main(steps):
    train, test = load(jr.key(0))
    mu, cov = gaussian_prior(train)
    a = as_matrix(blur)
    truth = test[3:4] / 16
    y = blur(truth) + SIGMA * jr.normal(jr.key(1), truth.shape)
    prior_precision = jnp.linalg.inv(cov)

    def log_target(x):  # log p(y | x) + log p(x), up to constants
        flat = x.reshape(x.shape[0], -1)
        residual = flat @ a.T - y.reshape(1, -1)
        d = flat - mu
        return -0.5 * jnp.sum(residual**2, axis=1) / SIGMA**2 - 0.5 * jnp.einsum("bi,ij,bj->b", d, prior_precision, d)

    flow = ij.nets.Glow(1, levels=2, depth=4, hidden=32, key=jr.key(2))
    start = time.perf_counter()
    optimizer = optax.chain(optax.clip_by_global_norm(10.0), optax.adam(optax.cosine_decay_schedule(1e-3, steps, 0.01)))
    flow, _ = ij.fit_vi(flow, log_target, (1, 8, 8), key=jr.key(3), steps=steps, batch_size=64, optimizer=optimizer)
    seconds = time.perf_counter() - start

    samples = flow.sample(jr.key(4), (4000, 1, 8, 8)).reshape(4000, 64)
    mean, std = samples.mean(0), samples.std(0)
    exact_mean, exact_cov = exact_posterior(y, a, mu, cov)
    exact_std = jnp.sqrt(jnp.diag(exact_cov))
    mean_err = float(jnp.linalg.norm(mean - exact_mean) / jnp.linalg.norm(exact_mean))
    std_err = float(jnp.linalg.norm(std - exact_std) / jnp.linalg.norm(exact_std))
    print(f"{steps} steps in {seconds:.0f} s")
    print(f"posterior mean: relative error vs exact {mean_err:.3f}; RMSE vs truth: observation "
          f"{float(jnp.sqrt(jnp.mean((y - truth) ** 2))):.3f}, flow mean "
          f"{float(jnp.sqrt(jnp.mean((mean - truth.ravel()) ** 2))):.3f}, exact mean "
          f"{float(jnp.sqrt(jnp.mean((exact_mean - truth.ravel()) ** 2))):.3f}")
    print(f"posterior std: relative error vs exact {std_err:.3f} (mean std: flow {float(std.mean()):.4f}, "
          f"exact {float(exact_std.mean()):.4f})")
    plot(truth, y, samples[:4], mean, std, exact_mean, exact_std)


def plot(truth, y, samples, mean, std, exact_mean, exact_std):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("truth", truth), ("observation (blur + noise)", y)]
    panels += [(f"posterior sample {i + 1}", s) for i, s in enumerate(samples)]
    panels += [("posterior mean (flow)", mean), ("posterior mean (exact)", exact_mean),
               ("posterior std (flow)", std), ("posterior std (exact)", exact_std)]
    fig, axes = plt.subplots(2, 5, figsize=(12, 5.2))
    vmax_std = float(jnp.maximum(std.max(), exact_std.max()))
    for ax, (title, img) in zip(axes.ravel(), panels, strict=True):
        is_std = "std" in title
        ax.imshow(np.asarray(img).reshape(8, 8), cmap="magma" if is_std else "gray",
                  vmin=0, vmax=vmax_std if is_std else 1)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    save_figure(fig, "vi_deblurring.png")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6000)
    main(parser.parse_args().steps)
