"""sbibm's published C2ST numbers (Lueckmann et al. 2021) for the tasks of ``sbi.py``: every method's mean over
the 10 observations at 10^3, 10^4 and 10^5 simulations, from the paper's table of runs.

    git clone https://github.com/sbi-benchmark/results     # or download only the CSV below
    python benchmarks/sbibm_published.py results/benchmarking_sbi/results/main_paper.csv

Reads ``main_paper.csv`` (one row per task, method, budget and observation; columns ``task``,
``num_simulations`` written ``10³``/``10⁴``/``10⁵``, ``num_observation``, ``algorithm``, ``C2ST``, ...) and writes
``benchmarks/results/sbibm_published.json``: ``{"source", "about", "c2st": {task: {budget: {method: mean}}}}``,
each mean rounded to 4 decimals. ``sbi.py`` and ``docs_numbers.py`` read it (no download when they run).
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
from collections import defaultdict

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE / "results" / "sbibm_published.json"
TASKS = ("two_moons", "gaussian_linear", "slcp", "gaussian_mixture", "bernoulli_glm")
BUDGETS = {"10³": 1_000, "10⁴": 10_000, "10⁵": 100_000}
SOURCE = ("https://github.com/sbi-benchmark/results/blob/741183cdece7077453efbedac0fad7e74afa10e5/"
          "benchmarking_sbi/results/main_paper.csv")
ABOUT = ("sbibm's main_paper.csv (the paper's runs; the file last changed in commit 2a49a57 of 2021-01-11): for each "
         "task, budget and method the mean of C2ST over observations 1-10, rounded to 4 decimals "
         "(`python benchmarks/sbibm_published.py main_paper.csv`).")


def published(csv_path: pathlib.Path) -> dict:
    """``{task: {budget: {method: mean C2ST}}}``; every mean is over exactly 10 observations."""
    scores = defaultdict(list)
    with open(csv_path, newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            if row["task"] in TASKS and row["num_simulations"] in BUDGETS and row["C2ST"]:
                scores[row["task"], BUDGETS[row["num_simulations"]], row["algorithm"]].append(float(row["C2ST"]))
    table: dict = {task: {} for task in TASKS}
    for (task, budget, method), values in sorted(scores.items()):
        if len(values) != 10:
            raise ValueError(f"{task} {budget} {method}: {len(values)} observations, not 10")
        table[task].setdefault(str(budget), {})[method] = round(sum(values) / len(values), 4)
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=pathlib.Path, help="main_paper.csv of github.com/sbi-benchmark/results")
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args()
    result = {"source": SOURCE, "about": ABOUT, "c2st": published(args.csv)}
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
