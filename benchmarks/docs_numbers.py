"""Fill every benchmark number that README.md and the docs print from ``benchmarks/results``.

    python benchmarks/docs_numbers.py            # rewrite every marked block (render.py runs it too)
    python benchmarks/docs_numbers.py --check    # exit 1, naming each block that differs, if any does

A marked block in a Markdown file is::

    <!-- numbers: NAME -->
    ...text this script writes...
    <!-- /numbers -->

where NAME is either a results file (``results/glow3d.md``: included as it is) or one of the
fragments below: a function of the results files that writes a sentence or a table. Nothing
here runs a benchmark: rerun the benchmark that wrote a results file (its command is in the
file and in the fragment's text), commit the file, then run this script. The test suite runs
``--check`` (``tests/test_docs_numbers.py``), so a page can never print a number its results file
does not hold.
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import re
import sys
from collections.abc import Callable

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGES = ("README.md", "docs/**/*.md")
BLOCK = re.compile(r"(<!-- numbers: (?P<name>\S+) -->\n)(?P<body>.*?)(<!-- /numbers -->)", re.S)

# The commands that write each results file, as the pages name them.
COMMANDS = {
    "cpu_cores": "python benchmarks/glow.py cores",
    "sweep": "python benchmarks/glow.py sweep",
    "headline": "python benchmarks/glow.py headline --run 2048",
    "glow3d": "python benchmarks/glow.py volumes --steps 3",
    "glow3d_largest": "python benchmarks/glow.py volumes --largest --limit-gib 20",
    "sbi": "python benchmarks/sbi.py",
    "spatial_run": "python benchmarks/spatial_memory.py --run 6144 --run-only",
    "strided_blocks": "python benchmarks/strided_blocks.py",
    "sbi_one_flow": "python benchmarks/sbi.py --members 1",
}

FRAGMENTS: dict[str, Callable[[], str]] = {}


def fragment(fn: Callable[[], str]) -> Callable[[], str]:
    FRAGMENTS[fn.__name__] = fn
    return fn


def _json(name: str):
    return json.loads((RESULTS / name).read_text())


def _csv(name: str) -> list[dict]:
    with open(RESULTS / name, newline="") as f:
        return list(csv.DictReader(f))


def _gib(mib) -> float:
    return float(mib) / 1024


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x"


def _seconds(s: float) -> str:
    return f"{s:.3g} s"


def _sweep_row(rows: list[dict], impl: str, **match) -> dict | None:
    for r in rows:
        if r["impl"] == impl and all(int(r[k]) == v for k, v in match.items()):
            return r
    return None


def _sweep_config(rows: list[dict]) -> str:
    r = rows[0]
    return f"{r['levels']} levels, depth {r['depth']}, hidden {r['hidden']}, batch {r['batch']}"


@fragment
def headline() -> str:
    """The largest image a Glow step fits on this machine, and where normflows stops."""
    head, sizes = _json("glow_headline.json"), _csv("glow_size.csv")
    largest = head["largest_fitting_size"]
    peak = next(m["peak_rss_gib"] for m in head["measured"] if m["size"] == largest)
    torch_fails = sorted(int(r["size"]) for r in sizes if r["impl"] == "normflows" and r["status"] != "ok")
    first_fail = torch_fails[0]
    needs = head["normflows_extrapolated_gib"][str(first_fail)]
    return (f"On a {head['ram_gib']:g} GiB CPU machine, a Glow training step ({_sweep_config(sizes)}) "
            f"runs at **{largest}x{largest} RGB in {peak:.1f} GiB**, while PyTorch normflows runs out "
            f"of memory at {first_fail}x{first_fail} (it would need about {needs:.0f} GiB): "
            f"`{COMMANDS['headline']}`, `{COMMANDS['sweep']}`.\n")


@fragment
def speed_2d() -> str:
    """Seconds per Glow step against normflows (latest run) and peak memory (the sweep)."""
    cores, sizes = _json("cpu_cores.json"), _csv("glow_size.csv")
    lines = [f"A Glow training step ({_sweep_config(sizes)}, RGB, float32) on this 2-core CPU: seconds per "
             f"step (`{COMMANDS['cpu_cores']}`) and the process's peak memory (`{COMMANDS['sweep']}`).", "",
             "| size | invjax, one host device | invjax, every core | normflows | every core / normflows "
             "| peak memory, invjax / normflows |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in cores["rows"]:
        if "normflows" not in r:
            continue
        ours, theirs = _sweep_row(sizes, "invjax", size=r["size"]), _sweep_row(sizes, "normflows", size=r["size"])
        memory = (f"{_gib(ours['peak_rss_mib']):.2f} / {_gib(theirs['peak_rss_mib']):.2f} GiB"
                  if ours and theirs and theirs["status"] == "ok" else "")
        lines.append(f"| {r['size']}x{r['size']} | {_seconds(r['one_device'])} | {_seconds(r['per_core'])} | "
                     f"{_seconds(r['normflows'])} | **{_ratio(r['per_core'], r['normflows'])}** | {memory} |")
    return "\n".join(lines) + "\n"


@fragment
def depth_memory() -> str:
    """Peak memory at the deepest point of the depth sweep, invjax against normflows."""
    rows = _csv("glow_depth.csv")
    deepest = max(int(r["depth"]) for r in rows)
    shallow = min(int(r["depth"]) for r in rows)
    size = int(rows[0]["size"])
    peak = {(r["impl"], int(r["depth"])): _gib(r["peak_rss_mib"]) for r in rows if r["status"] == "ok"}
    return (f"At depth {deepest} per level ({size}x{size}) invjax's step peaks at "
            f"{peak['invjax', deepest]:.2f} GiB ({peak['invjax', shallow]:.2f} at depth {shallow}), "
            f"normflows' at {peak['normflows', deepest]:.2f} GiB "
            f"({peak['normflows', deepest] / peak['invjax', deepest]:.0f}x; `{COMMANDS['sweep']}`).\n")


@fragment
def engine_memory() -> str:
    """Compiled memory of a Glow gradient step against depth, gradient error and float32 drift."""
    data = _json("engine_report.json")
    c = data["config"]
    lines = [f"A Glow of {c['levels']} levels, hidden {c['hidden']}, batch {c['batch']} of 3x{c['size']}x{c['size']}, "
             f"float32: XLA's compiled temporary memory of a gradient step (`{data['command']}`):", "",
             "| depth per level | invjax | plain autodiff |", "|---:|---:|---:|"]
    lines += [f"| {r['depth']} | {r['invertible_mib']:.2f} MiB | {r['autodiff_mib']:.2f} MiB |" for r in data["memory"]]
    lines += ["", f"Its gradient agrees with plain autodiff's to {data['gradient_relative_error']:.1e} relative "
              f"(depth {c['time_depth']}), and at depth 64 it reconstructs its input to "
              f"{data['drift_depth_64']:.1e} relative, in float32."]
    return "\n".join(lines) + "\n"


@fragment
def strided_blocks() -> str:
    """The i-RIM's strided blocks: invjax's path against Equinox's modules."""
    data = _json("strided_blocks.json")
    cases = "; ".join(f"{case}: {r['invjax'] * 1e3:.1f} against {r['equinox'] * 1e3:.1f} ms "
                      f"({r['speed-up']:.1f}x)" for case, r in data.items())
    worst = max(r["max_relative_gradient_difference"] for r in data.values())
    return ("**The i-RIM's strided blocks.** The i-RIM coupling's residual block downsamples by a strided "
            "convolution and upsamples by its transpose; invjax runs them as reshapes and stride-1 "
            "convolutions (space-to-depth; sub-pixel for the transpose), channels-last, with the same values, "
            "where Equinox's modules run XLA:CPU's slow channels-first kernel and make a split sample's "
            "gradient gather its input. The gradient of an i-RIM (4 channels, 4 iterations, hidden 16, "
            f"batch (8, 4, 64, 64)), median of 11 calls: {cases}; gradients equal to {worst:.1e} relative "
            f"(float32; `{COMMANDS['strided_blocks']}`).\n")


