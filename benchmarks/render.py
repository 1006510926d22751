"""Every table and figure in ``benchmarks/results`` again, from the JSON and CSV files there; runs no benchmark.

    python benchmarks/render.py                   # in place, then the docs' figures and numbers blocks
    python benchmarks/render.py --out /tmp/r      # elsewhere (tests/test_benchmarks_render.py)
    python benchmarks/render.py --results benchmarks/results/gpu --tables-only

What is written from what (each only where its source is there):

- ``glow.py sweep``: ``glow_size.csv``, ``glow_depth.csv`` (and ``glow_machine.json``) ->
  ``glow_sweep.md``, ``glow_sweep.png``;
- ``glow.py headline``: ``glow_headline.json`` -> ``glow_headline.md``;
- ``glow.py ratio``: ``glow_ratio_<size>_d<depth>.json`` -> ``.md``;
- ``glow.py cores``: ``cpu_cores.json`` -> ``cpu_cores.md``;
- ``glow.py volumes``: ``glow3d.json`` -> ``glow3d.md``, ``glow3d.png``;
- ``conv_kernels.py``: ``conv_kernels.json`` -> ``conv_kernels.md``, ``conv_kernels_3d.md``;
- ``spatial_memory.py``: ``spatial_memory.csv`` -> ``spatial_memory.md``, ``spatial_memory.png``;
- ``sbi.py``: ``sbi.json`` -> ``sbi.md``; ``sbi_one_flow.json`` -> ``sbi_one_flow.md``;
- ``examples/volume_posterior.py --memory``: ``volume_posterior_memory.json`` -> ``.md``.

The rest have no machine-readable source and stay as written: the tables of
``amortized_workflow.py``, ``diagnostics_speed.py``, ``network_report.py`` (they are
their only output), ``glow.py profile`` (``profile_step.md``, notes around its output),
``conv_kernels_xla3d.md`` (an earlier run's table) and the two ``glow_ratio_*.md`` measured
before ``ratio`` kept its JSON.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _glow2d  # noqa: E402
import _glow3d  # noqa: E402
import _runner as run  # noqa: E402

SBI_ONE_FLOW = ("C2ST of invjax's NPE with one flow per row (`python benchmarks/sbi.py --members 1`; the table before "
                "its rerun with 3 flows on 2026-12-06, which is `sbi.md`) against sbibm's reference posteriors; "
                "settings in sbi.py's docstring; this 2-core CPU.")


def render(results: pathlib.Path, out: pathlib.Path, figures: bool = True) -> list:
    """Write the tables (and figures) of ``results`` into ``out``; the names written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def source(name):
        return (results / name).exists()

    def load(name):
        return json.loads((results / name).read_text())

    def write(name, text):
        (out / name).write_text(text)
        written.append(name)

    if source("glow_size.csv") or source("glow_depth.csv"):
        write("glow_sweep.md", _glow2d.sweep_table(results))
        if figures:
            _glow2d.sweep_plot(results, out / "glow_sweep.png")
            written.append("glow_sweep.png")
    if source("glow_headline.json"):
        write("glow_headline.md", _glow2d.headline_table(load("glow_headline.json")))
    for path in sorted(results.glob("glow_ratio_*.json")):
        write(path.with_suffix(".md").name, _glow2d.ratio_table(load(path.name)))
    if source("cpu_cores.json"):
        write("cpu_cores.md", _glow2d.cores_table(load("cpu_cores.json")))
    if source("glow3d.json"):
        data = load("glow3d.json")
        write("glow3d.md", _glow3d.table(data))
        if figures:
            _glow3d.plot(data, out / "glow3d.png")
            written.append("glow3d.png")
    if source("conv_kernels.json"):
        import conv_kernels

        conv_kernels.write_tables(load("conv_kernels.json"), out)
        written += ["conv_kernels.md", "conv_kernels_3d.md"]
    if source("spatial_memory.csv"):
        import spatial_memory

        rows = spatial_memory.read(results / "spatial_memory.csv")
        platform = "gpu" if results.name == "gpu" else "cpu"
        spatial_memory.write_table(rows, out, platform)
        written.append("spatial_memory.md")
        if figures:
            spatial_memory.plot(rows, out)
            written.append("spatial_memory.png")
    for name, caption in (("sbi", None), ("sbi_one_flow", SBI_ONE_FLOW)):
        if source(f"{name}.json"):
            import sbi

            sbi.write_table(load(f"{name}.json"), out / f"{name}.md", caption or sbi.CAPTION)
            written.append(f"{name}.md")
    if source("volume_posterior_memory.json"):
        sys.path.insert(0, str(HERE.parent / "examples"))
        import volume_posterior

        data = load("volume_posterior_memory.json")
        write("volume_posterior_memory.md", volume_posterior.memory_table(data["config"], data["rows"]))
    return written


# The figures the docs show, copied from the results that hold them.
DOCS_FIGURES = ("glow_sweep.png", "glow3d.png", "spatial_memory.png")


def update_docs(results: pathlib.Path) -> list[str]:
    """Copy the docs' figures from ``results`` and fill README's and the docs' numbers blocks."""
    import shutil

    import docs_numbers

    images = docs_numbers.ROOT / "docs" / "images"
    copied = []
    for name in DOCS_FIGURES:
        if (results / name).is_file():
            shutil.copyfile(results / name, images / name)
            copied.append(f"docs/images/{name}")
    return copied + docs_numbers.fill_pages()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=pathlib.Path, default=run.RESULTS, help="the folder of the JSON and CSV files")
    p.add_argument("--out", type=pathlib.Path, help="where to write (default: --results itself)")
    p.add_argument("--tables-only", action="store_true", help="no figures")
    args = p.parse_args(argv)
    written = render(args.results, args.out or args.results, figures=not args.tables_only)
    print(f"wrote {len(written)} files to {args.out or args.results}: {', '.join(written)}")
    if args.out is None and args.results == run.RESULTS:
        print("docs:", ", ".join(update_docs(args.results)) or "unchanged")


if __name__ == "__main__":
    main()
