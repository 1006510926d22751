"""InvertibleNetworks.jl's squeeze patterns, against outputs written out by hand.

The expected channels below are derived from InvertibleNetworks.jl (master ``daa2ea9``),
``src/utils/dimensionality_operations.jl``, not from invjax:

- ``squeeze(X; pattern="column")`` is ``reshape(X, nx÷2, ny÷2, 4C, B)``;
- ``"patch"`` and ``"checkerboard"`` put block ``i`` (1-based) of channel ``c`` at channel
  ``(i-1) C + c`` (``Y[..., (i-1)*nc_in+1:i*nc_in, :] = X[ix..., :, :]``), where
  ``patch_inds`` takes the halves ``ix = (i+1) % 2``, ``iy = div(i-1, 2) % 2``,
  ``iz = div(i-1, 4) % 2`` and ``checkboard_inds`` the parities ``ix+1:2:nx`` etc.;
- ``Haar_squeeze`` lifts along ``ny`` (``L, H = HaarLift(x, 2)``), then along ``nx``
  (``a, h = HaarLift(L, 1)``, ``v, d = HaarLift(H, 1)``), then along ``nz``, and returns
  ``cat(a..., v..., h..., d..., dims=N-1)``; ``HaarLift`` gives
  ``L = (x[2k] + x[2k+1]) / sqrt(2)``, ``H = (x[2k] - x[2k+1]) / sqrt(2)`` (0-based).

Julia's ``X[i, j, c, b]`` is invjax's ``x[b, c, j, i]`` (``nx`` is the last axis ``W``, ``ny``
is ``H``; volumes ``X[i, j, l, c, b] == x[b, c, l, j, i]``). In the images below, rows are
``H`` (Julia's ``ny``) and columns ``W`` (Julia's ``nx``).
"""

import math

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import invjax as ij
from invjax import layers as L
from invjax.layers._squeeze import SqueezeLanes

PATTERNS = [L.ColumnSqueeze, L.PatchSqueeze, L.CheckerboardSqueeze, L.SubbandHaarSqueeze]

# x[0, 0] = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]: Julia X[i, j] = 4(j-1) + (i-1).
IMAGE = np.arange(16.0).reshape(1, 1, 4, 4)
# Two channels, the second 100 + the first: shows the channel order (channel- or offset-major).
IMAGE2 = np.concatenate([IMAGE, 100 + IMAGE], axis=1)
# A volume (D, H, W) = (2, 4, 2): x[0, 0, z, y, x] = 8z + 2y + x; Julia X[i, j, l] = 8(l-1) + 2(j-1) + (i-1).
VOLUME = np.arange(16.0).reshape(1, 1, 2, 4, 2)


def _check(layer, x, expected):
    x, expected = jnp.asarray(x), jnp.asarray(expected, jnp.float64)
    y, logdet = layer.forward(x)
    assert y.shape == expected.shape
    np.testing.assert_allclose(np.asarray(y), np.asarray(expected), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(logdet), np.zeros(x.shape[0]))
    np.testing.assert_allclose(np.asarray(layer.inverse(y)), np.asarray(x), rtol=0, atol=1e-12)


def _check_offset_major(layer, blocks):
    """``blocks`` are the 4 output channels of IMAGE; IMAGE2's are [b0, 100 + b0, b1, 100 + b1, ...]."""
    _check(layer, IMAGE, [blocks])
    blocks = np.asarray(blocks, float)
    _check(layer, IMAGE2, np.stack([blocks, 100 + blocks], axis=1).reshape(1, 8, 2, 2))


def test_column_is_julias_reshape():
    # reshape(X, 2, 2, 4, 1): channel k holds X's elements 4k ... 4k+3 in memory order (Julia's
    # column k+1, x[0, 0, k] here), refolded column-major to 2x2 = [[4k, 4k+1], [4k+2, 4k+3]] in invjax.
    _check(L.ColumnSqueeze(), IMAGE, [[[[0, 1], [2, 3]], [[4, 5], [6, 7]], [[8, 9], [10, 11]], [[12, 13], [14, 15]]]])
    # Channel-major, as reshape: channel 1's runs follow channel 0's.
    y, _ = L.ColumnSqueeze().forward(jnp.asarray(IMAGE2))
    np.testing.assert_array_equal(np.asarray(y[0, 4]), [[100, 101], [102, 103]])


def test_patch_takes_quadrants_offset_major():
    # patch_inds: i=1 (ix 0, iy 0) top-left, i=2 (ix 1: second half of nx = W) top-right,
    # i=3 (iy 1) bottom-left, i=4 bottom-right; channel (i-1) C + c.
    quadrants = [[[0, 1], [4, 5]], [[2, 3], [6, 7]], [[8, 9], [12, 13]], [[10, 11], [14, 15]]]
    _check_offset_major(L.PatchSqueeze(), quadrants)


