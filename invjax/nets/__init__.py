"""Networks: flows with ``forward``, ``inverse``, ``log_prob`` and ``sample``."""

from .._flow import AbstractFlow, AbstractNetwork, Flow
from .conditional_hint import AbstractJointFlow, ConditionalHINT, MultiscaleConditionalHINT
from .glow import Glow
from .hint import HINT, MultiscaleHINT
from .hyperbolic import Hyperbolic
from .irim import IRIM
from .iunet import IUNet
from .realnvp import RealNVP
from .summarized import Summarized

__all__ = [
    "HINT",
    "IRIM",
    "IUNet",
    "AbstractFlow",
    "AbstractJointFlow",
    "AbstractNetwork",
    "ConditionalHINT",
    "Flow",
    "Glow",
    "Hyperbolic",
    "MultiscaleConditionalHINT",
    "MultiscaleHINT",
    "RealNVP",
    "Summarized",
]
