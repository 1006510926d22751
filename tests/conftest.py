"""Shared test set-up: float64 for the math checks (float32 tests cast explicitly).

XLA's flags and the compilation cache are set in the repository's root ``conftest.py``
(for the documentation too). Compiled memory analysis (buffer assignment) depends on
neither.
"""

import gc

import jax
import pytest

jax.config.update("jax_enable_x64", True)


_TESTS_PER_CLEAR = 10
_count = [0]


@pytest.fixture(autouse=True)
def _fresh_jax_caches():
    """Drop compiled programs after every tenth test.

    Each test builds and compiles its own flows, but JAX keeps every executable alive in
    its caches. Hundreds of them in one process ended in a segfault inside XLA's CPU
    compiler (reproducible around the 150th contract test, with or without the
    optimisation flag above, with an unlimited stack), with the process at over 4 GB;
    clearing the caches keeps the process small. Not after every test: building a flow
    runs a few dozen eager operations, each compiled on first use, and recompiling them
    in every test took more time than the tests themselves (about 6 s of a 11 s contract
    test).
    """
    yield
    _count[0] += 1
    if _count[0] % _TESTS_PER_CLEAR == 0:
        jax.clear_caches()
        gc.collect()
