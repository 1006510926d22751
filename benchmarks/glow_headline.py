"""The headline: how large an image a Glow training step fits in this machine's memory.

    python benchmarks/glow_headline.py              # after glow_sweep.py (reads its size CSV)
    python benchmarks/glow_headline.py --run 2048   # also run one step at 2048x2048

Glow, 3 levels, depth 16, hidden 64, batch 8, RGB, float32, as in the sweep. For each size
in ``--sizes`` it compiles the invjax training step without running it
(``glow_step.py --compile-only``) and predicts the step's peak as the process's
resident memory before the step plus XLA's compiled memory (arguments, outputs,
temporaries); the largest size whose prediction fits the machine's memory is reported.
``--run`` runs one step at the given sizes (peak memory measured, as in the sweep).
normflows' memory is extrapolated linearly in pixels from its measured sizes.

Writes ``benchmarks/results/glow_headline.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np
from glow_sweep import HERE, RESULTS, read


def step(size, *extra):
    cmd = [sys.executable, str(HERE / "glow_step.py"), "--impl", "invjax", "--size", str(size), "--depth", "16",
           *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 1536, 2048, 2560, 3072, 4096])
    p.add_argument("--run", type=int, nargs="*", default=[], help="sizes to run one step at")
    args = p.parse_args()
    ram_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    result = {"ram_gib": round(ram_gib, 1), "predicted": [], "measured": []}
    for size in args.sizes:
        r = step(size, "--compile-only")
        predicted = (r["base_rss_mib"] + r["compiled_total_mib"]) / 1024
        result["predicted"].append({"size": size, "compiled_temp_gib": r["compiled_temp_mib"] / 1024,
                                    "predicted_peak_gib": predicted, "fits": predicted < ram_gib})
        print(f"{size}x{size}: compiled temporaries {r['compiled_temp_mib'] / 1024:.2f} GiB, predicted peak "
              f"{predicted:.2f} GiB ({'fits' if predicted < ram_gib else 'does not fit'} in {ram_gib:.1f} GiB)",
              flush=True)
    for size in args.run:
        r = step(size, "--steps", "0")
        result["measured"].append({"size": size, "peak_rss_gib": r["peak_rss_mib"] / 1024, "step_s": r["step_s"]})
        print(f"{size}x{size}: one step took {r['step_s']:.0f} s, peak {r['peak_rss_mib'] / 1024:.2f} GiB", flush=True)
    fits = [row["size"] for row in result["predicted"] if row["fits"]]
    result["largest_fitting_size"] = max(fits) if fits else None

    rows = [r for r in read("size") if r["status"] == "ok"]
    torch_rows = [(int(r["size"]) ** 2, float(r["peak_rss_mib"]) / 1024) for r in rows if r["impl"] == "normflows"]
    if len(torch_rows) >= 2:
        slope, intercept = np.polyfit(*zip(*torch_rows, strict=True), 1)
        result["normflows_extrapolated_gib"] = {s: slope * s * s + intercept for s in (1024, 2048)}
    measured_1024 = next((r for r in rows if r["impl"] == "invjax" and int(r["size"]) == 1024), None)
    if measured_1024:
        result["measured"].insert(0, {"size": 1024, "peak_rss_gib": float(measured_1024["peak_rss_mib"]) / 1024,
                                      "step_s": float(measured_1024["step_s"])})
    (RESULTS / "glow_headline.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"Glow, 3 levels, depth 16, hidden 64, batch 8, RGB, float32; this machine: {ram_gib:.1f} GiB.", "",
             "| size | invjax measured peak (GiB) | invjax s per step | invjax predicted peak (GiB) | "
             "normflows (GiB) |", "|---|---|---|---|---|"]
    extrapolated = result.get("normflows_extrapolated_gib", {})
    measured = {m["size"]: m for m in result["measured"]}
    for row in result["predicted"]:
        m = measured.get(row["size"])
        torch_cell = f"~{extrapolated[row['size']]:.0f} (extrapolated)" if row["size"] in extrapolated else "-"
        ran = f"{m['peak_rss_gib']:.2f} | {m['step_s']:.0f}" if m else "- | -"
        lines.append(f"| {row['size']} | {ran} |")
        lines[-1] += f" {row['predicted_peak_gib']:.2f}{'' if row['fits'] else ' (does not fit)'} | {torch_cell} |"
    lines += ["", f"Largest square size whose step fits: {result['largest_fitting_size']}."]
    (RESULTS / "glow_headline.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
