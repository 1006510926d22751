"""Invertible layers. Every layer satisfies :class:`invjax.AbstractLayer`."""

from .._layer import AbstractLayer
from .actnorm import ActNorm
from .chain import Chain
from .composite import Composite
from .conditioners import MLP, ResidualBlock
from .conjugate import Conjugate
from .conv1x1 import Conv1x1, Conv1x1LU
from .coupling import AbstractCoupling, AdditiveCoupling, AffineCoupling
from .hint import HINTCoupling
from .hyperbolic import HyperbolicLayer
from .invert import Invert
from .lane import Lane, set_lanes
from .map_cond import MapCond
from .on_channels import FactorOut, OnChannels
from .permute import Permute
from .squeeze import HaarSqueeze, Squeeze
from .stack import Stack

__all__ = [
    "MLP",
    "AbstractCoupling",
    "AbstractLayer",
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "Chain",
    "Composite",
    "Conjugate",
    "Conv1x1",
    "Conv1x1LU",
    "FactorOut",
    "HINTCoupling",
    "HaarSqueeze",
    "HyperbolicLayer",
    "Invert",
    "Lane",
    "MapCond",
    "OnChannels",
    "Permute",
    "ResidualBlock",
    "Squeeze",
    "Stack",
    "set_lanes",
]
