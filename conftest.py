"""Runs the documentation: every fenced Python block of ``README.md`` and ``docs/``, and
every ``>>>`` example and fenced Python block in invjax's docstrings (the API pages), with
Sybil (see ``docs/contributing.md``).

The blocks of one page share a namespace and run top to bottom, so a page may build on
its own earlier blocks (never on another page's). Each page runs as a reader runs it:
float32 (the unit tests switch float64 on for the math checks), in an empty working
directory (pages save files). ``<!-- skip: next -->`` before a block skips it; the prose
around it says why.
"""

import os
import tempfile

# Tiny programs, each compiled once: XLA:CPU's backend optimisation costs more than it saves
# (about a third of the compile time), and its newer MLIR fusion emitters compile about twice
# as slowly as the classic ones for these programs (a multiscale conditional HINT's gradient
# check: 17.2 -> 8.7 s of XLA compilation; the same values, compiled temporaries within 1%, e.g.
# 37536 -> 37664 bytes for a small Glow's gradient). The caller's XLA_FLAGS win.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false")
from doctest import ELLIPSIS, NORMALIZE_WHITESPACE

import jax
import pytest
from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser
from sybil.parsers.rest import DocTestParser

# Compiled programs are kept on disk and shared by the test processes (xdist workers) and by
# later runs: most tests build small flows whose eager initialisation compiles the same few
# dozen tiny programs (random draws of the same shapes), and the unit tests drop JAX's
# in-memory caches every tenth test. Measured on this machine: building a small Glow 18 s
# -> 7 s, compiling its gradient 12.7 s -> 5.1 s, with the same compiled memory analysis.
# Test set-up only: the library itself keeps no cache.
# Environment variables as well, so the example scripts the tests start share it.
_cache = {
    "jax_compilation_cache_dir": os.environ.get("JAX_COMPILATION_CACHE_DIR")
    or os.path.join(tempfile.gettempdir(), f"invjax-jax-cache-{os.getuid()}"),
    "jax_persistent_cache_min_compile_time_secs": 0,
    "jax_persistent_cache_min_entry_size_bytes": 0,
}
for _name, _value in _cache.items():
    os.environ[_name.upper()] = str(_value)
    jax.config.update(_name, _value)


def _setup(namespace):
    namespace["_x64"] = jax.config.jax_enable_x64
    namespace["_cwd"] = os.getcwd()
    namespace["_tmp"] = tempfile.TemporaryDirectory()
    jax.config.update("jax_enable_x64", False)
    os.chdir(namespace["_tmp"].name)


def _teardown(namespace):
    os.chdir(namespace["_cwd"])
    namespace["_tmp"].cleanup()
    jax.config.update("jax_enable_x64", namespace["_x64"])


_pages = Sybil(
    parsers=[PythonCodeBlockParser(), SkipParser()],
    patterns=["*.md"],  # README.md and docs/ (the test paths), any depth
    setup=_setup,
    teardown=_teardown,
    name="docs",
)
_docstrings = Sybil(
    parsers=[DocTestParser(optionflags=ELLIPSIS | NORMALIZE_WHITESPACE), PythonCodeBlockParser(), SkipParser()],
    path="invjax",
    patterns=["*.py"],
    setup=_setup,
    teardown=_teardown,
    name="docstrings",
)
pytest_collect_file = (_pages + _docstrings).pytest()


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items):
    # The blocks of a page share one namespace, so they must run in order in one process:
    # pytest.ini asks xdist for --dist loadgroup, and each page is one group.
    # The pages (README.md, docs/) are end-to-end walks: the full suite only; the docstrings'
    # examples (the API reference's) stay in the fast tier.
    for item in items:
        if type(item).__name__ == "SybilItem":
            item.add_marker(pytest.mark.xdist_group(str(item.path)))
            if item.path.suffix == ".md":
                item.add_marker(pytest.mark.slow)
