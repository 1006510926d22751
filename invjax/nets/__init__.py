"""Networks: flows with ``forward``, ``inverse``, ``log_prob`` and ``sample``."""

from .._flow import AbstractFlow, Flow
from .glow import ConditionalGlow, Glow
from .realnvp import ConditionalRealNVP, RealNVP

__all__ = ["AbstractFlow", "ConditionalGlow", "ConditionalRealNVP", "Flow", "Glow", "RealNVP"]
