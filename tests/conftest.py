"""Shared test set-up: float64 for the math checks (float32 tests cast explicitly).

The tests compile many tiny programs and run each once or twice, so XLA's CPU backend
optimisation is turned off unless the caller set XLA_FLAGS: compilation is about a third
faster. Compiled memory analysis (buffer assignment) does not depend on it.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import jax

jax.config.update("jax_enable_x64", True)
