"""Networks: flows with ``forward``, ``inverse``, ``log_prob`` and ``sample``."""

from .._flow import AbstractFlow, AbstractNetwork, Flow
from .conditional_hint import AbstractJointFlow, ConditionalHINT, MultiscaleConditionalHINT
from .constrained import Constrained
from .glow import Glow
from .hint import HINT, MultiscaleHINT
from .hyperbolic import Hyperbolic
from .irim import IRIM
from .iunet import IUNet
from .realnvp import RealNVP
from .standardized import Standardized
from .summaries import DeepSet, SetTransformer, TimeSeriesNetwork, pad_sets
from .summarized import Summarized

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
    "pad_sets",
]
