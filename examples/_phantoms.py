"""Shared helpers of the imaging examples: random phantoms and a blur, written in JAX."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

SIZE, NOISE, BLUR, GRAIN = 32, 0.05, 1.5, 0.02


def phantoms(key, n, ellipses=3):
    """``(n, 1, SIZE, SIZE)`` images, about [-0.5, 0.5]: soft-edged textured ellipses.

    A fine grain (white noise, 0.02) keeps the prior continuous: with an exactly constant
    background every background pixel would be a point mass, which no density (a flow's
    least of all) can represent, and its calibration ranks would pile up in the middle.
    """
    kc, ka, kt, ki, kf, kg = jr.split(key, 6)
    centre = jr.uniform(kc, (n, ellipses, 2), minval=-0.5, maxval=0.5)
    axes = jr.uniform(ka, (n, ellipses, 2), minval=0.15, maxval=0.5)
    angle = jr.uniform(kt, (n, ellipses), maxval=jnp.pi)
    intensity = jr.uniform(ki, (n, ellipses), minval=0.3, maxval=1.0)
    frequency = jr.uniform(kf, (n, ellipses), minval=4.0, maxval=10.0)
    grid = jnp.linspace(-1, 1, SIZE)
    gy, gx = jnp.meshgrid(grid, grid, indexing="ij")
    dx_, dy_ = gx - centre[..., 0, None, None], gy - centre[..., 1, None, None]
    cos, sin = jnp.cos(angle)[..., None, None], jnp.sin(angle)[..., None, None]
    u, v = cos * dx_ + sin * dy_, -sin * dx_ + cos * dy_
    inside = jax.nn.sigmoid(25 * (1 - (u / axes[..., 0, None, None]) ** 2 - (v / axes[..., 1, None, None]) ** 2))
    texture = 1 + 0.15 * jnp.sin(frequency[..., None, None] * u)
    image = jnp.sum(intensity[..., None, None] * inside * texture, axis=1)
    return (jnp.clip(image, 0, 1.2) / 1.2 - 0.5)[:, None] + GRAIN * jr.normal(kg, (n, 1, SIZE, SIZE))


def blur(x, width=BLUR):
    """A Gaussian blur (standard deviation ``width`` pixels, BLUR by default), the forward operator."""
    t = jnp.arange(-3, 4)
    k = jnp.exp(-(t**2) / (2 * width**2))
    kernel = jnp.outer(k, k) / jnp.sum(k) ** 2
    return jax.lax.conv_general_dilated(x, kernel[None, None], (1, 1), "SAME")


def psnr(a, b):
    """Mean PSNR (dB) of two batches of images with a unit range."""
    return float(np.mean(10 * np.log10(1.0 / np.mean((np.asarray(a) - np.asarray(b)) ** 2, axis=(-2, -1)))))