def test_checkerboard_takes_parities_offset_major():
    # checkboard_inds: i=1 X[1:2:end, 1:2:end] = x[..., 0::2, 0::2]; i=2 (ix 1) X[2:2:end, 1:2:end] =
    # x[..., 0::2, 1::2]; i=3 (iy 1) x[..., 1::2, 0::2]; i=4 x[..., 1::2, 1::2]; channel (i-1) C + c.
    blocks = [[[0, 2], [8, 10]], [[1, 3], [9, 11]], [[4, 6], [12, 14]], [[5, 7], [13, 15]]]
    _check_offset_major(L.CheckerboardSqueeze(), blocks)
    # Squeeze takes the same blocks channel-major: they coincide for one channel only.
    np.testing.assert_array_equal(np.asarray(L.Squeeze().forward(jnp.asarray(IMAGE))[0]), [blocks])
    assert not np.array_equal(np.asarray(L.Squeeze().forward(jnp.asarray(IMAGE2))[0]),
                              np.asarray(L.CheckerboardSqueeze().forward(jnp.asarray(IMAGE2))[0]))


def test_subband_haar_is_julias_haar_squeeze():
    # Block [[p, q], [r, s]] (rows along ny = H): a = (p+q+r+s)/2, v = (p+q-r-s)/2 (ny detail first,
    # HaarLift(x, 2), then nx average), h = (p-q+r-s)/2, d = (p-q-r+s)/2. On IMAGE every v is
    # (0+1-4-5)/2 = -4, every h is (0-1+4-5)/2 = -1, every d is 0.
    _check(L.SubbandHaarSqueeze(), IMAGE, [[[[5, 9], [21, 25]], [[-4, -4], [-4, -4]], [[-1, -1], [-1, -1]],
                                            [[0, 0], [0, 0]]]])
    # Sub-band-major: [a(c0), a(c1), v(c0), v(c1), h(c0), h(c1), d(c0), d(c1)];
    # c0 = [[0, 1], [2, 3]] gives a, v, h, d = 3, -2, -1, 0; c1 = [[0, 0], [4, 0]] gives 2, -2, 2, -2.
    x = np.array([[[[0.0, 1.0], [2.0, 3.0]], [[0.0, 0.0], [4.0, 0.0]]]])
    _check(L.SubbandHaarSqueeze(), x, np.array([3, 2, -2, -2, -1, 2, 0, -2]).reshape(1, 8, 1, 1))
    # HaarSqueeze (wavelet_squeeze's order) has the same coefficients, channel-major, v and h swapped.
    _check(L.HaarSqueeze(), x, np.array([3, -1, -2, 0, 2, 2, -2, -2]).reshape(1, 8, 1, 1))


def test_volume_references():
    # VOLUME (D, H, W) = (2, 4, 2), x = 8z + 2y + x; output (1, 8, 1, 2, 1), channel k = ix + 2 iy + 4 iz.
    # column: reshape, channel k holds the values 2k, 2k+1.
    _check(L.ColumnSqueeze(), VOLUME, np.arange(16.0).reshape(1, 8, 1, 2, 1))
    # patch: halves (W: 1 sample, H: 2, D: 1), block k holds 8 iz + 4 iy + ix + {0, 2}.
    patch = [[0, 2], [1, 3], [4, 6], [5, 7], [8, 10], [9, 11], [12, 14], [13, 15]]
    _check(L.PatchSqueeze(), VOLUME, np.array(patch, float).reshape(1, 8, 1, 2, 1))
    # checkerboard: parities, block k holds 8 iz + 2 iy + ix + {0, 4}.
    board = [[0, 4], [1, 5], [2, 6], [3, 7], [8, 12], [9, 13], [10, 14], [11, 15]]
    _check(L.CheckerboardSqueeze(), VOLUME, np.array(board, float).reshape(1, 8, 1, 2, 1))
    # Two channels of a 2x2x2 block (x = 4z + 2y + x and 100 + that): offset-major [0, 100, 1, 101, ...].
    cube = np.arange(8.0).reshape(1, 1, 2, 2, 2)
    expected = np.array([[k, 100 + k] for k in range(8)], float).reshape(1, 16, 1, 1, 1)
    _check(L.CheckerboardSqueeze(), np.concatenate([cube, 100 + cube], axis=1), expected)


def test_subband_haar_volume():
    # On the 2x2x2 cube x = 4z + 2y + x: average 28 / (2 sqrt 2) = 7 sqrt 2; details (first - second) / (2 sqrt 2)
    # summed: along nx (W) -4/(2 sqrt 2) = -sqrt 2, along ny (H) -2 sqrt 2, along nz (D) -4 sqrt 2, the
    # mixed ones 0. Julia's order: cat(a..., v..., h..., d...) with each split along nz, so
    # k = 4 fx + 2 fy + fz: [a, z, y, yz, x, xz, xy, xyz].
    cube = np.arange(8.0).reshape(1, 1, 2, 2, 2)
    expected = math.sqrt(2) * np.array([7, -4, -2, 0, -1, 0, 0, 0], float).reshape(1, 8, 1, 1, 1)
    _check(L.SubbandHaarSqueeze(), cube, expected)
    # HaarSqueeze: k = 4 fz + 2 fy + fx (invjax's axes, as wavelet_squeeze).
    _check(L.HaarSqueeze(), cube, math.sqrt(2) * np.array([7, -1, -2, 0, -4, 0, 0, 0], float).reshape(1, 8, 1, 1, 1))


