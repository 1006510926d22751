"""HaarSqueeze is the one-level orthonormal Haar transform of PyWavelets, coefficient by coefficient.

Our channel order: input channel ``c`` becomes the ``2**n`` channels ``c * 2**n + k``, where
the binary digits of ``k`` (most significant first) name the filter along each spatial axis
in order, ``0`` the average (``'a'``) and ``1`` the detail (``'d'``). That is PyWavelets'
``dwtn`` key order, ``itertools.product("ad", repeat=n)``:

- 1D: ``[cA, cD]`` of ``pywt.dwt``;
- 2D: ``[aa, ad, da, dd]`` of ``pywt.dwtn``, i.e. ``[cA, cV, cH, cD]`` of ``pywt.dwt2``
  (``cA, (cH, cV, cD) = pywt.dwt2(...)``: ``cH`` is the detail along the first spatial axis);
- 3D: ``[aaa, aad, ada, add, daa, dad, dda, ddd]`` of ``pywt.dwtn``.

PyWavelets' Haar detail is ``(x[2i] - x[2i+1]) / sqrt(2)``, ours too: no sign changes.
"""

import itertools

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
import pywt

from invjax import layers as L

SHAPES = {1: (2, 3, 8), 2: (2, 3, 4, 6), 3: (2, 2, 4, 2, 6)}


def _pywt_bands(x, n):
    """PyWavelets' sub-bands of every channel, in our channel order (see the module docstring)."""
    axes = tuple(range(2, 2 + n))
    if n == 1:
        return list(pywt.dwt(x, "haar", axis=-1))
    if n == 2:
        c_a, (c_h, c_v, c_d) = pywt.dwt2(x, "haar", axes=axes)
        return [c_a, c_v, c_h, c_d]
    coeffs = pywt.dwtn(x, "haar", axes=axes)
    return [coeffs["".join(key)] for key in itertools.product("ad", repeat=n)]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_haar_squeeze_matches_pywavelets(n):
    x = np.asarray(jr.normal(jr.key(n), SHAPES[n]))
    squeeze = L.HaarSqueeze()
    y, logdet = squeeze.forward(jnp.asarray(x))
    bands = _pywt_bands(x, n)
    b, c = x.shape[:2]
    expected = np.stack(bands, axis=2).reshape(b, c * 2**n, *bands[0].shape[2:])  # channel c*2**n + k
    np.testing.assert_allclose(np.asarray(y), expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(logdet), np.zeros(b))
    # The inverse is PyWavelets' inverse transform of the same coefficients.
    np.testing.assert_allclose(np.asarray(squeeze.inverse(jnp.asarray(expected))), x, rtol=0, atol=1e-12)
    axes = tuple(range(2, 2 + n))
    coeffs = {"".join(key): band for key, band in zip(itertools.product("ad", repeat=n), bands, strict=True)}
    np.testing.assert_allclose(pywt.idwtn(coeffs, "haar", axes=axes), x, rtol=0, atol=1e-12)
