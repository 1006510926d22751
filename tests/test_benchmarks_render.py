"""The benchmarks' table writers against the committed tables, and the entry point's commands.

``benchmarks/render.py`` writes every table again from the committed JSON and CSV results
(no benchmark runs): each must equal the committed file to the byte, so a table writer
that drifts from what the results files say fails here.
"""

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
RESULTS = BENCHMARKS / "results"
# Every table with a machine-readable source; render.py must keep writing each.
TABLES = {"glow_sweep.md", "glow_headline.md", "cpu_cores.md", "glow3d.md", "conv_kernels.md", "conv_kernels_3d.md",
          "spatial_memory.md", "sbi.md", "sbi_one_flow.md", "volume_posterior_memory.md"}
SUBCOMMANDS = ("step", "sweep", "headline", "ratio", "cores", "profile", "volumes")


def _run(*args):
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=path)
    out = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_render_reproduces_the_committed_tables(tmp_path):
    _run(BENCHMARKS / "render.py", "--tables-only", "--out", tmp_path)
    written = {p.name for p in tmp_path.iterdir()}
    assert TABLES <= written
    for name in sorted(written):
        assert (tmp_path / name).read_text() == (RESULTS / name).read_text(), f"{name} differs from the committed one"


def test_the_entry_point_lists_its_subcommands():
    text = _run(BENCHMARKS / "glow.py", "--help")
    for name in SUBCOMMANDS:
        assert f"\n    {name} " in text, name


def test_the_3d_table_names_the_current_command_for_old_results(monkeypatch):
    """Results written by the scripts the entry point replaced (``glow3d.py --largest``) name
    ``glow.py volumes`` in the table."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import _glow3d

    data = json.loads((RESULTS / "glow3d.json").read_text())
    data["largest"] = {"commands": ["python benchmarks/glow3d.py --largest"], "limit_gib": 24.0, "max_size": 1024,
                       "results": [{"impl": "invjax", "largest": 256, "peak_mib": 20000.0, "compiled_temp_mib": 1.0,
                                    "first_not_fitting": 264, "why": "predicted 24600 MiB"}], "probes": []}
    text = _glow3d.table(data)
    assert "`python benchmarks/glow.py volumes --largest`" in text
    assert "| invjax | 256^3 | 20000 | 1 | 264^3 | predicted 24600 MiB |" in text
    assert "benchmarks/glow3d.py" not in text