@pytest.mark.parametrize("layer", PATTERNS)
@pytest.mark.parametrize("shape", [(2, 3, 6), (2, 3, 4, 6), (2, 2, 4, 2, 6)])
def test_round_trip_and_norm(layer, shape):
    x = jr.normal(jr.key(1), shape)
    y, logdet = layer().forward(x)
    n = len(shape) - 2
    assert y.shape == (shape[0], shape[1] * 2**n, *[s // 2 for s in shape[2:]])
    np.testing.assert_allclose(np.asarray(layer().inverse(y)), np.asarray(x), rtol=0, atol=1e-12)
    # A permutation or an orthonormal map: the norm of every sample is kept (logdet 0).
    np.testing.assert_allclose(np.asarray(jnp.sum(y**2, axis=tuple(range(1, y.ndim)))),
                               np.asarray(jnp.sum(x**2, axis=tuple(range(1, x.ndim)))), rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(logdet), np.zeros(shape[0]))


@pytest.mark.parametrize("layer", PATTERNS)
@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda s: s.forward(jnp.zeros((2, 1, 3, 4))), r"odd spatial sizes.*\(2, 1, 3, 4\)"),
        (lambda s: s.forward(jnp.zeros((2, 4))), r"\(B, C, H, W\).*\(2, 4\)"),
        (lambda s: s.inverse(jnp.zeros((2, 3, 2, 2))), r"multiple of.*\(2, 3, 2, 2\)"),
        (lambda s: s.inverse(jnp.zeros((2, 4, 2, 2, 2))), r"multiple of.*\(2, 4, 2, 2, 2\)"),
    ],
)
def test_errors(layer, call, match):
    with pytest.raises(ValueError, match=match):
        call(layer())


NETWORKS = {
    "glow": lambda sq: ij.nets.Glow(2, 2, 1, 4, key=jr.key(0), squeeze=sq),
    "multiscale_hint": lambda sq: ij.nets.MultiscaleHINT(2, 2, 1, 4, key=jr.key(0), squeeze=sq),
    "multiscale_conditional_hint": lambda sq: ij.nets.MultiscaleConditionalHINT(
        2, 2, 1, 4, cond_channels=1, key=jr.key(0), squeeze=sq),
}


@pytest.mark.parametrize("layer", PATTERNS)
@pytest.mark.parametrize("net", sorted(NETWORKS))
def test_networks_take_the_patterns(net, layer):
    assert NETWORKS[net](layer).squeeze is layer


@pytest.mark.parametrize(("net", "layer"), [("glow", L.PatchSqueeze), ("multiscale_hint", L.SubbandHaarSqueeze)])
def test_networks_round_trip(net, layer):
    flow = NETWORKS[net](layer)
    x = jr.normal(jr.key(2), (2, 2, 4, 4))
    z, logdet = flow.forward(x)
    assert z.shape == x.shape and logdet.shape == (2,)
    np.testing.assert_allclose(np.asarray(flow.inverse(z)), np.asarray(x), rtol=0, atol=1e-10)


def test_conditional_hint_squeezes_each_lane_on_its_own():
    # An offset-major squeeze of the joint state (y, x) would mix the lanes: z_y would depend on x.
    flow = NETWORKS["multiscale_conditional_hint"](L.CheckerboardSqueeze)
    x, y = jr.normal(jr.key(3), (2, 2, 4, 4)), jr.normal(jr.key(4), (2, 1, 4, 4))
    z_x, z_y, _ = flow.forward_joint(x, y)
    np.testing.assert_allclose(np.asarray(flow.forward_y(y)[0]), np.asarray(z_y), rtol=0, atol=1e-12)
    x_back, y_back, _ = flow.inverse_joint(z_x, z_y)
    np.testing.assert_allclose(np.asarray(x_back), np.asarray(x), rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.asarray(y_back), np.asarray(y), rtol=0, atol=1e-10)


def test_squeeze_lanes_is_the_squeeze_of_each_lane():
    x = jr.normal(jr.key(5), (2, 3, 4, 4))
    lanes = SqueezeLanes(L.CheckerboardSqueeze(), (1, 2))
    y, logdet = lanes.forward(x)
    squeeze = L.CheckerboardSqueeze()
    expected = jnp.concatenate([squeeze.forward(x[:, :1])[0], squeeze.forward(x[:, 1:])[0]], axis=1)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(expected))
    np.testing.assert_array_equal(np.asarray(logdet), np.zeros(2))
    np.testing.assert_array_equal(np.asarray(lanes.inverse(y)), np.asarray(x))
    with pytest.raises(ValueError, match=r"expected \(B, 3, \*spatial\).*\(2, 2, 4, 4\)"):
        lanes.forward(x[:, :2])
