"""The contract cases: every layer and network, with a tiny input shape.

A new layer joins the contract tests by one entry here: ``name: (make_flow(key), x_shape)``,
or ``(make_flow(key), x_shape, cond_shape)`` for a conditional one. Layers are wrapped in
:class:`invjax.nets.Flow` so they run through the engine. Every network is a case in every
dimensionality it supports, with two levels or more where it has levels
(``test_cases_hold_every_network_in_every_dimensionality``); each case costs compile time in
every contract test, so keep them tiny.
"""

from __future__ import annotations

import jax.numpy as jnp
import jax.random as jr

import invjax as ij
from invjax import layers as L


def _flow(layer, conditional=False):
    return ij.nets.Flow(layer, conditional=conditional)


def _double(cond):
    return 2.0 * cond


_MATRIX = jr.normal(jr.key(7), (5, 16))


def _matrix_operator(x):
    """A linear operator from ``(B, 1, 4, 4)`` images to ``(B, 5)`` data (i-RIM cases)."""
    return x.reshape(x.shape[0], -1) @ _MATRIX.astype(x.dtype).T


def _shift_operator(x):
    """A linear operator that keeps the shape: ``x + 0.5 * x`` shifted along the last axis."""
    return x + 0.5 * jnp.roll(x, 1, axis=-1)


def _mlp_of_width_5(in_channels, out_channels, *, key):
    """A conditioner factory (``make_conditioner=``): one hidden layer of width 5."""
    return L.MLP(in_channels, out_channels, 5, depth=1, key=key)


def _residual_mlp_of_width_5(in_channels, out_channels, *, key):
    """sbi's conditioner (``make_conditioner=``): a residual MLP of width 5, one block."""
    return L.ResidualMLP(in_channels, out_channels, 5, blocks=1, key=key)


_SPLINE = L.RationalQuadraticSpline(bins=3, bound=1.0)


def _stack(key):
    step = lambda k: L.Chain([L.ActNorm(4), L.Permute(4, key=k), L.AffineCoupling(4, 8, spatial_dims=0, key=k)])
    return _flow(L.Stack(step, 3, key=key))