@fragment
def spatial_run() -> str:
    """One step of a large image split over host devices, run for real."""
    one, *split = sorted(_json("spatial_run.json"), key=lambda r: r["devices"])
    r = split[-1]
    return (f"**Run for real** on this 2-core, 24 GiB machine: one step of a Glow (3 levels, depth 2, hidden 16) "
            f"on a {r['side']}x{r['side']} RGB image, split over {r['devices']} host devices, compiled to "
            f"**{r['per_device_compiled_gib']:.2f} GiB per device** against {one['per_device_compiled_gib']:.2f} GiB "
            f"on one ({r['per_device_compiled_gib'] / one['per_device_compiled_gib']:.3f}x), and ran in "
            f"{r['step_s']:.1f} s against {one['step_s']:.1f} s with "
            + ("the same loss" if r["loss"] == one["loss"] else f"losses {r['loss']} and {one['loss']}")
            + f"; the process's peak resident memory was {r['peak_rss_gib']:.1f} GiB (all {r['devices']} host "
            f"devices live in it; `{COMMANDS['spatial_run']}`, `benchmarks/results/spatial_run.json`).\n")


def _glow3d_rows() -> dict[tuple[str, int], dict]:
    data = _json("glow3d.json")
    return {(r["impl"], r["size"]): r for r in data["speed"]["rows"] if r.get("status") == "ok"}


