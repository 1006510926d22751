"""Bad input raises ValueError at trace time, naming what was expected and what was given."""

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import pytest

import invjax as ij
from invjax import layers as L

KEY = jr.key(0)
GLOW = ij.nets.Glow(3, 2, 1, 4, key=KEY)
REALNVP = ij.nets.RealNVP(4, 1, 8, key=KEY)
CGLOW = ij.nets.Glow(1, 1, 1, 4, cond_channels=2, key=KEY, cond_spatial=True)
CREALNVP = ij.nets.RealNVP(4, 1, 8, cond_channels=3, key=KEY)
X = jnp.zeros((2, 1, 4, 4))
X4 = jnp.zeros((2, 2, 4, 4))
CHINT = ij.nets.ConditionalHINT(2, 1, 4, cond_channels=3, key=KEY)
MSCHINT = ij.nets.MultiscaleConditionalHINT(1, 2, 1, 4, cond_channels=1, key=KEY)
HYPERBOLIC = ij.nets.Hyperbolic(1, 2, 1, 4, key=KEY)
IRIM = ij.nets.IRIM(3, 1, 4, lambda v: 2.0 * v, key=KEY, stride=2)
IUNET = ij.nets.IUNet(2, 3, 1, 4, key=KEY)
SUMMARIZED = ij.nets.Summarized(CREALNVP, eqx.nn.MLP(5, 3, 8, 1, key=KEY))
_LOG_TARGET = lambda x: -0.5 * (x**2).sum(-1)
_NOT_A_KEY = r"key must be one JAX PRNG key, e.g. key=jax.random.key\(0\).*got "


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: GLOW.forward(jnp.zeros((2, 3, 8))), r"expected x of shape \(B, 3, H, W\); got shape \(2, 3, 8\)"),
        (lambda: GLOW.forward(jnp.zeros((2, 2, 8, 8))), r"expected x with 3 channels.*got 2 channels"),
        (lambda: GLOW.forward(jnp.zeros((2, 3, 6, 8))), r"divisible by 4.*\(2, 3, 6, 8\)"),
        (lambda: GLOW.inverse(jnp.zeros((2, 3, 8, 8, 8))), r"got shape \(2, 3, 8, 8, 8\)"),
        (lambda: GLOW.log_prob(jnp.zeros((2, 3, 8, 8)), jnp.zeros((2, 5))), r"unconditional.*cond"),
        (lambda: GLOW.log_prob(jnp.zeros((2, 3, 8, 8), jnp.int32)), r"floating dtype"),
        (lambda: GLOW.sample(KEY, (2, 3, 8, 6)), r"divisible by 4"),
        (lambda: REALNVP.forward(jnp.zeros((2, 5))), r"expected x with 4 channels"),
        (lambda: REALNVP.forward(jnp.zeros((2, 4, 1))), r"expected x of shape \(B, 4\)"),
        (lambda: REALNVP.forward(jnp.zeros((4,))), r"batched"),
        (lambda: L.Squeeze().forward(jnp.zeros((2, 1, 3, 4))), r"odd spatial sizes.*\(2, 1, 3, 4\)"),
        (lambda: L.Squeeze().forward(jnp.zeros((2, 4))), r"\(B, C, H, W\)"),
        (lambda: L.HaarSqueeze().inverse(jnp.zeros((2, 3, 2, 2))), r"multiple of"),
        (lambda: L.ActNorm(3).forward(jnp.zeros((2, 4, 2, 2))), r"3 channels"),
        (lambda: L.AffineCoupling(4, 8, key=KEY).forward(jnp.zeros((2, 4))), r"\(B, 4, H, W\)"),
        (lambda: L.AffineCoupling(1, 8, key=KEY), r"at least 2 channels"),
        (lambda: L.AffineCoupling(4, 8, key=KEY, scale=(1.0, 2.0)), r"scale must be an ij.layers.SigmoidScale"),
        (lambda: L.SigmoidScale(0.5, 1.0, centred=True), r"centred=True needs low < 1 < high"),
        (lambda: L.SigmoidScale(1.0, 0.5), r"0 <= low < high"),
        (lambda: L.ExpClampScale(0.0), r"clamp must be positive"),
        (lambda: L.ElementwiseAffine((2, 3)).forward(jnp.zeros((2, 3, 2))), r"expected x of shape \(B, 2, 3\)"),
        (lambda: L.ElementwiseAffine((0, 3)), r"positive sizes"),
        (lambda: L.Stack(lambda k: L.ActNorm(2), 0, key=KEY), r"positive integer"),
        (lambda: L.Chain([]), r"at least one layer"),
        (lambda: L.Chain([jnp.zeros(2)]), r"invjax layers"),
        (lambda: ij.nets.Glow(3, 2, 1, 4, key=KEY, spatial_dims=0), r"For vectors use RealNVP"),
        (lambda: ij.nets.Glow(3, 2, 1, 4, key=KEY, conv="lu"), r"conv must be an invjax layer class"),
        (lambda: ij.nets.Glow(3, 2, 1, 4, key=KEY, squeeze=L.Squeeze()), r"squeeze must be an invjax layer class"),
        (lambda: ij.nets.Glow(3, 2, 0, 4, key=KEY), r"depth must be integers >= 1, got depth=0"),
        (lambda: ij.nets.Glow(3, 2, 1, 4, key=KEY, cond_channels=-1), r"cond_channels must be an integer >= 0"),
        (lambda: ij.nets.Glow(3, 2, 1, 4, key=KEY, base=3), r"base must have log_prob"),
        (lambda: ij.nets.Glow(3, 2, 1, 4, key=KEY, backprop="autodiff"), r"Use ij.Autodiff\(\)"),
        (lambda: ij.with_backprop(GLOW, "checkpoint"), r"backprop must be ij.Invertible\(\) or ij.Autodiff\(\)"),
        (lambda: ij.with_backprop(L.ActNorm(2), ij.Autodiff()), r"takes an invjax flow"),
        (lambda: ij.DiagonalNormal((2,)).log_prob(jnp.zeros((3, 4))), r"expected samples of shape \(B, 2\)"),
        (lambda: ij.DiagonalNormal(2), r"shape must be a tuple"),
        (lambda: ij.nets.Flow(L.ActNorm(2), conditional=True).forward(jnp.zeros((2, 2))), r"cond is required"),
        (
            lambda: ij.nets.Flow(L.ActNorm(2), conditional=True).forward(jnp.zeros((2, 2)), jnp.zeros((3, 1))),
            r"batch size of the input \(2\)",
        ),
        (lambda: CGLOW.log_prob(X), r"cond is required"),
        (lambda: CGLOW.log_prob(X, jnp.zeros((2, 2, 2, 2))), r"expected cond of shape \(B, 2, 4, 4\)"),
        (lambda: CGLOW.sample(KEY, (2, 1, 4, 4), jnp.zeros((3, 2, 4, 4))), r"batch size of the input \(2\)"),
        (lambda: CREALNVP.log_prob(jnp.zeros((2, 4)), jnp.zeros((2, 2))), r"expected cond with 3 channels"),
        (lambda: CREALNVP.inverse(jnp.zeros((2, 4))), r"cond is required"),
        (
            lambda: L.AffineCoupling(2, 4, key=KEY, cond_channels=3).forward(X[:, :1].repeat(2, 1)),
            r"cond is required",
        ),
        (
            lambda: L.AffineCoupling(2, 4, key=KEY, cond_channels=3).forward(
                jnp.zeros((2, 2, 4, 4)), jnp.zeros((2, 3, 2, 2))
            ),
            r"expected cond of shape \(B, 3\) or \(B, 3, 4, 4\)",
        ),
        (lambda: L.HINTCoupling(4, 8, key=KEY, permute="upper"), r"permute must be one of"),
        (lambda: L.HINTCoupling(1, 8, key=KEY), r"at least 2 channels"),
        (lambda: L.HINTCoupling(4, 8, key=KEY).forward(jnp.zeros((2, 4, 2))), r"\(B, 4, H, W\)"),
        (lambda: L.HyperbolicLayer(4, 4, key=KEY, action="left"), r"action must be one of"),
        (lambda: L.HyperbolicLayer(4, 4, key=KEY, spatial_dims=0, action="down"), r"at least 1 to resample"),
        (lambda: L.HyperbolicLayer(6, 4, key=KEY, action="up"), r"divisible by 4"),
        (lambda: L.HyperbolicLayer(3, 4, key=KEY), r"must be even"),
        (lambda: L.HyperbolicLayer(4, 4, key=KEY).forward(jnp.zeros((2, 3, 4, 4))), r"expected x with 4 channels"),
        (lambda: L.HyperbolicLayer(4, 4, key=KEY, action="down").forward(jnp.zeros((2, 4, 3, 4))), r"odd"),
        (lambda: L.HyperbolicLayer(4, 4, key=KEY).inverse(jnp.zeros((2, 4, 4))), r"expected y of shape"),
        (lambda: L.AffineCoupling(4, 8, key=KEY, split=4), r"1 <= split < in_channels"),
        (lambda: L.OnChannels(L.ActNorm(2), 2, 2), r"start < stop"),
        (lambda: L.OnChannels(L.ActNorm(2), 2, 4).forward(jnp.zeros((2, 3))), r"at least 4 channels"),
        (lambda: L.Permute(3, permutation=[0, 0, 1]), r"must order 0..2"),
        (lambda: L.Permute(3), r"exactly one of"),
        (lambda: L.Permute(3, permutation=[0, 1, 2], swap_halves=True), r"swap_halves=True draws its order from key="),
        (lambda: ij.nets.HINT(1, 2, 4, key=KEY), r"in_channels >= 2"),
        (lambda: ij.nets.HINT(4, 2, 4, key=KEY, spatial_dims=4), r"spatial_dims must be one of"),
        (lambda: ij.nets.MultiscaleHINT(1, 2, 1, 4, key=KEY, squeeze="haar"), r"squeeze must be an invjax layer class"),
        (lambda: ij.nets.MultiscaleHINT(1, 2, 1, 4, key=KEY).forward(jnp.zeros((2, 1, 6, 8))), r"divisible by 4"),
        (lambda: ij.nets.Hyperbolic(1, 2, 1, 4, key=KEY, spatial_dims=0), r"spatial_dims must be one of \(1, 2, 3\)"),
        (lambda: HYPERBOLIC.forward(jnp.zeros((2, 2, 8, 8))), r"expected x with 1 channels"),
        (lambda: HYPERBOLIC.log_prob(jnp.zeros((2, 1, 8, 8)), jnp.zeros((2, 1))), r"unconditional"),
        (lambda: ij.nets.ConditionalHINT(1, 1, 4, cond_channels=3, key=KEY), r"in_channels and cond_channels >= 2"),
        (lambda: CHINT.log_prob(jnp.zeros((2, 2, 4, 4))), r"cond is required"),
        (lambda: CHINT.log_prob(X4, jnp.zeros((2, 2, 4, 4))), r"expected cond of shape \(B, 3, 4, 4\)"),
        (lambda: CHINT.log_prob(X4, jnp.zeros((2, 3, 2, 2))), r"spatial sizes of x\); got shape \(2, 3, 2, 2\)"),
        (lambda: CHINT.sample(KEY, (2, 2, 4, 4), jnp.zeros((3, 3, 4, 4))), r"batch size of the input \(2\)"),
        (lambda: CHINT.forward_y(jnp.zeros((2, 3))), r"expected y of shape"),
        (lambda: MSCHINT.log_prob(jnp.zeros((2, 1, 6, 6)), jnp.zeros((2, 1, 6, 6))), r"divisible by 4"),
        (lambda: MSCHINT.forward_joint(jnp.zeros((2, 1, 4, 4)), None), r"cond is required"),
        (lambda: CHINT.inverse_y(jnp.zeros((2, 2, 4, 4))), r"expected z_y with 3 channels.*got 2 channels"),
        (lambda: L.HINTCoupling(4, 8, key=KEY, scale="sigmoid"),
         r"HINTCoupling: scale must be an ij.layers.SigmoidScale or ExpClampScale.*got 'sigmoid'"),
        (lambda: ij.nets.HINT(4, 1, 4, key=KEY, scale=L.SigmoidScale), r"^HINT: scale must be an ij.layers.Sigmoid"),
        (lambda: ij.nets.MultiscaleHINT(1, 2, 1, 4, key=KEY, scale=(0.5, 1.0)),
         r"MultiscaleHINT: scale must be an ij.layers.SigmoidScale.*got \(0.5, 1.0\)"),
        (lambda: ij.nets.ConditionalHINT(2, 1, 4, cond_channels=3, key=KEY, scale="expclamp"),
         r"ConditionalHINT: scale must be.*got 'expclamp'"),
        (lambda: ij.nets.MultiscaleConditionalHINT(1, 2, 1, 4, cond_channels=1, key=KEY, scale=None),
         r"MultiscaleConditionalHINT: scale must be.*got None"),
        (lambda: ij.nets.ConditionalHINT(2, 1, 4, cond_channels=3, key=KEY, permute=True),
         r"ConditionalHINT: permute must be one of \('none', 'lower', 'both', 'full'\), got True"),
        (lambda: L.ConditionalHINTStep(2, 4, cond_channels=2, key=KEY, scale=2.0), r"HINTStep: scale must be.*got 2.0"),
        (lambda: L.ConditionalHINTStep(2, 4, cond_channels=1, key=KEY), r"cond_channels >= 2, got 2 and 1"),
        (lambda: L.ConditionalHINTStep(2, 4, cond_channels=2, key=KEY, spatial_dims=4), r"spatial_dims must be one of"),
        (lambda: IRIM.forward(jnp.zeros((2, 3, 4, 4))), r"cond is required"),
        (lambda: IRIM.forward(jnp.zeros((2, 3, 4, 4)), jnp.zeros((2, 1, 4, 5))),
         r"maps the estimate \(2, 1, 4, 4\) to \(2, 1, 4, 4\), but d \(cond\) has shape \(2, 1, 4, 5\)"),
        (lambda: IRIM.forward(jnp.zeros((2, 3, 5, 6)), jnp.zeros((2, 1, 5, 6))), r"divisible by 2"),
        (lambda: IRIM.forward(jnp.zeros((2, 2, 4, 4)), jnp.zeros((2, 1, 4, 4))), r"expected x with 3 channels"),
        (lambda: IRIM.reconstruct(jnp.zeros((2, 2, 4, 4)), jnp.zeros((2, 1, 4, 4))), r"estimate eta of shape \(B, 1"),
        (lambda: ij.nets.IRIM(1, 1, 4, lambda v: v, key=KEY), r"in_channels >= 2"),
        (lambda: ij.nets.Glow(3, 1, 1, 4, key=KEY, spatial_dims=0), r"For vectors use RealNVP, or split_scales=False"),
        (lambda: ij.nets.Glow(1, 1, 1, 4, key=KEY, split_scales=False), r"split_scales=False needs in_channels >= 2"),
        (lambda: ij.nets.IRIM(2, 1, 4, lambda v: v, key=KEY, kernel=3, stride=2), r"kernel - stride even"),
        (lambda: L.GradientStep(2, "not a function"), r"operator must be a function"),
        (lambda: L.ResidualBlock(2, 2, 4, key=KEY, kernel=4), r"kernel odd \(stride 1\)"),
        (lambda: ij.nets.IUNet(1, 2, 1, 4, key=KEY), r"IUNet needs in_channels >= 2.*got 1"),
        (lambda: ij.nets.HINT(4, 1, 4, key=KEY, make_conditioner="resnet"), r"HINT: make_conditioner must be None or"),
        (lambda: ij.nets.Glow(2, 1, 1, 4, key=KEY, spatial_dims=0, split_scales=False, make_conditioner="resnet"),
         r"Glow: make_conditioner must be None or"),
        (lambda: L.ResidualMLP(4, 0, 8, key=KEY), r"ResidualMLP: out_size must be a positive integer, got 0"),
        (lambda: L.ResidualMLP(4, 2, 8, blocks=-1, key=KEY), r"ResidualMLP: blocks must be an integer >= 0, got -1"),
        (lambda: ij.nets.ConditionalHINT(2, 1, 4, cond_channels=2, key=KEY, make_conditioner=L.MLP(2, 2, 4, key=KEY)),
         r"a module itself is not a factory"),
        (lambda: L.ResidualBlock(2, 2, 4, key=KEY, final_activation="relu"), r"final_activation must be a function"),
        (lambda: ij.nets.IUNet(2, 2, 1, 4, key=KEY, spatial_dims=0), r"spatial_dims"),
        (lambda: IUNET.forward(jnp.zeros((2, 2, 6, 8))), r"divisible by 4.*\(2, 2, 6, 8\)"),
        (lambda: IUNET.forward(jnp.zeros((2, 3, 8, 8))), r"expected x with 2 channels"),
        (lambda: IUNET.forward(X4, jnp.zeros((2, 3))), r"unconditional.*cond"),
        # Zero-size axes: only the batch may be empty (an empty result, tests/test_edges.py).
        (lambda: GLOW.log_prob(jnp.zeros((2, 3, 0, 0))), r"Glow: every axis of x but the batch must have size >= 1"),
        (lambda: HYPERBOLIC.inverse(jnp.zeros((2, 1, 0, 8))), r"every axis of x but the batch.*\(2, 1, 0, 8\)"),
        (lambda: ij.nets.HINT(4, 1, 4, key=KEY).log_prob(jnp.zeros((2, 4, 4, 0))), r"HINT: every axis of x"),
        (lambda: L.Squeeze().forward(jnp.zeros((2, 1, 0, 4))), r"Squeeze: every axis of x"),
        (lambda: CGLOW.log_prob(X, jnp.zeros((2, 0, 4, 4))), r"every axis of cond but the batch"),
        (lambda: GLOW.initialize(jnp.zeros((0, 3, 8, 8))), r"Glow.initialize needs at least one sample"),
        # Keys that are not keys, sample shapes that are not shapes.
        (lambda: REALNVP.sample(None, (3, 4)), r"RealNVP.sample: " + _NOT_A_KEY + "None"),
        (lambda: REALNVP.sample(0, (3, 4)), _NOT_A_KEY + "0"),
        (lambda: REALNVP.sample(jnp.zeros(2), (3, 4)), _NOT_A_KEY + r"an array of shape \(2,\) and dtype float"),
        (lambda: REALNVP.sample(jr.split(KEY), (3, 4)), _NOT_A_KEY + r"an array of shape \(2,\) and dtype key"),
        (lambda: REALNVP.sample_and_log_prob(1, (3, 4)), r"RealNVP.sample_and_log_prob: " + _NOT_A_KEY),
        (lambda: SUMMARIZED.sample(None, (3, 2), jnp.zeros((3, 5))), r"Summarized.sample: " + _NOT_A_KEY),
        (lambda: REALNVP.sample(KEY, (-1, 4)), r"shape must be a non-empty tuple of integers >= 0.*\(-1, 4\)"),
        (lambda: GLOW.sample(KEY, 3), r"shape must be a tuple, batch first.*got 3"),
        (lambda: ij.nets.Glow(3, 2, 1, 4, key=None), r"Glow: " + _NOT_A_KEY + "None"),
        (lambda: L.AffineCoupling(4, 8, key=3), r"AffineCoupling: " + _NOT_A_KEY + "3"),
        (lambda: ij.fit(REALNVP, jnp.zeros((8, 4)), key=3, steps=1), r"fit: " + _NOT_A_KEY + "3"),
        (lambda: ij.fit_vi(REALNVP, _LOG_TARGET, (4,), key=None, steps=1), r"fit_vi: " + _NOT_A_KEY + "None"),
        (lambda: ij.diagnostics.posterior_draws(CREALNVP, jnp.zeros((3, 3)), 4, (4,), key=3),
         r"posterior_draws: " + _NOT_A_KEY),
        # Options of fit, Summarized's inputs, files, statistics.
        (lambda: ij.fit(REALNVP, jnp.zeros((8, 4)), key=KEY, steps=1, validation=0.5, patience=-1),
         r"fit: patience must be an integer >= 0.*got -1"),
        (lambda: SUMMARIZED.log_prob(None, jnp.zeros((3, 5))), r"Summarized: x must be an array, got NoneType"),
        (lambda: SUMMARIZED.log_prob([[0.0, 0.0]] * 3, jnp.zeros((3, 5))), r"Summarized: x must be an array, got list"),
        (lambda: SUMMARIZED.inverse(None, jnp.zeros((3, 5))), r"Summarized: z must be an array"),
        (lambda: SUMMARIZED.initialize([[0.0, 0.0]] * 3, jnp.zeros((3, 5))), r"Summarized: x must be an array"),
        (lambda: SUMMARIZED.log_prob(jnp.zeros((3, 2)), [[0.0] * 5] * 3), r"y must be an array with a batch axis"),
        (lambda: SUMMARIZED.log_prob(jnp.zeros((3, 2)), jnp.zeros((3, 6))),
         r"summary network fails on one observation of shape \(6,\) \(y of shape \(3, 6\).*dot_general"),
        (lambda: ij.save(".", REALNVP), r"save: \. is a folder; give a file name"),
        (lambda: ij.diagnostics.coverage(jnp.zeros((0, 10, 2)), jnp.zeros((0, 2))), r"at least one observation"),
        (lambda: ij.diagnostics.c2st(jnp.zeros((8, 2)), jnp.ones((8, 2)), patience=-1),
         r"c2st: folds >= 2, max_epochs >= 1, batch_size >= 1 and patience >= 0 needed; got .*patience=-1"),
        (lambda: ij.diagnostics.c2st(jnp.zeros((8, 2)), jnp.ones((8, 2)), max_epochs=0), r"got .*max_epochs=0"),
    ],
)
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
