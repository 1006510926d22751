"""Every benchmark number README.md and the docs print is the one its results file holds.

The pages mark those numbers as blocks (``<!-- numbers: NAME -->``) that
``benchmarks/docs_numbers.py`` writes from ``benchmarks/results``; a block edited by hand, or
a results file rerun without copying it to the pages, fails here.
"""

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def docs_numbers():
    spec = importlib.util.spec_from_file_location("docs_numbers", ROOT / "benchmarks" / "docs_numbers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_numbers_block_matches_its_results(docs_numbers):
    stale = docs_numbers.stale()
    assert not stale, ("these blocks differ from benchmarks/results; run `python benchmarks/docs_numbers.py` "
                       "(and commit), never edit them by hand:\n" + "\n".join(stale))


def test_the_headline_pages_take_their_numbers_from_results(docs_numbers):
    blocks = {path.relative_to(ROOT).as_posix(): {m.group("name") for m in docs_numbers.BLOCK.finditer(path.read_text())}
              for path in docs_numbers.pages()}
    assert {"headline", "speed_2d", "speed_3d", "sbi_summary"} <= blocks["README.md"]
    assert {"speed_2d", "results/glow_sweep.md", "results/glow3d.md", "sbi_table"} <= blocks["docs/benchmarks.md"]
    used = set().union(*blocks.values())
    assert set(docs_numbers.FRAGMENTS) <= used, f"fragments no page uses: {set(docs_numbers.FRAGMENTS) - used}"


def test_a_block_naming_nothing_is_an_error(docs_numbers):
    with pytest.raises(ValueError, match="results/missing.md"):
        docs_numbers.render("results/missing.md")
    with pytest.raises(ValueError, match="expected a results file"):
        docs_numbers.render("no_such_fragment")
