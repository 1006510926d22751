"""invjax: memory-frugal normalizing flows in JAX.

Gradients of invjax flows are computed by reconstructing activations from the layers'
inverses instead of storing them, so a training step's memory does not grow with depth.
"""

from . import diagnostics, layers, nets
from ._backprop import AbstractBackprop, Autodiff, Invertible
from ._devices import device_mesh, process_part, replicate, shard_batch, use_cpu_cores
from ._distributions import AbstractDistribution, DiagonalNormal, StandardNormal
from ._ensemble import Ensemble
from ._fit import fit, negative_log_likelihood
from ._flow import AbstractFlow, with_backprop
from ._health import reconstruction_error
from ._io import load, load_metadata, save
from ._jacobian import jvp, vjp
from ._layer import AbstractLayer
from ._posterior import Posterior, fit_posterior, spline_flow
from ._priors import BoxUniform, Normal
from ._refine import LatentCorrection, RefinedPosterior, refine_posterior
from ._sequential import fit_sequential
from ._step import make_step
from ._vi import fit_vi, reverse_kl
from ._within import sample_within

__version__ = "0.1.0"

__all__ = [
    "AbstractBackprop",
    "AbstractDistribution",
    "AbstractFlow",
    "AbstractLayer",
    "Autodiff",
    "BoxUniform",
    "DiagonalNormal",
    "Ensemble",
    "Invertible",
    "LatentCorrection",
    "Normal",
    "Posterior",
    "RefinedPosterior",
    "StandardNormal",
    "device_mesh",
    "fit",
    "fit_posterior",
    "fit_sequential",
    "fit_vi",
    "diagnostics",
    "jvp",
    "layers",
    "load",
    "load_metadata",
    "make_step",
    "negative_log_likelihood",
    "nets",
    "process_part",
    "reconstruction_error",
    "refine_posterior",
    "replicate",
    "reverse_kl",
    "sample_within",
    "save",
    "shard_batch",
    "spline_flow",
    "use_cpu_cores",
    "vjp",
    "with_backprop",
]