CASES = {
    "actnorm_vector": (lambda k: _flow(L.ActNorm(3)), (3, 3)),
    "actnorm_volume": (lambda k: _flow(L.ActNorm(2)), (2, 2, 2, 2, 2)),
    "conv1x1_householder_image": (lambda k: _flow(L.Conv1x1(3, key=k)), (2, 3, 2, 2)),
    "conv1x1_lu_volume": (lambda k: _flow(L.Conv1x1LU(3, key=k)), (2, 3, 2, 2, 2)),
    "conv1x1_lu_vector": (lambda k: _flow(L.Conv1x1LU(4, key=k)), (3, 4)),
    "permute_vector": (lambda k: _flow(L.Permute(5, key=k)), (3, 5)),
    "affine_coupling_vector": (lambda k: _flow(L.AffineCoupling(4, 8, spatial_dims=0, key=k)), (3, 4)),
    "affine_coupling_image": (lambda k: _flow(L.AffineCoupling(3, 4, key=k)), (2, 3, 4, 4)),
    "affine_coupling_expclamp_image": (lambda k: _flow(L.AffineCoupling(3, 4, key=k, scale=L.ExpClampScale())),
                                       (2, 3, 4, 4)),
    "realnvp_uncentred_sigmoid": (
        lambda k: ij.nets.RealNVP(4, 2, 8, key=k, scale=L.SigmoidScale(0.5, 1.0, centred=False)), (3, 4)),
    "bounded_exp_then_softplus_vector": (  # reals -> box by one map, box -> reals by another: any real goes in
        lambda k: _flow(L.Chain([L.Invert(L.Bounded([0.0, -jnp.inf, 0.5, -1.0], [1.0, 2.0, jnp.inf, jnp.inf],
                                                    one_sided="exp")),
                                 L.Bounded([0.0, -jnp.inf, 0.5, -1.0], [1.0, 2.0, jnp.inf, jnp.inf])])),
        (3, 4)),
    "elementwise_affine_image": (lambda k: _flow(L.ElementwiseAffine((2, 3, 3))), (2, 2, 3, 3)),
    "affine_coupling_volume": (lambda k: _flow(L.AffineCoupling(2, 4, spatial_dims=3, key=k)), (2, 2, 2, 2, 2)),
    "additive_coupling_image": (lambda k: _flow(L.AdditiveCoupling(4, 4, key=k)), (2, 4, 2, 2)),
    # Spline couplings on a small interval, so that the inputs fall both inside it and on the tails.
    "spline_coupling_vector_cond": (
        lambda k: _flow(L.SplineCoupling(4, 8, spatial_dims=0, key=k, cond_channels=2, spline=_SPLINE),
                        conditional=True),
        (3, 4),
        (3, 2),
    ),
    "spline_coupling_image": (lambda k: _flow(L.SplineCoupling(3, 4, key=k, spline=_SPLINE)), (2, 3, 2, 2)),
    "spline_coupling_volume": (lambda k: _flow(L.SplineCoupling(2, 4, spatial_dims=3, key=k, spline=_SPLINE)),
                               (2, 2, 2, 2, 2)),
    "conditional_hint_spline_vector": (
        lambda k: ij.nets.ConditionalHINT(2, 1, 4, cond_channels=2, key=k, spatial_dims=0, transform=_SPLINE),
        (3, 2),
        (3, 2),
    ),
    "squeeze_image": (lambda k: _flow(L.Squeeze()), (2, 1, 4, 4)),
    "squeeze_volume": (lambda k: _flow(L.Squeeze()), (2, 1, 2, 2, 4)),
    "haar_image": (lambda k: _flow(L.HaarSqueeze()), (2, 2, 2, 4)),
    "haar_volume": (lambda k: _flow(L.HaarSqueeze()), (2, 1, 2, 2, 2)),
    "unsqueeze_image": (lambda k: _flow(L.Invert(L.Squeeze())), (2, 4, 2, 2)),
    "stack_vector": (_stack, (3, 4)),
    "inverted_actnorm_image": (lambda k: _flow(L.Invert(L.ActNorm(2))), (2, 2, 2, 2)),
    "conjugate_vector": (
        lambda k: _flow(L.Conjugate(L.ActNorm(4), L.AffineCoupling(4, 8, spatial_dims=0, key=k))),
        (3, 4),
    ),
    "map_cond_coupling_image": (
        lambda k: _flow(L.MapCond(L.AffineCoupling(2, 4, key=k, cond_channels=3), _double), conditional=True),
        (2, 2, 2, 2),
        (2, 3),
    ),
    "factor_out_image": (lambda k: _flow(L.FactorOut(L.AffineCoupling(2, 4, key=k), 2)), (2, 4, 2, 2)),
    "realnvp": (lambda k: ij.nets.RealNVP(4, 3, 8, key=k), (3, 4)),
    "glow_image": (lambda k: ij.nets.Glow(1, 2, 2, 4, key=k), (2, 1, 4, 4)),
    "glow_volume": (lambda k: ij.nets.Glow(1, 2, 2, 4, key=k, spatial_dims=3), (2, 1, 4, 4, 4)),
    "glow_signal": (lambda k: ij.nets.Glow(2, 2, 2, 4, key=k, spatial_dims=1), (2, 2, 8)),
    "glow_dense_vector_cond": (
        lambda k: ij.nets.Glow(4, 2, 1, 8, key=k, spatial_dims=0, split_scales=False, cond_channels=2), (3, 4), (3, 2)),
    "glow_unsqueezed_image": (lambda k: ij.nets.Glow(2, 2, 1, 4, key=k, split_scales=False), (2, 2, 3, 3)),
    "glow_nsf_vector_cond": (  # sbi's neural spline flow: splines, residual conditioners (make_conditioner)
        lambda k: ij.nets.Glow(4, 1, 2, 8, key=k, spatial_dims=0, split_scales=False, cond_channels=2,
                               transform=_SPLINE, make_conditioner=_residual_mlp_of_width_5), (3, 4), (3, 2)),
    "glow_checkerboard_image": (lambda k: ij.nets.Glow(1, 2, 1, 4, key=k, squeeze=L.CheckerboardSqueeze),
                                (2, 1, 4, 4)),
    "glow_householder_haar": (
        lambda k: ij.nets.Glow(2, 2, 2, 4, key=k, conv=L.Conv1x1, squeeze=L.HaarSqueeze),
        (2, 2, 4, 4),
    ),
    "conditional_affine_coupling_vector_cond": (
        lambda k: _flow(L.AffineCoupling(2, 4, key=k, cond_channels=3), conditional=True),
        (2, 2, 4, 4),
        (2, 3),
    ),
    "conditional_additive_coupling_map_cond": (
        lambda k: _flow(L.AdditiveCoupling(2, 4, key=k, cond_channels=2), conditional=True),
        (2, 2, 2, 2),
        (2, 2, 2, 2),
    ),
    "conditional_realnvp": (lambda k: ij.nets.RealNVP(4, 3, 8, cond_channels=2, key=k), (3, 4), (3, 2)),
    "conditional_glow_vector_cond": (lambda k: ij.nets.Glow(1, 2, 2, 4, cond_channels=3, key=k), (2, 1, 4, 4), (2, 3)),
    "conditional_glow_volume_map_cond": (
        lambda k: ij.nets.Glow(1, 1, 2, 4, key=k, spatial_dims=3, cond_channels=1, cond_spatial=True),
        (2, 1, 2, 2, 2),
        (2, 1, 2, 2, 2),
    ),
    "on_channels_middle_vector": (
        lambda k: _flow(L.OnChannels(L.AffineCoupling(2, 4, spatial_dims=0, key=k), 1, 3)),
        (3, 4),
    ),
    "hint_coupling_vector_lower": (
        lambda k: _flow(L.HINTCoupling(6, 8, spatial_dims=0, key=k, permute="lower")),
        (3, 6),
    ),
    "hint_coupling_image_both": (lambda k: _flow(L.HINTCoupling(8, 4, key=k, permute="both")), (2, 8, 2, 2)),
    "hint_coupling_volume_full_cond": (
        lambda k: _flow(L.HINTCoupling(3, 4, spatial_dims=3, key=k, permute="full", cond_channels=2), conditional=True),
        (2, 3, 2, 2, 2),
        (2, 2),
    ),
    "hyperbolic_layer_vector": (lambda k: _flow(L.HyperbolicLayer(4, 6, key=k, spatial_dims=0)), (3, 4)),
    "hyperbolic_layer_down_image": (lambda k: _flow(L.HyperbolicLayer(2, 4, key=k, action="down")), (2, 2, 4, 4)),
    "hyperbolic_layer_up_volume": (
        lambda k: _flow(L.HyperbolicLayer(16, 4, key=k, spatial_dims=3, action="up")),
        (2, 16, 1, 1, 1),
    ),
    "hint_vector": (lambda k: ij.nets.HINT(6, 2, 8, key=k, spatial_dims=0), (3, 6)),
    "hint_expclamp_vector": (lambda k: ij.nets.HINT(4, 1, 4, key=k, spatial_dims=0, scale=L.ExpClampScale(2.0)),
                             (3, 4)),
    "hint_signal": (lambda k: ij.nets.HINT(2, 1, 4, key=k, spatial_dims=1), (2, 2, 4)),
    "hint_image": (lambda k: ij.nets.HINT(2, 2, 4, key=k), (2, 2, 2, 2)),
    "hint_volume": (lambda k: ij.nets.HINT(2, 1, 4, key=k, spatial_dims=3), (2, 2, 2, 2, 2)),
    "conditional_hint_net_vector_cond": (
        lambda k: ij.nets.HINT(4, 2, 4, key=k, spatial_dims=0, cond_channels=2),
        (3, 4),
        (3, 2),
    ),
    "multiscale_hint_image_map_cond": (
        lambda k: ij.nets.MultiscaleHINT(1, 2, 1, 4, key=k, cond_channels=1, cond_spatial=True),
        (2, 1, 4, 4),
        (2, 1, 4, 4),
    ),
    "multiscale_hint_image": (lambda k: ij.nets.MultiscaleHINT(1, 2, 2, 4, key=k), (2, 1, 4, 4)),
    "multiscale_hint_signal": (lambda k: ij.nets.MultiscaleHINT(1, 2, 1, 4, key=k, spatial_dims=1), (2, 1, 4)),
    "multiscale_hint_volume": (lambda k: ij.nets.MultiscaleHINT(1, 2, 2, 4, key=k, spatial_dims=3), (2, 1, 4, 4, 4)),
    "hyperbolic_signal": (lambda k: ij.nets.Hyperbolic(1, 2, 1, 4, key=k, spatial_dims=1), (2, 1, 4)),
    "hyperbolic_image": (lambda k: ij.nets.Hyperbolic(1, 2, 2, 4, key=k), (2, 1, 4, 4)),
    "hyperbolic_volume": (lambda k: ij.nets.Hyperbolic(1, 2, 2, 4, key=k, spatial_dims=3), (2, 1, 4, 4, 4)),
    "conditional_hint_vector": (
        lambda k: ij.nets.ConditionalHINT(2, 2, 8, cond_channels=3, key=k, spatial_dims=0),
        (3, 2),
        (3, 3),
    ),
    "conditional_hint_signal": (
        lambda k: ij.nets.ConditionalHINT(2, 1, 4, cond_channels=2, key=k, spatial_dims=1),
        (2, 2, 4),
        (2, 2, 4),
    ),
    "conditional_hint_volume": (
        lambda k: ij.nets.ConditionalHINT(2, 1, 4, cond_channels=2, key=k, spatial_dims=3),
        (2, 2, 2, 2, 2),
        (2, 2, 2, 2, 2),
    ),
    "conditional_hint_image": (
        lambda k: ij.nets.ConditionalHINT(2, 1, 4, cond_channels=2, key=k),
        (2, 2, 2, 2),
        (2, 2, 2, 2),
    ),
    "conditional_hint_step_image": (
        lambda k: _flow(L.ConditionalHINTStep(2, 4, cond_channels=2, key=k, permute="none")),
        (2, 4, 2, 2),
    ),
    "multiscale_conditional_hint_image": (
        lambda k: ij.nets.MultiscaleConditionalHINT(1, 2, 2, 4, cond_channels=1, key=k),
        (2, 1, 4, 4),
        (2, 1, 4, 4),
    ),
    "multiscale_conditional_hint_signal": (
        lambda k: ij.nets.MultiscaleConditionalHINT(1, 2, 1, 4, cond_channels=1, key=k, spatial_dims=1),
        (2, 1, 4),
        (2, 1, 4),
    ),
    "multiscale_conditional_hint_volume": (
        lambda k: ij.nets.MultiscaleConditionalHINT(1, 2, 1, 2, cond_channels=1, key=k, spatial_dims=3),
        (2, 1, 4, 4, 4),
        (2, 1, 4, 4, 4),
    ),
    "hint_custom_conditioner_vector": (  # InvertibleNetworks.jl-style blocks through make_conditioner
        lambda k: ij.nets.HINT(4, 1, 4, key=k, spatial_dims=0, make_conditioner=_mlp_of_width_5),
        (2, 4),
    ),
    "multiscale_conditional_hint_unsplit_signal": (
        lambda k: ij.nets.MultiscaleConditionalHINT(1, 2, 1, 2, cond_channels=1, key=k, spatial_dims=1,
                                                    split_scales=False),
        (2, 1, 4),
        (2, 1, 4),
    ),
    "gradient_step_image": (lambda k: _flow(L.GradientStep(3, _matrix_operator), conditional=True), (2, 3, 4, 4),
                            (2, 5)),
    "irim_image": (lambda k: ij.nets.IRIM(4, 2, 4, _matrix_operator, key=k, stride=2), (2, 4, 4, 4), (2, 5)),
    "irim_signal": (lambda k: ij.nets.IRIM(2, 2, 4, _shift_operator, key=k, spatial_dims=1, stride=2, kernel=2),
                    (2, 2, 4), (2, 1, 4)),
    "irim_volume": (lambda k: ij.nets.IRIM(3, 2, 4, _shift_operator, key=k, spatial_dims=3, stride=2), (2, 3, 2, 2, 2),
                    (2, 1, 2, 2, 2)),
    "iunet_image": (lambda k: ij.nets.IUNet(2, 2, 1, 4, key=k, cond_channels=2), (2, 2, 4, 4), (2, 2)),
    "iunet_signal": (lambda k: ij.nets.IUNet(3, 2, 1, 4, key=k, spatial_dims=1), (2, 3, 4)),
    "iunet_volume_map_cond": (
        lambda k: ij.nets.IUNet(2, 2, 1, 2, key=k, spatial_dims=3, cond_channels=1, cond_spatial=True),
        (2, 2, 2, 2, 2),
        (2, 1, 2, 2, 2),
    ),
}


