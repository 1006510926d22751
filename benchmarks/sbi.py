"""The simulation-based inference benchmark (Lueckmann et al. 2021, ``sbibm``): invjax's neural
posterior estimation against the reference posteriors, by C2ST, next to sbibm's published numbers.

    pip download sbibm==1.1.0 --no-deps -d benchmarks/data     # reference data (nothing installed)
    python benchmarks/sbi.py                                   # every task, 10^3, 10^4 and 10^5 simulations
    python benchmarks/sbi.py --budgets 1000                    # every task, 10^3 simulations only
    python benchmarks/sbi.py --tasks two_moons --budgets 10000 --observations 1 2

The tasks' priors and simulators are written here in JAX after sbibm's definitions (``sbibm/tasks/*/task.py``
in its wheel); the 10 observations and their 10,000 reference posterior samples are read from the wheel's
data files (a zip archive: no sbibm code is installed, imported or run). For each task and budget: draw that
many ``(theta, x)`` pairs from the prior and the simulator, train an amortized posterior with ``ij.fit``
(settings below, the same for every task), draw 10,000 samples for each observation and compare them with
the reference samples by ``invjax.diagnostics.c2st``, sbibm's metric (z-scored by the reference, scikit-learn's
``MLPClassifier`` recipe of width ``10 D`` trained until its loss stalls, 5 folds; 0.5 = indistinguishable).

Settings, the same for every task: sbi's neural spline flow's structure, 5 steps of ActNorm, a learned linear map
(LU) and a rational-quadratic spline coupling (``ij.nets.Glow(dim, 1, 5, 64, spatial_dims=0,
split_scales=False)``; 8 bins on ``[-6, 6]`` (on ``[-4, 4]`` the flow's KL from gaussian_linear's exact
posterior at 10^5 was twice as large: a spline fixes its ends, so a conditional shift cannot reach past them),
identity tails; sbi's conditioners, residual MLPs of width 64 with 2 blocks, ``ij.layers.ResidualMLP``);
``ij.nets.Standardized`` z-scores parameters and data from the training set; the flow is trained on the raw
parameters and samples outside a box prior are rejected and drawn again (``ij.sample_within``, sbi's way;
``--constrain`` trains through ``ij.nets.Constrained`` instead: two_moons 10^4 0.631 against 0.554). Adam with
gradient clipping at 10, batches of 256, 10% of the pairs held out and evaluated every epoch, in three stages
of learning rate 5e-4, 1e-4 and 2e-5, each from the best flow so far and stopped after 20 (the first) or 10
epochs without a better validation loss, at most 200 epochs each; the best flow is kept. Three such flows
(``--members``, default 3) are trained on the same simulations from their own keys and their mixture is
sampled, ``ij.Ensemble`` (sbi's ``NeuralPosteriorEnsemble``): on gaussian_linear at 10^5, where the posterior is
known, one flow's KL divergence from it was 0.029-0.031 nats and the mixture's of three 0.015
(``benchmarks/sbi_kl.py``); ``--members 1`` gives the earlier one-flow table.

Published numbers: ``benchmarks/results/sbibm_published.json``, every sbibm method's mean C2ST over the 10
observations at 10^3, 10^4 and 10^5 simulations (the paper's ``main_paper.csv`` in github.com/sbi-benchmark/results;
``benchmarks/sbibm_published.py`` computes it). The table sets each row next to the published NPE (sbi's neural
spline flow) and next to the best published method of any kind (the sequential SNLE, SNPE and SNRE included).

Writes ``benchmarks/results/sbi.{json,md}``.
"""

from __future__ import annotations

import argparse
import bz2
import io
import json
import math
import pathlib
import time
import zipfile

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

import invjax as ij
from invjax import diagnostics as dx

HERE = pathlib.Path(__file__).resolve().parent
WHEEL = HERE / "data" / "sbibm-1.1.0-py2.py3-none-any.whl"
# sbibm's published C2ST (mean over the 10 observations of the paper's main_paper.csv), every method:
# {task: {budget: {method: mean}}}, written by sbibm_published.py.
PUBLISHED = {task: {int(budget): methods for budget, methods in budgets.items()} for task, budgets in
             json.loads((HERE / "results" / "sbibm_published.json").read_text())["c2st"].items()}
PUBLISHED_NPE = {task: {budget: methods["NPE"] for budget, methods in budgets.items()}
                 for task, budgets in PUBLISHED.items()}


def best_published(task: str, budget: int) -> tuple[str, float]:
    """The published method with the lowest mean C2ST on the row and that mean."""
    methods = PUBLISHED[task][budget]
    best = min(methods, key=methods.get)
    return best, methods[best]