@fragment
def speed_3d() -> str:
    """A 3D Glow step against the plain-PyTorch 3D Glow at the largest cube of the speed run."""
    data, rows = _json("glow3d.json"), _glow3d_rows()
    c = data["config"]
    size = max(s for impl, s in rows if impl == "torch" and ("invjax", s) in rows)
    ours, cores, auto, torch = (rows.get((i, size)) for i in ("invjax", "invjax-cores", "autodiff", "torch"))
    text = (f"A 3D Glow step ({c['levels']} levels, depth {c['depth']}, hidden {c['hidden']}, batch {c['batch']}) "
            f"at {size}^3 on this 2-core CPU: invjax {_seconds(ours['step_s'])} on one host device"
            + (f", {_seconds(cores['step_s'])} with every core" if cores else "")
            + f", a plain-PyTorch 3D Glow of the same architecture {_seconds(torch['step_s'])}; peak memory "
            f"{_gib(ours['peak_rss_mib']):.2f} against {_gib(torch['peak_rss_mib']):.2f} GiB"
            + (f", compiled temporaries {ours['compiled_temp_mib']:.0f} MiB against plain autodiff's "
               f"{auto['compiled_temp_mib']:.0f} MiB" if auto else "")
            + f" (`{COMMANDS['glow3d']}`).")
    largest = data.get("largest")
    if largest:
        unit = 2 ** c["levels"]
        names = {"invjax": "invjax", "invjax-cores": "invjax with every core", "autodiff": "plain autodiff",
                 "torch": "PyTorch"}

        def side(r):  # a search stopped before its last bisection gives a bracket
            exact = r["first_not_fitting"] is None or r["first_not_fitting"] - r["largest"] <= unit
            return f"{r['largest']}^3" if exact else f"at least {r['largest']}^3 (not {r['first_not_fitting']}^3)"

        found = [f"{names[r['impl']]} {side(r)}" for r in largest["results"] if r["largest"]]
        text += (f" The largest cube whose step fits {largest['limit_gib']:g} GiB: {', '.join(found)} "
                 f"(`{COMMANDS['glow3d_largest']}`).")
    return text + "\n"


def _published() -> dict:
    """sbibm's published C2ST, ``{task: {budget: {method: mean over the 10 observations}}}``, from
    ``results/sbibm_published.json`` (``benchmarks/sbibm_published.py`` writes it from the paper's CSV)."""
    return {task: {int(budget): methods for budget, methods in budgets.items()}
            for task, budgets in _json("sbibm_published.json")["c2st"].items()}


def _sbi_rows() -> list[tuple[str, int, float, float | None, float, str, float]]:
    """(task, budget, C2ST of the ensemble, of one flow, published NPE, best published method, its C2ST), sorted
    by task and budget."""
    published = _published()
    ensemble, one = _json("sbi.json"), _json("sbi_one_flow.json")
    rows = []
    for key in sorted(ensemble, key=lambda k: (k.split("/")[0], int(k.split("/")[1]))):
        r = ensemble[key]
        single = one.get(key, {}).get("mean")
        methods = published[r["task"]][r["budget"]]
        best = min(methods, key=methods.get)
        rows.append((r["task"], r["budget"], r["mean"], single, methods["NPE"], best, methods[best]))
    return rows


def _margins(pairs: list[tuple[float, float]]) -> str:
    """``by A to B`` (published minus invjax) where every row is at or below, else the range of that difference."""
    margins = [theirs - ours for ours, theirs in pairs]
    if min(margins) >= 0:
        return f"by {min(margins):.3f} to {max(margins):.3f}"
    return f"published minus invjax {min(margins):+.3f} to {max(margins):+.3f}"


