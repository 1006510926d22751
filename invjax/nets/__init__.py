"""Networks: flows with ``forward``, ``inverse``, ``log_prob`` and ``sample``."""

from .._flow import AbstractFlow, AbstractNetwork, Flow
from ._conditional_hint import AbstractJointFlow, ConditionalHINT, MultiscaleConditionalHINT
from ._constrained import Constrained
from ._glow import Glow
from ._hint import HINT, MultiscaleHINT
from ._hyperbolic import Hyperbolic
from ._irim import IRIM
from ._iunet import IUNet, learnable_squeeze
from ._realnvp import RealNVP
from ._standardized import Standardized
from ._summaries import DeepSet, SetTransformer, TimeSeriesNetwork, pad_sets
from ._summarized import Summarized

__all__ = [
    "HINT",
    "IRIM",
    "IUNet",
    "AbstractFlow",
    "AbstractJointFlow",
    "AbstractNetwork",
    "ConditionalHINT",
    "Constrained",
    "DeepSet",
    "Flow",
    "Glow",
    "Hyperbolic",
    "MultiscaleConditionalHINT",
    "MultiscaleHINT",
    "RealNVP",
    "SetTransformer",
    "Standardized",
    "Summarized",
    "TimeSeriesNetwork",
    "learnable_squeeze",
    "pad_sets",
]
