"""Shared test set-up: float64 for the math checks (float32 tests cast explicitly)."""

import jax

jax.config.update("jax_enable_x64", True)
