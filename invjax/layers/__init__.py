"""Invertible layers. Every layer satisfies :class:`invjax.layers.AbstractLayer`."""

from .._layer import AbstractBasicLayer, AbstractLayer
from .actnorm import ActNorm
from .bounded import Bounded
from .chain import Chain
from .composite import AbstractComposite
from .conditional_hint import ConditionalHINTStep
from .conditioners import MLP, ConditionalResidualBlock, ResidualBlock, ResidualMLP
from .conjugate import Conjugate
from .conv1x1 import Conv1x1, Conv1x1LU
from .coupling import AbstractCoupling, AdditiveCoupling, AffineCoupling, SplineCoupling
from .elementwise_affine import ElementwiseAffine
from .gradient_step import GradientStep
from .hint import HINTCoupling
from .hyperbolic import HyperbolicLayer
from .invert import Invert
from .map_cond import MapCond
from .on_channels import FactorOut, OnChannels
from .permute import Permute
from .scales import AbstractScale, ExpClampScale, SigmoidScale
from .spline import RationalQuadraticSpline
from .squeeze import CheckerboardSqueeze, ColumnSqueeze, HaarSqueeze, PatchSqueeze, Squeeze, SubbandHaarSqueeze
from .stack import Stack

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