# Priors and simulators, after sbibm's task definitions.

def _two_moons(key, theta):
    ka, kr = jr.split(key)
    n = theta.shape[0]
    a = jr.uniform(ka, (n,), minval=-math.pi / 2, maxval=math.pi / 2)
    r = 0.1 + 0.01 * jr.normal(kr, (n,))
    p = jnp.stack([jnp.cos(a) * r + 0.25, jnp.sin(a) * r], 1)
    c, s = math.cos(-math.pi / 4), math.sin(-math.pi / 4)
    z0 = c * theta[:, 0] - s * theta[:, 1]
    z1 = s * theta[:, 0] + c * theta[:, 1]
    return p + jnp.stack([-jnp.abs(z0), z1], 1)


def _gaussian_linear(key, theta):
    return theta + math.sqrt(0.1) * jr.normal(key, theta.shape)  # covariance 0.1 I


def _slcp(key, theta):
    n = theta.shape[0]
    s1, s2, rho = theta[:, 2] ** 2, theta[:, 3] ** 2, jnp.tanh(theta[:, 4])
    cov = jnp.stack([jnp.stack([s1**2 + 1e-6, rho * s1 * s2], -1), jnp.stack([rho * s1 * s2, s2**2 + 1e-6], -1)], -2)
    chol = jnp.linalg.cholesky(cov)  # (n, 2, 2)
    eps = jr.normal(key, (n, 4, 2))
    points = theta[:, None, :2] + jnp.einsum("nij,nkj->nki", chol, eps)
    return points.reshape(n, 8)  # 4 points of 2 coordinates, point-major


def _gaussian_mixture(key, theta):
    kc, kn = jr.split(key)
    scale = jnp.where(jr.bernoulli(kc, 0.5, (theta.shape[0], 1)), 1.0, 0.1)
    return theta + scale * jr.normal(kn, theta.shape)


def _glm_files(wheel: pathlib.Path | None = None):
    """sbibm's Bernoulli GLM design matrix ``(100, 10)`` and stimulus ``(100,)`` (torch tensor
    files in its wheel, ``WHEEL`` unless given, which ``--wheel`` sets; read with ``weights_only=True``:
    no code runs)."""
    import torch

    folder = "sbibm/tasks/bernoulli_glm/files/"
    with zipfile.ZipFile(wheel or WHEEL) as archive:
        read = lambda name: torch.load(io.BytesIO(archive.read(folder + name)), weights_only=True).numpy()
        return jnp.asarray(read("design_matrix.pt")), jnp.asarray(read("stimulus_I.pt"))


def _glm_precision():
    """``B``: precision 0.5 for the offset, ``F^T F`` for the filter (a smoothness prior)."""
    m = 9
    d = np.eye(m) - np.eye(m, k=-1)
    f = d @ d + np.diag(np.sqrt(np.arange(m) / m))
    precision = np.zeros((m + 1, m + 1))
    precision[0, 0] = 0.5
    precision[1:, 1:] = f.T @ f
    return precision


def _glm_prior(key, n):
    """``N(0, B^-1)``."""
    precision = _glm_precision()
    m = precision.shape[0] - 1
    chol = np.linalg.cholesky(np.linalg.inv(precision))
    return jr.normal(key, (n, m + 1)) @ jnp.asarray(chol.T, jnp.float32)


def _bernoulli_glm(key, theta):
    design, stimulus = _glm_files()
    spikes = jr.bernoulli(key, jax.nn.sigmoid(theta @ design.T)).astype(jnp.float32)  # (n, 100)
    padded = jnp.pad(spikes, ((0, 0), (8, 8)))
    # torch's conv1d (a cross-correlation) with padding 8, its last 9 outputs: lags 8 ... 16.
    sta = jnp.stack([padded[:, k:k + 100] @ stimulus for k in range(8, 17)], 1)
    return jnp.concatenate([spikes.sum(1, keepdims=True), sta], 1)


def _uniform(low, high, dim):
    return (lambda key, n: jr.uniform(key, (n, dim), minval=low, maxval=high)), (low, high)


TASKS = {  # name: (prior(key, n), bounds or None, simulator(key, theta))
    "two_moons": (*_uniform(-1.0, 1.0, 2), _two_moons),
    "gaussian_linear": (lambda key, n: math.sqrt(0.1) * jr.normal(key, (n, 10)), None, _gaussian_linear),
    "slcp": (*_uniform(-3.0, 3.0, 5), _slcp),
    "gaussian_mixture": (*_uniform(-10.0, 10.0, 2), _gaussian_mixture),
    "bernoulli_glm": (_glm_prior, None, _bernoulli_glm),
}


