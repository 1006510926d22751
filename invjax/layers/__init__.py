"""Invertible layers. Every layer satisfies :class:`invjax.AbstractLayer`."""

from .._layer import AbstractLayer
from .actnorm import ActNorm
from .chain import Chain
from .conditioners import MLP, ResidualBlock
from .conv1x1 import Conv1x1, Conv1x1LU
from .coupling import AbstractCoupling, AdditiveCoupling, AffineCoupling
from .factor import FactorOut
from .invert import Invert
from .map_cond import MapCond
from .permute import Permute
from .squeeze import HaarSqueeze, Squeeze
from .stack import Stack

__all__ = [
    "AbstractLayer",
    "AbstractCoupling",
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "Chain",
    "Conv1x1",
    "Conv1x1LU",
    "FactorOut",
    "HaarSqueeze",
    "Invert",
    "MapCond",
    "MLP",
    "Permute",
    "ResidualBlock",
    "Squeeze",
    "Stack",
]
