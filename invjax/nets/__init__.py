"""Networks: flows with ``forward``, ``inverse``, ``log_prob`` and ``sample``."""

from .._flow import AbstractFlow, Flow
from .conditional_hint import AbstractJointFlow, ConditionalHINT, MultiscaleConditionalHINT
from .glow import ConditionalGlow, Glow
from .hint import HINT, MultiscaleHINT
from .hyperbolic import Hyperbolic
from .realnvp import ConditionalRealNVP, RealNVP
from .summarized import Summarized

__all__ = [
    "HINT",
    "AbstractFlow",
    "AbstractJointFlow",
    "ConditionalGlow",
    "ConditionalHINT",
    "ConditionalRealNVP",
    "Flow",
    "Glow",
    "Hyperbolic",
    "MultiscaleConditionalHINT",
    "MultiscaleHINT",
    "RealNVP",
    "Summarized",
]
