"""Networks: flows with ``forward``, ``inverse``, ``log_prob`` and ``sample``."""

from .._flow import AbstractFlow, Flow
from .glow import Glow
from .realnvp import RealNVP

__all__ = ["AbstractFlow", "Flow", "Glow", "RealNVP"]