# The fast tier (``pytest -m "not slow"``) runs every layer case and one case per network
# class (the cheapest to compile that has two levels where the network has levels; for the
# IUNet its conditional volume, where a map condition must be squeezed along); these
# other network cases (other dimensionalities and options) run in the full suite only.
# ``test_cases_hold_every_network_in_every_dimensionality`` checks that every network class
# keeps a fast case.
SLOW_CASES = frozenset({
    "conditional_glow_vector_cond", "conditional_hint_image", "conditional_hint_net_vector_cond",
    "conditional_hint_signal", "conditional_hint_spline_vector", "conditional_hint_volume", "glow_checkerboard_image",
    "glow_dense_vector_cond", "glow_nsf_vector_cond",
    "glow_householder_haar", "glow_signal", "glow_unsqueezed_image", "glow_volume",
    "hint_custom_conditioner_vector", "hint_expclamp_vector", "hint_image", "hint_vector", "hint_volume",
    "hyperbolic_image", "hyperbolic_volume", "irim_image", "irim_volume", "iunet_image", "iunet_signal",
    "multiscale_conditional_hint_image", "multiscale_conditional_hint_unsplit_signal",
    "multiscale_conditional_hint_volume", "multiscale_hint_image", "multiscale_hint_image_map_cond",
    "multiscale_hint_volume", "realnvp_uncentred_sigmoid",
})


