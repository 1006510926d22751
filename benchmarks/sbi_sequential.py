"""Sequential rounds on sbibm, per observation: ``ij.fit_sequential`` (truncated proposals, TSNPE) by C2ST.

    python benchmarks/sbi_sequential.py                                  # every task, 10^3 and 10^4, observations 1-5
    python benchmarks/sbi_sequential.py --tasks slcp --budgets 1000 --observations 1

The paper ran its sequential methods (SNPE, SNLE, SNRE) per observation, so this does too: for each
task, budget and observation, ``ij.fit_sequential`` spends the budget over ``--rounds`` rounds (round 1
from the prior, later ones from the prior restricted to the current posterior's highest-density region
at the observation), each round ``ij.fit_posterior`` with the settings of ``benchmarks/sbi.py`` (the
amortized table's), then 10,000 draws scored by C2ST against sbibm's reference posterior as in
``sbi.py``. The tasks, priors, simulators and reference data are ``sbi.py``'s (its wheel must be
there: ``pip download sbibm==1.1.0 --no-deps -d benchmarks/data``).

Writes ``benchmarks/results/sbi_sequential.json`` (one entry per task, budget and observation, added to
what is there) and ``sbi_sequential.md``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import jax.random as jr
import numpy as np

import invjax as ij
from invjax import diagnostics as dx
import sbi


def run(task: str, budget: int, observation: int, *, rounds: int, members: int, wheel) -> dict:
    prior, simulate = sbi.task_prior(task), sbi.TASKS[task][2]
    x_o, reference = sbi.reference(wheel, task, observation)
    start = time.perf_counter()
    posterior = ij.fit_sequential(simulate, x_o[0], prior=prior, key=jr.key(10_000 * observation + budget),
                                  budget=budget, rounds=rounds, members=members, devices=jax.devices()[:1])
    seconds = time.perf_counter() - start
    samples = np.asarray(posterior.sample(jr.key(observation), 10_000, x_o))
    return {"task": task, "budget": budget, "observation": observation, "rounds": rounds, "members": members,
            "c2st": dx.c2st(reference, samples, seed=observation), "train_s": seconds}


def write_table(results: dict, path):
    rows = {}
    for r in results.values():
        rows.setdefault((r["task"], r["budget"]), []).append(r)
    lines = ["| task | simulations | observations | invjax sequential C2ST (mean) | rounds | flows per round | "
             "training (s, mean) |", "|:---|---:|---:|---:|---:|---:|---:|"]
    for (task, budget), rs in sorted(rows.items()):
        lines.append(f"| {task} | {budget:,} | {', '.join(str(r['observation']) for r in sorted(rs, key=lambda r: r['observation']))} | "
                     f"{np.mean([r['c2st'] for r in rs]):.4f} | {rs[0]['rounds']} | {rs[0]['members']} | "
                     f"{np.mean([r['train_s'] for r in rs]):.0f} |")
    path.write_text("C2ST of invjax's sequential rounds (`ij.fit_sequential`, one run per observation) against sbibm's "
                    "reference posteriors; `python benchmarks/sbi_sequential.py`.\n\n" + "\n".join(lines) + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=list(sbi.TASKS), choices=list(sbi.TASKS))
    p.add_argument("--budgets", nargs="+", type=int, default=[1000, 10_000])
    p.add_argument("--observations", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--members", type=int, default=3, help="flows per round's ensemble (the amortized table's 3)")
    p.add_argument("--wheel", type=pathlib.Path, default=sbi.WHEEL)
    p.add_argument("--results", type=pathlib.Path, default=sbi.HERE / "results")
    args = p.parse_args()
    sbi.WHEEL = args.wheel  # bernoulli_glm's simulator reads its design from the wheel
    out = args.results / "sbi_sequential.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    for task in args.tasks:
        for budget in args.budgets:
            for obs in args.observations:
                r = run(task, budget, obs, rounds=args.rounds, members=args.members, wheel=args.wheel)
                results[f"{task}/{budget}/{obs}"] = r
                print(json.dumps(r), flush=True)
                out.write_text(json.dumps(results, indent=1) + "\n")
                write_table(results, args.results / "sbi_sequential.md")


if __name__ == "__main__":
    main()
