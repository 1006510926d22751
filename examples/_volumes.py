"""The 3D inverse problem of ``examples/volume_posterior.py``, written in JAX: random vessel-like
volumes, a depth-attenuated anisotropic blur, its Tikhonov inverse, the summary network and the
pictures (orthogonal slices).

Axis order of a volume: ``(depth, height, width)``; depth is the axis the light (or sound)
travels along, so it carries the attenuation and the wider blur. All sizes below are given
for a 32^3 volume and scale with the side, so ``--size 64`` is the same problem, finer.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import invjax as ij

TUBES = 4  # vessels per volume
SEGMENTS = 8  # straight pieces per vessel (a quadratic Bezier curve, sampled)
NOISE = 0.02  # standard deviation of the observation noise
GRAIN = 0.02  # white noise on the volume: keeps the prior a density (a constant background is a point mass)
BLUR = (2.0, 1.0, 1.0)  # Gaussian blur, voxels of a 32^3 volume, along (depth, height, width)
DEEPEST_GAIN = 0.1  # the attenuation's gain at the bottom of the volume (1 at the top)
WEIGHT = 1e-2  # the Tikhonov weight of the reconstruction the posterior starts from


def _grid(size):
    """Voxel centres in the box ``[-1, 1]^3``, ``(size**3, 3)``, in ``(depth, height, width)`` order."""
    t = jnp.linspace(-1.0, 1.0, size)
    return jnp.stack(jnp.meshgrid(t, t, t, indexing="ij"), axis=-1).reshape(-1, 3)


def vessels(key, n, size=32):
    """``(n, 1, size, size, size)`` densities in about ``[0, 1]``: ``TUBES`` bent tubes each.

    Every tube follows a quadratic Bezier curve through the box (a random centre,
    direction, half-length 0.6 to 1.2 and bend, in box units where the box is
    ``[-1, 1]^3``), with a Gaussian cross-section of standard deviation 0.04 to 0.1 (0.6 to
    1.5 voxels at 32^3) and a peak intensity 0.4 to 1; where tubes cross the brighter one
    wins (a maximum). A fine grain (``GRAIN``) keeps the prior continuous.
    """
    kc, kd, kl, kb, kr, ki, kg = jr.split(key, 7)
    centre = jr.uniform(kc, (n, TUBES, 3), minval=-0.6, maxval=0.6)
    direction = jr.normal(kd, (n, TUBES, 3))
    direction /= jnp.linalg.norm(direction, axis=-1, keepdims=True)
    half = jr.uniform(kl, (n, TUBES, 1), minval=0.6, maxval=1.2)
    bend = 0.4 * jr.normal(kb, (n, TUBES, 3))
    radius = jr.uniform(kr, (n, TUBES, 1), minval=0.04, maxval=0.1)
    intensity = jr.uniform(ki, (n, TUBES, 1), minval=0.4, maxval=1.0)
    start, control, end = centre - half * direction, centre + bend, centre + half * direction
    t = jnp.linspace(0.0, 1.0, SEGMENTS + 1)[:, None, None, None]
    curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end  # (SEGMENTS + 1, n, TUBES, 3)
    points = _grid(size)
    squares = jnp.sum(points**2, -1)

    def nearer(d2, segment):
        # Squared distance of every voxel p to one straight piece [a, b] of every tube,
        # |p - a|^2 - 2 s (p - a).(b - a) + s^2 |b - a|^2 at the nearest point's parameter
        # s, written with products over the voxels (matrix products, no (..., voxels, 3)
        # temporaries); a scan over the pieces keeps one (n, TUBES, voxels) array alive.
        a, b = segment
        ab = b - a
        along = jnp.einsum("vk,ntk->ntv", points, ab) - jnp.sum(a * ab, -1, keepdims=True)
        length2 = jnp.sum(ab * ab, -1, keepdims=True)
        s = jnp.clip(along / length2, 0.0, 1.0)
        to_a = squares - 2 * jnp.einsum("vk,ntk->ntv", points, a) + jnp.sum(a * a, -1, keepdims=True)
        return jnp.minimum(d2, to_a - 2 * s * along + s**2 * length2), None

    d2, _ = jax.lax.scan(nearer, jnp.full((n, TUBES, size**3), jnp.inf), (curve[:-1], curve[1:]))
    density = jnp.max(intensity * jnp.exp(-d2 / (2 * radius**2)), axis=1)
    return density.reshape(n, 1, size, size, size) + GRAIN * jr.normal(kg, (n, 1, size, size, size))


def blur_matrix(size, sigma):
    """``(size, size)``: a Gaussian blur of standard deviation ``sigma`` voxels along one axis,
    zero outside the volume (rows normalised in the infinite domain), symmetric (NumPy, float64)."""
    t = np.arange(size)
    return np.exp(-((t[:, None] - t[None]) ** 2) / (2 * sigma**2)) / (np.sqrt(2 * np.pi) * sigma)


def gain(size=32):
    """The attenuation along depth, ``(size, 1, 1)``: 1 at the top, ``DEEPEST_GAIN`` at the bottom."""
    return (DEEPEST_GAIN ** np.linspace(0.0, 1.0, size))[:, None, None].astype(np.float32)


def _along_axes(v, matrices):
    """``v`` ``(..., D, H, W)`` multiplied by one matrix along each of its last three axes."""
    for axis, matrix in zip((-3, -2, -1), matrices, strict=True):
        v = jnp.moveaxis(jnp.tensordot(v, jnp.asarray(matrix, v.dtype), axes=([axis], [1])), -1, axis)
    return v


def _blurs(size):
    return [blur_matrix(size, sigma * size / 32) for sigma in BLUR]


def blur(v):
    """The anisotropic Gaussian blur of ``(..., D, H, W)`` volumes (standard deviations
    ``BLUR``, scaled with the side), one axis at a time as a matrix product: separable, and
    on a CPU far faster than a one-channel 3D convolution. Symmetric: its own adjoint."""
    return _along_axes(v, _blurs(v.shape[-1]))


def operator(density):
    """The forward operator ``A``: blur, then attenuation with depth; ``(..., S, S, S)`` both ways."""
    return gain(density.shape[-1]) * blur(density)


def adjoint(y):
    """``A^T``: attenuation, then the (symmetric) blur."""
    return blur(gain(y.shape[-1]) * y)


@functools.cache
def _normal_eigen(size):
    """Eigendecompositions ``(lambda, U)`` of the three factors of ``A^T A``, depth first.

    ``A`` is a Kronecker product, ``(G B_d) x B_h x B_w`` (``G`` the attenuation, diagonal
    along depth; ``B`` the blur along one axis), so ``A^T A = (B_d G^2 B_d) x B_h^2 x B_w^2``
    and three 32 x 32 eigendecompositions (float64, on the host) diagonalise it exactly.
    """
    b_d, b_h, b_w = _blurs(size)
    g = gain(size)[:, 0, 0].astype(np.float64)
    return [np.linalg.eigh(m) for m in (b_d @ np.diag(g**2) @ b_d, b_h @ b_h, b_w @ b_w)]


def tikhonov(y, weight):
    """The classical baseline, exactly: ``argmin_d |A d - y|^2 + weight |d|^2 = (A^T A + weight)^{-1}
    A^T y``, in the eigenbasis of ``A^T A`` (six small matrix products per volume, no
    iterations). ``y``: ``(..., S, S, S)``; returns the density, same shape."""
    (l_d, u_d), (l_h, u_h), (l_w, u_w) = _normal_eigen(y.shape[-1])
    spectrum = l_d[:, None, None] * l_h[None, :, None] * l_w[None, None, :]
    c = _along_axes(adjoint(y), [u_d.T, u_h.T, u_w.T])
    return _along_axes(c / (jnp.asarray(spectrum, y.dtype) + weight), [u_d, u_h, u_w])


def simulate(key, n, size=32):
    """``n`` pairs ``(x, y)``: a volume ``x`` (the density less 0.5, centred for the flow) and its
    observation ``y = A(density) + NOISE * noise``, both ``(n, 1, size, size, size)``."""
    kx, kn = jr.split(key)
    density = vessels(kx, n, size)
    return density - 0.5, operator(density) + NOISE * jr.normal(kn, density.shape)


def psnr(a, b, axes=(-3, -2, -1)):
    """Mean PSNR (dB) of two batches of volumes with a unit range (over ``axes``)."""
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2, axis=axes)
    return float(np.mean(10 * np.log10(1.0 / mse)))


class Summary(eqx.Module):
    """The summary network: one observation ``(1, S, S, S)`` -> the flow's condition ``(K, S, S, S)``.

    A residual correction of physics: channel 0 of the condition, the point estimate the
    flow is recentred on, starts as the Tikhonov reconstruction (weight ``weight``, centred
    like ``x``) and the network learns what to add (its last convolution is zero at
    initialisation), so the flow sees a useful condition from the first step instead of
    waiting for a summary network to learn the inverse of a blur. The network sees the
    observation, the Tikhonov reconstruction and the depth (a convolution does not know
    where it is, and the noise's weight grows with depth). It works at half resolution,
    where the flow's first level runs: the three channels are squeezed to 24 at
    ``(S/2)^3``, two residual blocks make ``8 K`` channels there, and the inverse squeeze
    hands them over as a ``(K, S, S, S)`` map, which the flow's own squeeze turns back into
    the same ``8 K`` channels.
    """

    blocks: tuple
    weight: float = eqx.field(static=True)

    def __init__(self, cond_channels, hidden, *, key, weight=WEIGHT):
        k1, k2, k3 = jr.split(key, 3)
        first = ij.layers.ResidualBlock(24, hidden, hidden, spatial_dims=3, final_activation=jax.nn.relu, key=k1)
        # A residual block's last convolution starts at zero (a coupling starts as the
        # identity); inside this network that would leave the ReLU after it, and all that
        # follows, without a gradient. The first block's is drawn like its others.
        last = first.convs[-1]
        first = eqx.tree_at(lambda b: b.convs[-1].weight, first,
                            eqx.nn.Conv3d(hidden, hidden, 3, padding=1, key=k3).weight.astype(last.weight.dtype))
        self.blocks = (first, ij.layers.ResidualBlock(hidden, 8 * cond_channels, hidden, spatial_dims=3, key=k2))
        self.weight = weight

    def __call__(self, y):
        size = y.shape[-1]
        estimate = tikhonov(y, self.weight)
        # A NumPy constant: split over devices, each takes its slice (no gather of a computed one).
        depth = np.broadcast_to(np.linspace(-1.0, 1.0, size, dtype=np.float32)[:, None, None], y.shape)
        h = jnp.concatenate([y, estimate, depth])[None]  # (1, 3, S, S, S)
        h = ij.layers.Squeeze().forward(h)[0][0]  # (24, S/2, S/2, S/2)
        for block in self.blocks:
            h = block(h)
        correction = ij.layers.Squeeze().inverse(h[None])[0]  # (K, S, S, S)
        return correction.at[0].add(estimate[0] - 0.5)


def centre_slices(v):
    """The three orthogonal slices through the centre of ``(..., D, H, W)``: axial (a plane at
    mid-depth, ``(H, W)``), coronal (``(D, W)``) and sagittal (``(D, H)``)."""
    v = np.asarray(v)
    d, h, w = v.shape[-3:]
    return v[..., d // 2, :, :], v[..., :, h // 2, :], v[..., :, :, w // 2]