def tiered(names, slow=SLOW_CASES):
    """``names`` as pytest parameters, those in ``slow`` marked ``slow`` (left out of the fast tier)."""
    import pytest

    return [pytest.param(n, marks=pytest.mark.slow) if n in slow else n for n in names]


_KEY = jr.key(0)

# The networks at a chosen depth, for the memory and float32 tests.
# name: (depth -> flow, x shape, cond shape or None). Tiny shapes: the ratios are what count.
NETWORKS = {
    "glow": (lambda d: ij.nets.Glow(1, 3, d, 8, key=_KEY), (2, 1, 16, 16), None),
    "glow_spline": (lambda d: ij.nets.Glow(1, 3, d, 8, key=_KEY, transform=_SPLINE), (2, 1, 16, 16), None),
    "conditional_glow": (lambda d: ij.nets.Glow(1, 2, d, 8, cond_channels=3, key=_KEY), (2, 1, 8, 8), (2, 3)),
    "realnvp": (lambda d: ij.nets.RealNVP(8, d, 16, key=_KEY), (4, 8), None),
    "conditional_realnvp": (lambda d: ij.nets.RealNVP(8, d, 16, cond_channels=2, key=_KEY), (4, 8), (4, 2)),
    "hint": (lambda d: ij.nets.HINT(4, d, 8, key=_KEY), (2, 4, 8, 8), None),
    "multiscale_hint": (lambda d: ij.nets.MultiscaleHINT(1, 2, d, 8, key=_KEY), (2, 1, 8, 8), None),
    "hyperbolic": (lambda d: ij.nets.Hyperbolic(1, 2, d, 8, key=_KEY), (2, 1, 8, 8), None),
    "conditional_hint": (
        lambda d: ij.nets.ConditionalHINT(2, d, 8, cond_channels=2, key=_KEY),
        (2, 2, 8, 8),
        (2, 2, 8, 8),
    ),
    "multiscale_conditional_hint": (  # signals: the two lanes' 2D recursion compiles slowly
        lambda d: ij.nets.MultiscaleConditionalHINT(1, 2, d, 8, cond_channels=1, key=_KEY, spatial_dims=1),
        (2, 1, 32),
        (2, 1, 32),
    ),
    "irim": (lambda d: ij.nets.IRIM(4, d, 8, _shift_operator, key=_KEY), (2, 4, 8, 8), (2, 1, 8, 8)),
    "iunet": (lambda d: ij.nets.IUNet(2, 2, d, 8, key=_KEY), (2, 2, 8, 8), None),
}


def make(name, key):
    """``(flow, x, cond)`` for case ``name``: a perturbed (non-identity) flow, an input and
    a condition (``None`` for unconditional cases)."""
    from helpers import perturb

    build, shape, *cond_shape = CASES[name]
    k1, k2, k3, k4 = jr.split(key, 4)
    cond = jr.normal(k4, cond_shape[0]) if cond_shape else None
    return perturb(build(k1), k2), jr.normal(k3, shape), cond