@fragment
def sbi_summary() -> str:
    """On how many sbibm rows invjax is at or below the published NPE, and the best published method of any kind."""
    rows = _sbi_rows()
    npe = [(ours, theirs) for _, _, ours, _, theirs, _, _ in rows]
    best = [(ours, theirs) for _, _, ours, _, _, _, theirs in rows]
    above: dict[str, list[str]] = {}
    methods = set()
    for task, budget, ours, _, _, method, theirs in rows:
        if ours > theirs:
            above.setdefault(task, []).append(f"{budget:,}")
            methods.add(method)
    where = " and ".join(f"{task} ({', '.join(budgets)})" for task, budgets in above.items())
    return (f"invjax's recipe (a mixture of 3 spline flows) is at or below the published NPE's C2ST on "
            f"{sum(o <= t for o, t in npe)} of {len(rows)} sbibm rows ({_margins(npe)}), and at or below the best "
            f"published method of any kind (sbibm's eight, the sequential ones included) on "
            f"{sum(o <= t for o, t in best)} of {len(rows)}"
            + (f"; above it on {where}, where {' and '.join(sorted(methods))} "
               f"{'is' if len(methods) == 1 else 'are'} best" if above else "")
            + f" (`{COMMANDS['sbi']}`).\n")


@fragment
def sbi_table() -> str:
    """The sbibm table: 3 flows, one flow, the published NPE and the best published method per row."""
    ensemble = _json("sbi.json")
    lines = [f"Three flows per row (`{COMMANDS['sbi']}`, `benchmarks/results/sbi.json`), one flow "
             f"(`{COMMANDS['sbi_one_flow']}`, `benchmarks/results/sbi_one_flow.json`), the published NPE and the "
             "best of sbibm's published methods (`benchmarks/results/sbibm_published.json`; REJ-ABC, SMC-ABC, NLE, "
             "NPE, NRE and the sequential SNLE, SNPE, SNRE, which spend their simulations on the one observation "
             "where invjax's posterior is amortized over all of them):", "",
             "| task | simulations | invjax C2ST, 3 flows | one flow | published NPE | at or below | "
             "best published (method) | at or below it | training (s), 3 flows | steps |",
             "|:---|---:|---:|---:|---:|:---:|---:|:---:|---:|---:|"]
    for task, budget, ours, single, npe, method, best in _sbi_rows():
        r = ensemble[f"{task}/{budget}"]
        one = f"{single:.4f}" if single is not None else ""
        lines.append(f"| {task} | {budget:,} | {ours:.4f} | {one} | {npe:.4f} | {'yes' if ours <= npe else 'no'} | "
                     f"{best:.4f} ({method}) | {'yes' if ours <= best else 'no'} | {r['train_s']:.0f} | "
                     f"{r['steps']} |")
    return "\n".join(lines) + "\n"


def render(name: str) -> str:
    """The text of block ``name``: a results file as it is, or a fragment's output."""
    if name.startswith("results/"):
        path = RESULTS / name.removeprefix("results/")
        if not path.is_file():
            raise ValueError(f"numbers block names {name!r}, but {path.relative_to(ROOT)} does not exist")
        text = path.read_text()
        return text if text.endswith("\n") else text + "\n"
    if name not in FRAGMENTS:
        raise ValueError(f"numbers block names {name!r}: expected a results file (results/...) or one of "
                         f"{sorted(FRAGMENTS)}")
    return FRAGMENTS[name]()


def pages() -> list[pathlib.Path]:
    found = []
    for pattern in PAGES:
        found += sorted(ROOT.glob(pattern))
    return found


def fill(text: str) -> str:
    """``text`` with every marked block rewritten."""
    return BLOCK.sub(lambda m: m.group(1) + render(m.group("name")) + m.group(4), text)


def stale() -> list[str]:
    """``path: NAME`` for every block whose text differs from what the results give."""
    out = []
    for path in pages():
        text = path.read_text()
        for m in BLOCK.finditer(text):
            if m.group("body") != render(m.group("name")):
                out.append(f"{path.relative_to(ROOT)}: {m.group('name')}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only report blocks that differ (exit 1 if any)")
    args = p.parse_args()
    if args.check:
        differ = stale()
        for line in differ:
            print(f"stale: {line}")
        sys.exit(1 if differ else 0)
    for name in fill_pages():
        print(f"wrote {name}")


def fill_pages() -> list[str]:
    """Rewrite every page whose blocks differ; the paths written."""
    written = []
    for path in pages():
        text = path.read_text()
        new = fill(text)
        if new != text:
            path.write_text(new)
            written.append(str(path.relative_to(ROOT)))
    return written


if __name__ == "__main__":
    main()
