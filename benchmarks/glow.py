"""The Glow benchmarks: a training step's time and peak memory, invjax against plain autodiff and PyTorch.

    pip install -e ".[bench]"       # torch==2.13.0 (CPU), normflows, matplotlib
    python benchmarks/glow.py step --impl invjax --size 256 --depth 16   # one configuration, one JSON line
    python benchmarks/glow.py sweep                  # against size and depth: CSV, PNG, table (about 45 min here)
    python benchmarks/glow.py sweep --sweep size --sizes 64 128 256
    python benchmarks/glow.py sweep --plot-only      # redraw the table and figure from the CSV files
    python benchmarks/glow.py headline --run 2048    # the largest image a step fits in this machine's memory
    python benchmarks/glow.py ratio --size 256 --depth 16    # step-time ratios, the implementations interleaved
    python benchmarks/glow.py cores                  # one host device against one per core, and normflows
    python benchmarks/glow.py profile --size 32 --depth 2    # where a step's time goes, per XLA operation
    python benchmarks/glow.py volumes                # a 3D Glow step against a plain-PyTorch 3D Glow
    python benchmarks/glow.py volumes --largest      # the largest cube each configuration fits in 24 GiB
    python benchmarks/render.py                      # every table and figure again, from the results files

``step`` runs one configuration in this process and prints one JSON line; every other
subcommand runs each configuration in a fresh process (``_runner.child``: its resident
memory polled, killed at a limit), so that each peak is one step's and a configuration that
does not fit is recorded as out of memory rather than taking the machine down. Results go to
``benchmarks/results/``; each table names the command that writes it; ``render.py`` writes
them again from the JSON and CSV files there without running anything.
"""

from __future__ import annotations

import argparse
import pathlib
import shlex
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import _glow2d  # noqa: E402
import _glow3d  # noqa: E402
import _profile  # noqa: E402
import _runner  # noqa: E402

# name: (what it does, its arguments, what runs it)
COMMANDS = {
    "step": ("one 2D Glow training step in this process: peak memory and seconds, one JSON line",
             _glow2d.step_arguments, _glow2d.step),
    "sweep": ("against image size and depth, invjax vs autodiff vs normflows (glow_size.csv, glow_depth.csv, "
              "glow_sweep.md/png)", _glow2d.sweep_arguments, _glow2d.sweep),
    "headline": ("the largest image whose step fits this machine's memory (glow_headline.json/md)",
                 _glow2d.headline_arguments, _glow2d.headline),
    "ratio": ("step-time ratios in interleaved rounds (glow_ratio_<size>_d<depth>.json/md)",
              _glow2d.ratio_arguments, _glow2d.ratio),
    "cores": ("one host device against one per core, and normflows (cpu_cores.json/md)",
              _glow2d.cores_arguments, _glow2d.cores),
    "profile": ("where a step's time goes, per XLA operation (markdown with --out)",
                _profile.profile_arguments, _profile.profile),
    "volumes": ("a 3D Glow step vs a plain-PyTorch 3D Glow; --largest: the largest cube that fits "
                "(glow3d.json/md/png)", _glow3d.volumes_arguments, _glow3d.volumes),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                epilog="python benchmarks/glow.py COMMAND --help: that command's options")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (what, arguments, func) in COMMANDS.items():
        sp = sub.add_parser(name, help=what, description=what)
        arguments(sp)
        sp.set_defaults(func=func, error=sp.error)
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    args.command_line = _runner.command(args.command, *map(shlex.quote, argv[1:]))
    args.func(args)


if __name__ == "__main__":
    main()
