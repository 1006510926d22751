"""Invertible layers. Every layer satisfies :class:`invjax.layers.AbstractLayer`."""

from .._layer import AbstractBasicLayer, AbstractLayer
from ._actnorm import ActNorm
from ._bounded import Bounded
from ._chain import Chain
from ._composite import AbstractComposite
from ._conditional_hint import ConditionalHINTStep
from ._conditioners import MLP, ConditionalResidualBlock, ResidualBlock, ResidualMLP
from ._conjugate import Conjugate
from ._conv1x1 import Conv1x1, Conv1x1LU
from ._coupling import AbstractCoupling, AdditiveCoupling, AffineCoupling, SplineCoupling
from ._elementwise_affine import ElementwiseAffine
from ._gradient_step import GradientStep
from ._hint import HINTCoupling
from ._hyperbolic import HyperbolicLayer
from ._invert import Invert
from ._map_cond import MapCond
from ._on_channels import FactorOut, OnChannels
from ._permute import Permute
from ._scales import AbstractScale, ExpClampScale, SigmoidScale
from ._spline import RationalQuadraticSpline
from ._squeeze import CheckerboardSqueeze, ColumnSqueeze, HaarSqueeze, PatchSqueeze, Squeeze, SubbandHaarSqueeze
from ._stack import Stack

__all__ = [
    "MLP",
    "AbstractBasicLayer",
    "AbstractComposite",
    "AbstractCoupling",
    "AbstractLayer",
    "AbstractScale",
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "Bounded",
    "Chain",
    "CheckerboardSqueeze",
    "ColumnSqueeze",
    "ConditionalHINTStep",
    "ConditionalResidualBlock",
    "Conjugate",
    "Conv1x1",
    "Conv1x1LU",
    "ElementwiseAffine",
    "ExpClampScale",
    "FactorOut",
    "GradientStep",
    "HINTCoupling",
    "HaarSqueeze",
    "HyperbolicLayer",
    "Invert",
    "MapCond",
    "OnChannels",
    "PatchSqueeze",
    "Permute",
    "RationalQuadraticSpline",
    "ResidualBlock",
    "ResidualMLP",
    "SigmoidScale",
    "SplineCoupling",
    "Squeeze",
    "Stack",
    "SubbandHaarSqueeze",
]