def reference(wheel: pathlib.Path, task: str, observation: int):
    """``(x_o (1, dim_x), reference samples (10000, dim_theta))`` from sbibm's wheel."""
    folder = f"sbibm/tasks/{task}/files/num_observation_{observation}/"
    with zipfile.ZipFile(wheel) as archive:
        x_o = np.loadtxt(io.StringIO(archive.read(folder + "observation.csv").decode()), delimiter=",", skiprows=1,
                         ndmin=2)
        samples = np.loadtxt(io.StringIO(bz2.decompress(archive.read(folder + "reference_posterior_samples.csv.bz2"))
                                         .decode()), delimiter=",", skiprows=1, ndmin=2)
    return x_o.astype(np.float32), samples.astype(np.float32)


def training_key(task: str, budget: int, seed: int = 0):
    """The key a row trains from: the table's (``seed`` 0) or another one for a seed experiment."""
    return jr.key(budget + len(task)) if seed == 0 else jr.key(1000 + seed)


def simulations(task: str, budget: int, key):
    """The row's ``budget`` simulations ``theta, x`` and the indices of its validation (10%) and training sets."""
    prior, _, simulate = TASKS[task]
    k_prior, k_sim, _, _, k_split = jr.split(key, 5)
    theta = prior(k_prior, budget)
    x = simulate(k_sim, theta)
    order = jr.permutation(k_split, budget)  # one validation set for every stage
    return theta, x, order[: budget // 10], order[budget // 10:]


def task_prior(task: str):
    """The task's prior as an invjax prior (its box bounds the posterior's draws); the draws themselves come from
    ``TASKS`` (the table's simulations)."""
    dim = TASKS[task][0](jr.key(0), 1).shape[1]
    bounds = TASKS[task][1]
    if bounds is not None:
        return ij.BoxUniform(*bounds, dim=dim)
    if task == "bernoulli_glm":
        return ij.Normal(np.zeros(dim), cov=np.linalg.inv(_glm_precision()))
    return ij.Normal(np.zeros(dim), math.sqrt(0.1))


def train_ensemble(task: str, budget: int, key, *, members: int = 3, batch: int = 256, max_epochs: int = 200,
                   hidden: int = 64, rates: tuple = (5e-4, 1e-4, 2e-5), constrain: bool = False, bound: float = 6.0,
                   patience: tuple = (20, 10), bins: int = 8, depth: int = 5, weight_decay: float = 0.0,
                   affine_steps: int = 0):
    """The row's amortized posterior: ``ij.fit_posterior`` on the row's ``budget`` simulations (the defaults are
    the table's settings; the others are for experiments); the seconds and optimisation steps it took; the
    mixture's loss on the validation pairs.

    Training runs in stages, one per learning rate in ``rates``: each stage starts from the best flow so far and
    stops after 20 epochs (the first stage) or 10 epochs (the later ones) without a better validation loss. The
    later, smaller rates remove the noise floor that a constant rate leaves with small batches, without the large
    batches that under-train the tasks that need many steps (two_moons). ``members`` flows from their own keys
    on the same simulations make an ``ij.Ensemble`` (each over-fits in its own way; the mixture averages much of
    that out)."""
    theta, x, held, _ = simulations(task, budget, key)

    def with_affine_front(dim, cond, *, key):  # experiments only: affine coupling steps before the splines
        flow = ij.spline_flow(dim, cond, key=key, depth=depth, hidden=hidden, bins=bins, bound=bound)
        conditioner = lambda i, o, *, key: ij.layers.ResidualMLP(i, o, hidden, key=key)
        front = [ij.nets._glow.glow_step(dim, hidden, key=jr.fold_in(key, i), spatial_dims=0, cond_channels=cond,
                                        make_conditioner=conditioner) for i in range(affine_steps)]
        return eqx.tree_at(lambda f: f.body, flow, ij.layers.Chain([*front, flow.body]))

    start = time.perf_counter()
    posterior = ij.fit_posterior(theta, x, prior=task_prior(task), key=key, members=members, depth=depth,
                                 hidden=hidden, bins=bins, bound=bound, rates=rates, weight_decay=weight_decay,
                                 patience=patience, batch_size=batch, max_epochs=max_epochs, constrain=constrain,
                                 make_flow=with_affine_front if affine_steps else None, devices=jax.devices()[:1])
    seconds = time.perf_counter() - start
    steps = sum(entry[2] for entry in posterior.history)
    if members == 1:
        val = min(entry[3] for entry in posterior.history)
    else:
        val = float(-jnp.mean(eqx.filter_jit(ij.Ensemble.log_prob)(posterior.model, theta[held], x[held])))
    return posterior, seconds, steps, val


def main():
    global WHEEL
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--budgets", nargs="+", type=int, default=[1_000, 10_000, 100_000])
    parser.add_argument("--observations", nargs="+", type=int, default=list(range(1, 11)))
    parser.add_argument("--wheel", type=pathlib.Path, default=WHEEL)
    parser.add_argument("--results", type=pathlib.Path, default=HERE / "results")
    parser.add_argument("--batch", type=int, default=256, help="experiments only: the table uses 256")
    parser.add_argument("--max-epochs", type=int, default=200, help="experiments only: the table uses 200")
    parser.add_argument("--hidden", type=int, default=64, help="experiments only: the table uses 64")
    parser.add_argument("--constrain", action="store_true",
                        help="experiments only: box priors through ij.nets.Constrained; the table rejects samples "
                             "outside the prior instead (sbi's way)")
    parser.add_argument("--bound", type=float, default=6.0,
                        help="experiments only: the splines' range [-bound, bound]; the table uses 6")
    parser.add_argument("--rates", nargs="+", type=float, default=[5e-4, 1e-4, 2e-5],
                        help="experiments only: the learning rate of each stage; the table uses 5e-4 1e-4 2e-5")
    parser.add_argument("--members", type=int, default=3,
                        help="flows in the ensemble (their mixture); the table uses 3")
    parser.add_argument("--seed", type=int, default=0,
                        help="experiments only: S > 0 trains from jr.key(1000 + S) and samples observation i with "
                             "jr.key(1000 S + i) (the classifier too); the table uses 0")
    args = parser.parse_args()
    WHEEL = args.wheel  # the simulator of bernoulli_glm reads its design from the wheel too
    if not args.wheel.exists():
        raise SystemExit(f"{args.wheel} is missing: pip download sbibm==1.1.0 --no-deps -d {args.wheel.parent}")
    out_json = args.results / "sbi.json"
    results = json.loads(out_json.read_text()) if out_json.exists() else {}
    for task in args.tasks:
        for budget in args.budgets:
            posterior, seconds, steps, val = train_ensemble(task, budget, training_key(task, budget, args.seed),
                                                        members=args.members, batch=args.batch,
                                                        max_epochs=args.max_epochs, hidden=args.hidden,
                                                        rates=tuple(args.rates), constrain=args.constrain,
                                                        bound=args.bound)
            scores = {}
            for obs in args.observations:
                x_o, ref = reference(args.wheel, task, obs)
                # Samples outside a box prior are rejected and drawn again (sbi's way).
                seed = 1000 * args.seed + obs
                samples = np.asarray(posterior.sample(jr.key(seed), 10_000, x_o))
                scores[obs] = dx.c2st(ref, samples, seed=seed)  # sbibm's classifier and stopping rule
                print(f"{task} {budget} observation {obs}: C2ST {scores[obs]:.3f}", flush=True)
            results[f"{task}/{budget}"] = {"task": task, "budget": budget, "c2st": scores,
                                          "mean": float(np.mean(list(scores.values()))), "train_s": seconds,
                                          "steps": steps, "val_loss": val,
                                          "settings": {"batch": args.batch, "max_epochs": args.max_epochs,
                                                       "hidden": args.hidden, "rates": args.rates,
                                                       "constrain": args.constrain, "bound": args.bound,
                                                       "members": args.members, "seed": args.seed}}
            print(json.dumps(results[f"{task}/{budget}"]), flush=True)
            args.results.mkdir(parents=True, exist_ok=True)
            out_json.write_text(json.dumps(results, indent=1))
            write_table(results, args.results / "sbi.md")


CAPTION = ("C2ST of invjax's NPE against sbibm's reference posteriors (`python benchmarks/sbi.py`; settings in its "
           "docstring; this 2-core CPU).")


def write_table(results: dict, path: pathlib.Path, caption: str = CAPTION):
    lines = ["| task | simulations | invjax C2ST (mean over observations) | published NPE | at or below | "
             "best published (method) | at or below it | observations | training (s) | steps |",
             "|:---|---:|---:|---:|:---:|---:|:---:|---:|---:|---:|"]
    for key in sorted(results, key=lambda k: (results[k]["task"], results[k]["budget"])):
        r = results[key]
        published = PUBLISHED_NPE[r["task"]][r["budget"]]
        method, best = best_published(r["task"], r["budget"])
        met = "yes" if r["mean"] <= published else "no"
        met_best = "yes" if r["mean"] <= best else "no"
        lines.append(f"| {r['task']} | {r['budget']:,} | {r['mean']:.4f} | {published:.4f} | {met} | "
                     f"{best:.4f} ({method}) | {met_best} | {len(r['c2st'])} | {r['train_s']:.0f} | {r['steps']} |")
    path.write_text(caption + "\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
