"""InvertibleNetworks.jl's residual blocks against NumPy/SciPy transcriptions of its
forwards (``src/conditional_layers/conditional_layer_residual_block.jl``,
``src/layers/layer_residual_block.jl``), and gradients against central finite differences
(Julia's own gradient test)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from scipy.signal import correlate

import invjax as ij


def _conv(h, conv):
    """'Same' cross-correlation of ``h`` (I, *S) with ``conv.weight`` (O, I, *K), plus bias."""
    w = np.asarray(conv.weight)
    out = np.stack([sum(correlate(h[i], w[o, i], mode="same") for i in range(h.shape[0])) for o in range(w.shape[0])])
    if conv.bias is not None:
        out = out + np.asarray(conv.bias).reshape((-1,) + (1,) * (h.ndim - 1))
    return out


def _reference(block, x, d):
    """Julia's forward: Y0 = W0 vec(D) + b0; X1 = [X0; ReLU(Y0)]; X2 = ReLU(conv1(X1));
    X3 = ReLU(X2 + conv2(X2)); X4 = ReLU(conv3ᵀ(X3))."""
    relu = lambda v: np.maximum(v, 0.0)
    x, d = np.asarray(x), np.asarray(d)
    data = relu(np.asarray(block.dense.weight) @ d.reshape(-1) + np.asarray(block.dense.bias)).reshape(x.shape)
    first, middle, last = block.convs
    h = relu(_conv(np.concatenate([x, data]), first))
    h = relu(h + _conv(h, middle))
    return relu(_conv(h, last))


@pytest.mark.parametrize(("spatial", "cond_shape"), [((6, 4), (1, 5, 3)), ((4, 2, 2), (7,))], ids=["image", "volume"])
def test_forward_matches_the_julia_transcription(spatial, cond_shape):
    block = ij.layers.ConditionalResidualBlock(3, spatial, cond_shape, 5, key=jr.key(0))
    x = jr.normal(jr.key(1), (2, 3, *spatial))
    d = jr.normal(jr.key(2), (2, *cond_shape))
    out = eqx.filter_jit(lambda b, x, d: jax.vmap(b)(x, d))(block, x, d)
    assert out.shape == x.shape
    for i in range(2):
        np.testing.assert_allclose(out[i], _reference(block, x[i], d[i]), rtol=1e-10, atol=1e-12)
    assert float(jnp.mean(out > 0)) > 0.1  # the ReLUs do not switch everything off


def test_gradients_match_finite_differences():
    block = ij.layers.ConditionalResidualBlock(2, (4, 4), (3, 2, 2), 4, key=jr.key(3), middle_kernel=1)
    x, d = jr.normal(jr.key(4), (2, 4, 4)), jr.normal(jr.key(5), (3, 2, 2))
    weights = jr.normal(jr.key(6), x.shape)
    loss = eqx.filter_jit(lambda b, x, d: jnp.sum(jnp.tanh(b(x, d)) * weights))
    g_block, g_x, g_d = eqx.filter_jit(eqx.filter_grad(lambda args: loss(*args)))((block, x, d))
    dx, dd = jr.normal(jr.key(7), x.shape), jr.normal(jr.key(8), d.shape)
    dw = jr.normal(jr.key(9), block.convs[0].weight.shape)
    shifted = lambda t: eqx.tree_at(lambda b: b.convs[0].weight, block, block.convs[0].weight + t * dw)
    eps = 1e-6
    fd = (loss(shifted(eps), x + eps * dx, d + eps * dd) - loss(shifted(-eps), x - eps * dx, d - eps * dd)) / (2 * eps)
    exact = jnp.vdot(g_x, dx) + jnp.vdot(g_d, dd) + jnp.vdot(g_block.convs[0].weight, dw)
    np.testing.assert_allclose(fd, exact, rtol=1e-6)
    assert float(jnp.abs(g_block.dense.weight).max()) > 0  # the data reaches the output


def test_bad_shapes_raise():
    block = ij.layers.ConditionalResidualBlock(2, (4, 4), (3,), 4, key=jr.key(0))
    with pytest.raises(ValueError, match=r"expected one sample x of shape \(2, 4, 4\) and d of shape \(3,\)"):
        block(jnp.zeros((1, 2, 4, 4)), jnp.zeros(3))
    with pytest.raises(ValueError, match="odd kernel"):
        ij.layers.ConditionalResidualBlock(2, (4, 4), (3,), 4, key=jr.key(0), kernel=2)
    with pytest.raises(ValueError, match="spatial_dims"):
        ij.layers.ConditionalResidualBlock(2, (), (3,), 4, key=jr.key(0))


@pytest.mark.parametrize("fan", [True, False], ids=["fan_relu", "galu"])
def test_residual_block_julia_options_match_the_julia_transcription(fan):
    """``skip=True`` with ``final_activation=relu`` (Julia's ``fan=true``) or ``gated=True``
    (``fan=false``): X2 = ReLU(conv1(X)); X3 = ReLU(X2 + conv2(X2)); Y3 = conv3(X3);
    out = ReLU(Y3) or GaLU(Y3) = Y3[:half] * sigmoid(Y3[half:])."""
    options = {"final_activation": jax.nn.relu} if fan else {"gated": True}
    block = ij.layers.ResidualBlock(2, 3, 4, key=jr.key(0), middle_kernel=3, skip=True, **options)
    last = block.convs[-1]  # zero-initialised (a new coupling is the identity): give it weights
    block = eqx.tree_at(lambda b: (b.convs[-1].weight, b.convs[-1].bias), block,
                        (jr.normal(jr.key(1), last.weight.shape), jr.normal(jr.key(2), last.bias.shape)))
    assert last.weight.shape[0] == (3 if fan else 6)
    x = jr.normal(jr.key(3), (2, 5, 6))
    out = eqx.filter_jit(block)(x)
    relu = lambda v: np.maximum(v, 0.0)
    first, middle, last = block.convs
    h = relu(_conv(np.asarray(x), first))
    y3 = _conv(relu(h + _conv(h, middle)), last)
    expected = relu(y3) if fan else y3[:3] / (1 + np.exp(-y3[3:]))
    assert out.shape == (3, 5, 6)
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)
