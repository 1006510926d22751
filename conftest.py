"""Runs the documentation: every fenced Python block of ``README.md`` and ``docs/``, and
every ``>>>`` example in invjax's docstrings, with Sybil (see ``docs/contributing.md``).

The blocks of one page share a namespace and run top to bottom, so a page may build on
its own earlier blocks (never on another page's). Each page runs as a reader runs it:
float32 (the unit tests switch float64 on for the math checks), in an empty working
directory (pages save files). ``<!-- skip: next -->`` before a block skips it; the prose
around it says why.
"""

import os
import tempfile

# Tiny programs, each compiled once: XLA:CPU's backend optimisation costs more than it saves
# (about a third of the compile time). The caller's XLA_FLAGS win.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
from doctest import ELLIPSIS, NORMALIZE_WHITESPACE

import jax
import pytest
from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser
from sybil.parsers.rest import DocTestParser


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
    parsers=[DocTestParser(optionflags=ELLIPSIS | NORMALIZE_WHITESPACE)],
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
    for item in items:
        if type(item).__name__ == "SybilItem":
            item.add_marker(pytest.mark.xdist_group(str(item.path)))
