"""A 3D imaging posterior, trained online and checked for calibration: vessels seen through a
depth-attenuated blur, in 32^3 volumes.

    python examples/volume_posterior.py                 # the full run (docs/examples/volume_posterior.md)
    python examples/volume_posterior.py --size 64       # the same problem at 64^3
    python examples/volume_posterior.py --quick         # 16^3, a small model, a small check (CI)
    python examples/volume_posterior.py --memory        # compiled memory of a training step, 32^3 to 256^3

The inverse problem: ``y = a(z) * blur(d) + 0.02 noise`` for random densities ``d``, each
four bent tubes (vessels) of random radius and intensity (``examples/_volumes.py``); the
blur is Gaussian and twice as wide along depth ``z`` as across it, and ``a(z)`` attenuates
the signal from 1 at the top to 0.1 at the bottom, so the deep part of a volume is seen
dimly and its posterior must be wide. A conditional 3D Glow behind a 3D convolutional
summary network (``ij.nets.Summarized``) learns ``p(x | y)`` (``x = d - 0.5``) from fresh
simulated pairs at every step (``ij.fit`` given the simulator). The summary network makes
a point estimate (the Tikhonov reconstruction plus a learnt correction) and features; the
Glow models the residual from that estimate given the features (``Recentred``), and the
loss adds a regression of the estimate to ``-log p(x | y)``. On held-out pairs it draws
posterior samples (``invjax.diagnostics.posterior_draws``, a few observations at a time,
kept as mean, standard deviation and scalar summaries) and reports the PSNR of the
posterior mean against the observation's and a Tikhonov reconstruction's, by depth too,
and simulation-based calibration and coverage of eight scalars of each volume.

``--memory`` trains nothing: it compiles the training step's gradient of the default
model at 32^3, 64^3, 128^3 and 256^3 (compile only, nothing is allocated), with the
invertible backward and with plain autodiff (``ij.with_backprop(model, ij.Autodiff())``),
on one device and split over four host devices, each volume over a 2 x 2 grid
(``space=(2, 2)``, as ``ij.fit(..., space=(2, 2))`` trains), and the Glow alone on one
device, and reads XLA's memory analysis. It starts JAX with four host devices itself.

Writes ``examples/out/volume_posterior.png`` (orthogonal slices of truth, observation,
Tikhonov, samples, mean and standard deviation), ``volume_posterior_depth.png`` (error and
uncertainty against depth), ``volume_posterior_mip.png`` (maximum-intensity projections),
``volume_posterior_sbc.png`` and ``volume_posterior_coverage.png``; with ``--memory``
``volume_posterior_memory.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import resource
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from _digits import OUT
from _volumes import Summary, centre_slices, psnr, simulate, tikhonov, vessels

import invjax as ij
from invjax import diagnostics as dx

LEVELS = 2


class Recentred(ij.AbstractFlow):
    """``flow`` run on ``x - cond[:, :1]``: a conditional flow of the residual from a point
    estimate carried by the condition's first channel.

    ``x = cond[:, :1] + r``, ``r`` drawn from ``flow`` given ``cond``: a shift by a function
    of the condition, so ``log p(x | cond) = log p_flow(x - cond[:, :1] | cond)`` (no
    Jacobian). With the summary network in front, ``cond[:, :1]`` is the Tikhonov
    reconstruction plus a learnt correction. A Glow left to find the posterior mean by
    itself finds it slowly (its couplings shift half of the channels at a time, through
    conditioners that start at zero); recentred, it starts from the classical estimate and
    models what is left, while the estimate learns as a regression does (``loss``).

    Shapes: ``x``: ``(B, 1, S, S, S)``, ``cond``: ``(B, K, S, S, S)``.
    """

    flow: ij.AbstractFlow

    @property
    def base(self):
        return self.flow.base

    def forward(self, x, cond=None):
        return self.flow.forward(x - cond[:, :1], cond)

    def inverse_and_log_det(self, z, cond=None):
        r, logdet = self.flow.inverse_and_log_det(z, cond)
        return r + cond[:, :1], logdet

    def initialize(self, x, cond=None):
        return eqx.tree_at(lambda m: m.flow, self, self.flow.initialize(x - cond[:, :1], cond))


def build_model(key, *, depth, hidden, cond_channels, summary_hidden):
    """A conditional 3D Glow on ``(B, 1, S, S, S)`` (``LEVELS`` levels of ``depth`` steps),
    recentred on the condition's first channel, behind the summary network that maps one
    observation ``(1, S, S, S)`` to a ``cond_channels``-channel feature map of the same
    size (the condition)."""
    k_flow, k_summary = jr.split(key)
    flow = ij.nets.Glow(1, levels=LEVELS, depth=depth, hidden=hidden, spatial_dims=3, cond_channels=cond_channels,
                        cond_spatial=True, key=k_flow)
    return ij.nets.Summarized(Recentred(flow), Summary(cond_channels, summary_hidden, key=k_summary))


SPREAD = 0.05  # the standard deviation the recentring point's regression term assumes


def loss(model, x, y):
    """The training loss: ``-log p(x | y)`` per volume, plus a regression of the recentring
    point ``m(y)`` (the condition's first channel) onto ``x``, ``|m(y) - x|^2 / (2 SPREAD^2)``.

    Any ``m(y)`` gives a valid model of ``p(x | y)`` (the flow models ``x - m(y)``), so the
    regression term does not bias the posterior; it trains ``m(y)`` towards the posterior
    mean, the point from which the residual is simplest, with the direct gradient of a
    regression. The summary network runs once for both terms.
    """
    cond = model.condition(y)
    nll = -jnp.mean(model.flow.log_prob(x, cond))
    return nll + jnp.mean(jnp.sum((cond[:, :1] - x) ** 2, axis=(1, 2, 3, 4))) / (2 * SPREAD**2)


def summaries(v):
    """Scalars checked for calibration, ``(..., 8)`` for densities ``(..., 1, S, S, S)``: the mean
    of the top, middle and bottom third along depth; the mean of a 4^3 block (scaled with
    the side) on the central column near the top, in the middle and near the bottom; two
    voxels, one shallow and one deep, off the centre."""
    v = np.asarray(v)[..., 0, :, :, :]
    s = v.shape[-1]
    third, b, c = s // 3, s // 8, s // 2
    slabs = [v[..., :third, :, :], v[..., third:s - third, :, :], v[..., s - third:, :, :]]
    blocks = [v[..., z - b // 2:z + b // 2, c - b // 2:c + b // 2, c - b // 2:c + b // 2] for z in (b, c, s - b)]
    voxels = [v[..., s // 4, s // 4, 3 * s // 4], v[..., 3 * s // 4, 3 * s // 4, s // 4]]
    return np.stack([a.mean(axis=(-3, -2, -1)) for a in slabs + blocks] + voxels, axis=-1)


NAMES = ["mean, top third", "mean, middle third", "mean, bottom third", "block near the top", "block, centre",
         "block near the bottom", "voxel, shallow", "voxel, deep"]


def posterior(model, y, *, draws, key, chunk, keep):
    """Posterior draws of the density for every observation, ``chunk`` observations at a time,
    reduced on the way.

    A 32^3 volume is 128 KiB, so ``N x draws`` of them (100 x 49: 640 MiB) are better not
    kept: each chunk's draws become their mean, standard deviation and ``summaries``, and
    the first ``keep`` draws of the first two observations are kept for the pictures.

    Returns:
        ``(mean (N, 1, S, S, S), std (N, 1, S, S, S), summaries (N, draws, 8), samples (2, keep, 1, S, S, S))``,
        densities (``x + 0.5``).
    """
    means, stds, scalars, samples = [], [], [], None
    for start in range(0, len(y), chunk):
        # One observation's draws depend on fold_in(key, its index), so the chunks share a
        # key and each shifts it: the draws do not depend on the chunk size.
        part = y[start:start + chunk]
        d = dx.posterior_draws(model, part, draws, part.shape[1:], key=jr.fold_in(key, start),
                               batch_size=chunk * draws)
        d = np.asarray(d) + 0.5
        means.append(d.mean(axis=1))
        stds.append(d.std(axis=1))
        scalars.append(summaries(d))
        if samples is None:
            samples = d[:2, :keep]
    return np.concatenate(means), np.concatenate(stds), np.concatenate(scalars), samples


def depth_profile(v):
    """The mean over each depth plane: ``(N, 1, D, H, W)`` -> ``(D,)``."""
    return np.asarray(v).mean(axis=(0, 1, 3, 4))


def show_slices(truth, y, baseline, samples, mean, std, weight, path, title):
    """The figure: for two volumes, their axial, coronal and sagittal centre slices (columns)
    of truth, observation, Tikhonov, two posterior samples, posterior mean and standard
    deviation (rows). Densities share one colour scale; the observation (dimmed by the
    attenuation) has its own, as does the standard deviation."""
    import matplotlib.pyplot as plt

    rows = [("truth", truth, "magma", 1.0), ("observation y", y, "magma", None),
            (f"Tikhonov (weight {weight:g})", baseline, "magma", 1.0),
            ("posterior sample", samples[:, 0], "magma", 1.0), ("posterior sample", samples[:, 1], "magma", 1.0),
            ("posterior mean", mean, "magma", 1.0), ("posterior std", std, "viridis", float(np.max(std[:2])))]
    views = ("axial (mid-depth)", "coronal (depth down)", "sagittal (depth down)")
    figure, axes = plt.subplots(len(rows), 6, figsize=(9.6, 1.55 * len(rows)), squeeze=False)
    for r, (name, volumes, cmap, top) in enumerate(rows):
        for v in range(2):
            vmax = top if top is not None else float(np.max(volumes[v]))
            for s, plane in enumerate(centre_slices(volumes[v, 0])):
                axis = axes[r, 3 * v + s]
                axis.imshow(plane, cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest")
                axis.set_xticks([])
                axis.set_yticks([])
                if r == 0:
                    axis.set_title(f"volume {v + 1}, {views[s]}", fontsize=6.5)
        axes[r, 0].set_ylabel(name, fontsize=7)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    print(f"wrote {path}")


def show_projections(truth, baseline, samples, mean, path):
    """Maximum-intensity projections along depth (seen from the top) and along height (from
    the side, depth down) of two volumes: truth, Tikhonov, a sample, the posterior mean."""
    import matplotlib.pyplot as plt

    rows = [("truth", truth[:2]), ("Tikhonov", baseline[:2]), ("posterior sample", samples[:, 0]),
            ("posterior mean", mean[:2])]
    figure, axes = plt.subplots(len(rows), 4, figsize=(6.4, 1.6 * len(rows)), squeeze=False)
    for r, (name, volumes) in enumerate(rows):
        for v in range(2):
            for p, along in enumerate((0, 1)):
                axis = axes[r, 2 * v + p]
                axis.imshow(np.clip(volumes[v, 0], 0, None).max(axis=along), cmap="magma", vmin=0.0, vmax=1.0)
                axis.set_xticks([])
                axis.set_yticks([])
                if r == 0:
                    axis.set_title(f"volume {v + 1}, {'from the top' if along == 0 else 'from the side'}",
                                   fontsize=6.5)
        axes[r, 0].set_ylabel(name, fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    print(f"wrote {path}")


def show_depth(truth, y, baseline, mean, std, path):
    """Root-mean-square error of the observation, Tikhonov and the posterior mean, and the
    posterior standard deviation (root of the mean variance), against depth."""
    import matplotlib.pyplot as plt

    rmse = lambda v: np.sqrt(depth_profile((v - truth) ** 2))
    figure, axis = plt.subplots(figsize=(5.2, 3.4))
    depth = np.arange(truth.shape[2])
    axis.plot(depth, rmse(y), ":", label="observation y")
    axis.plot(depth, rmse(baseline), "--", label="Tikhonov")
    axis.plot(depth, rmse(mean), "-", label="posterior mean")
    axis.plot(depth, np.sqrt(depth_profile(std**2)), "-.", label="posterior std")
    axis.set(xlabel="depth (voxels; attenuation grows downwards)", ylabel="root mean square", yscale="log",
             title="Error and uncertainty against depth")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    print(f"wrote {path}")


def by_thirds(error):
    """PSNR (dB) in the top, middle and bottom third along depth, from squared errors ``(N, 1, S, S, S)``."""
    s = error.shape[2]
    cuts = [(0, s // 3), (s // 3, s - s // 3), (s - s // 3, s)]
    return [float(np.mean(10 * np.log10(1.0 / error[:, :, a:b].mean(axis=(1, 2, 3, 4))))) for a, b in cuts]


def train_and_check(args):
    began = time.perf_counter()
    k_model, k_fit, k_test, k_post, k_prior = jr.split(jr.key(0), 5)
    size = args.size
    model = build_model(k_model, depth=args.depth, hidden=args.hidden, cond_channels=args.cond,
                        summary_hidden=args.summary_hidden)
    simulator = jax.jit(functools.partial(simulate, size=size), static_argnums=1)
    optimizer = optax.chain(optax.clip_by_global_norm(10.0),
                            optax.adam(optax.warmup_cosine_decay_schedule(0.0, args.lr, 100, max(args.steps, 101))))
    model, history = ij.fit(model, simulator, key=k_fit, steps=args.steps, batch_size=args.batch,
                            optimizer=optimizer, progress=args.progress, checkpoint=args.checkpoint,
                            checkpoint_every=100, loss=loss)
    trained = time.perf_counter() - began
    losses = history["train"]
    print(f"trained {args.steps} steps of batch {args.batch} at {size}^3 in {trained:.0f} s; training loss "
          f"(-log p(x|y) + regression term, nats per volume), last 100 steps: {np.mean(losses[-100:]):.1f}",
          flush=True)

    x, y = simulator(k_test, args.test)
    truth, y_np = np.asarray(x) + 0.5, np.asarray(y)
    held_out, estimate = eqx.filter_jit(lambda m, x, y: (-jnp.mean(m.log_prob(x, y)), m.condition(y)[:, :1]))(
        model, x, y)
    print(f"held-out -log p(x|y): {float(held_out):.1f} nats per volume ({float(held_out) / x[0].size:.3f} per voxel)")
    sampling = time.perf_counter()
    mean, std, drawn, samples = posterior(model, y, draws=args.draws, key=k_post, chunk=args.chunk, keep=2)
    print(f"{args.draws} draws for each of {args.test} observations in {time.perf_counter() - sampling:.0f} s",
          flush=True)

    weights = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
    solve = jax.jit(tikhonov)
    baselines = {w: np.asarray(solve(y, w)) for w in weights}
    best = max(weights, key=lambda w: psnr(baselines[w], truth))  # the baseline's best case, chosen on the test set
    baseline = baselines[best]
    rows = {"observation y": y_np, f"Tikhonov (best weight {best:g})": baseline,
            "point estimate m(y) (the flow's centre)": np.asarray(estimate) + 0.5, "posterior mean": mean}
    results = {name: {"psnr": psnr(v, truth), "thirds": by_thirds((v - truth) ** 2)} for name, v in rows.items()}
    for name, r in results.items():
        print(f"PSNR {name}: {r['psnr']:.2f} dB (top, middle, bottom third: "
              f"{', '.join(f'{p:.2f}' for p in r['thirds'])})")
    spread = [float(np.sqrt(np.mean(std[:, :, a:b] ** 2))) for a, b in
              ((0, size // 3), (size // 3, size - size // 3), (size - size // 3, size))]
    print(f"posterior std (root mean variance), top, middle, bottom third: {', '.join(f'{s:.3f}' for s in spread)}")

    target = summaries(truth)
    calibration = dx.sbc(drawn, target, confidence=0.95)
    coverage = dx.coverage(drawn, target, levels=(0.5, 0.8, 0.9, 0.95))
    prior = np.concatenate([summaries(vessels(jr.fold_in(k_prior, i), 100, size)) for i in range(10)]).var(axis=0)
    contraction = dx.contraction(drawn, target, prior)
    outside = [NAMES[i] for i in np.flatnonzero(calibration["outside"])]
    print(f"SBC ({len(NAMES)} quantities, 95% band): {'calibrated' if calibration['calibrated'] else 'miscalibrated'}"
          f" ({len(outside)} outside{': ' + ', '.join(outside) if outside else ''})")
    levels = ", ".join(f"{lv:.2f}: {ob:.3f}" for lv, ob in zip(coverage["levels"], coverage["observed"].mean(1),
                                                               strict=True))
    print(f"coverage (level: observed, mean over quantities): {levels}")
    print(f"coverage at {coverage['levels'][1]:.2f} per quantity: "
          f"{np.round(coverage['observed'][1], 2).tolist()}")
    print(f"contraction (mean over pairs): {np.round(contraction['contraction'].mean(0), 2).tolist()}")

    OUT.mkdir(parents=True, exist_ok=True)
    show_slices(truth[:2], y_np[:2], baseline[:2], samples, mean[:2], std[:2], best, OUT / "volume_posterior.png",
                f"Vessels behind a depth-attenuated blur, {size}^3: conditional 3D Glow posterior (invjax)")
    show_depth(truth, y_np, baseline, mean, std, OUT / "volume_posterior_depth.png")
    show_projections(truth, baseline, samples, mean, OUT / "volume_posterior_mip.png")
    for name, figure in (("sbc", dx.plot_sbc(calibration, NAMES)), ("coverage", dx.plot_coverage(coverage, NAMES))):
        figure.savefig(OUT / f"volume_posterior_{name}.png", dpi=80)
        print(f"wrote {OUT / f'volume_posterior_{name}.png'}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"total {time.perf_counter() - began:.0f} s, peak resident memory {peak:.2f} GiB")


def step_memory(model, batch, size, mesh=None, *, flow_only=False):
    """XLA's compiled memory of one training step's loss and gradient, compile only.

    ``mesh``: ``None`` for one device, or an :func:`invjax.device_mesh` over which every
    volume (and its observation) is split as ``ij.fit`` splits it; the step is traced under
    ``jax.set_mesh`` as ``ij.fit`` traces it. ``flow_only``: the Glow alone, its condition
    an input ``(B, K, S, S, S)`` and its loss ``-log p(x | cond)``, which is all that the
    backward changes (the summary network is differentiated by autodiff either way).
    Returns bytes per device: temporaries, and the total (arguments + outputs +
    temporaries, less what aliases).
    """
    shape = (batch, 1, size, size, size)
    if flow_only:
        model = model.flow.flow  # Summarized -> Recentred -> Glow
        objective, second = (lambda m, x, c: -jnp.mean(m.log_prob(x, c))), (batch, model.cond_channels, *shape[2:])
    else:
        objective, second = loss, shape
    params, static = eqx.partition(model, eqx.is_inexact_array)
    if mesh is None:
        inputs = [jax.ShapeDtypeStruct(s, jnp.float32) for s in (shape, second)]
        params = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), params)
    else:
        split = jax.NamedSharding(mesh, jax.sharding.PartitionSpec("batch", None, "space", "space2"))
        inputs = [jax.ShapeDtypeStruct(s, jnp.float32, sharding=split) for s in (shape, second)]
        same = jax.NamedSharding(mesh, jax.sharding.PartitionSpec())
        params = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=same), params)

    def step_loss(params, x, y):
        return objective(eqx.combine(params, static), x, y)

    with jax.set_mesh(mesh) if mesh is not None else contextlib.nullcontext():
        compiled = jax.jit(jax.value_and_grad(step_loss)).lower(params, *inputs).compile()
    m = compiled.memory_analysis()
    total = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
    return {"temp": m.temp_size_in_bytes, "total": total, "all_gathers": compiled.as_text().count(" all-gather(")}


def memory_study(args):
    """The compiled memory of the default model's training step at ``args.sizes``: invertible
    and autodiff, one device and four (each volume over a 2 x 2 grid). Writes
    ``volume_posterior_memory.{json,md,png}``."""
    sizes = args.sizes or ([16, 32] if args.quick else [32, 64, 128, 256])
    model = build_model(jr.key(0), depth=args.depth, hidden=args.hidden, cond_channels=args.cond,
                        summary_hidden=args.summary_hidden)
    mesh = ij.device_mesh(jax.devices()[:4], space=(2, 2))
    rows = []
    for size in sizes:
        row = {"size": size}
        for name, backprop in (("invertible", ij.Invertible()), ("autodiff", ij.Autodiff())):
            variant = ij.with_backprop(model, backprop)
            start = time.perf_counter()
            row[name] = step_memory(variant, args.batch, size)
            row[f"{name}_split"] = step_memory(variant, args.batch, size, mesh)
            row[f"{name}_glow"] = step_memory(variant, args.batch, size, flow_only=True)
            row[f"{name}_compile_s"] = round(time.perf_counter() - start, 1)
        rows.append(row)
        mib = lambda r: r["temp"] / 2**20  # noqa: E731
        print(f"{size}^3, batch {args.batch}: temporaries {mib(row['invertible']):.1f} MiB invertible, "
              f"{mib(row['autodiff']):.1f} MiB autodiff; split over 2 x 2 devices, per device "
              f"{mib(row['invertible_split']):.1f} and {mib(row['autodiff_split']):.1f} MiB; the Glow alone "
              f"{mib(row['invertible_glow']):.1f} and {mib(row['autodiff_glow']):.1f} MiB", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    config = {"depth": args.depth, "hidden": args.hidden, "cond": args.cond, "summary_hidden": args.summary_hidden,
              "levels": LEVELS, "batch": args.batch, "devices": jax.device_count(),
              "platform": jax.devices()[0].platform}
    name = OUT / "volume_posterior_memory"
    name.with_suffix(".json").write_text(json.dumps({"config": config, "rows": rows}, indent=1))
    text = memory_table(config, rows)
    name.with_suffix(".md").write_text(text)
    print(text, end="")
    print(f"wrote {name.with_suffix('.json')} and {name.with_suffix('.md')}")
    plot_memory(rows, args.batch, name.with_suffix(".png"))


def memory_table(config, rows) -> str:
    """The memory study's table (``volume_posterior_memory.md``) from its JSON's config and rows."""
    gib = lambda b: f"{b / 2**30:.2f} GiB" if b >= 2**30 else f"{b / 2**20:.1f} MiB"  # noqa: E731
    lines = [f"Compiled memory of one training step (loss and gradient) of the volume posterior's model (Glow "
             f"{config['levels']} levels, depth {config['depth']}, hidden {config['hidden']}, {config['cond']}-channel "
             f"condition; summary network hidden {config['summary_hidden']}), batch {config['batch']}, XLA's "
             "memory_analysis() on "
             f"{config['platform']}; `python examples/volume_posterior.py --memory`. Temporaries (what the step needs "
             "beyond its inputs and outputs) of the whole model and of the Glow alone (its condition an input) on "
             "one device, and of the whole model split over 4 devices (each volume over a 2 x 2 grid, "
             "`space=(2, 2)`), per device, with the total (arguments + outputs + temporaries) per device.", "",
             "| volume | invertible | autodiff | autodiff / invertible | Glow alone, invertible | "
             "Glow alone, autodiff | invertible, per device of 4 | autodiff, per device of 4 | "
             "invertible total, per device of 4 |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['size']}^3 | {gib(r['invertible']['temp'])} | {gib(r['autodiff']['temp'])} | "
                     f"{r['autodiff']['temp'] / r['invertible']['temp']:.1f}x | {gib(r['invertible_glow']['temp'])} | "
                     f"{gib(r['autodiff_glow']['temp'])} | {gib(r['invertible_split']['temp'])} | "
                     f"{gib(r['autodiff_split']['temp'])} | {gib(r['invertible_split']['total'])} |")
    gathers = sum(r[k]["all_gathers"] for r in rows for k in ("invertible_split", "autodiff_split"))
    lines += ["", f"All-gathers in the split programs: {gathers}."]
    return "\n".join(lines) + "\n"


def plot_memory(rows, batch, path):
    """Log-log: compiled temporaries against the volume's side, the six variants."""
    import matplotlib.pyplot as plt

    sizes = [r["size"] for r in rows]
    figure, axis = plt.subplots(figsize=(5.6, 3.9))
    for key, style, label in (("invertible", "o-C0", "invertible, 1 device"),
                              ("autodiff", "s--C1", "autodiff, 1 device"),
                              ("invertible_glow", "o:C0", "the Glow alone, invertible"),
                              ("autodiff_glow", "s:C1", "the Glow alone, autodiff"),
                              ("invertible_split", "o-C2", "invertible, per device of 4 (2 x 2)"),
                              ("autodiff_split", "s--C3", "autodiff, per device of 4 (2 x 2)")):
        axis.plot(sizes, [r[key]["temp"] / 2**30 for r in rows], style, label=label,
                  markerfacecolor="none" if "glow" in key else None)
    axis.set(xscale="log", yscale="log", xlabel="volume side (voxels)", ylabel="compiled temporaries (GiB)",
             title=f"3D Glow + summary network, training step, batch {batch}")
    axis.minorticks_off()
    axis.set_xticks(sizes, [f"{s}^3" for s in sizes])
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    print(f"wrote {path}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=32, help="the volume's side, a multiple of 8 (16 with --quick)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--depth", type=int, default=4, help="Glow steps per level")
    p.add_argument("--hidden", type=int, default=16, help="channels of the couplings' conditioners")
    p.add_argument("--cond", type=int, default=1, help="channels of the condition at full resolution")
    p.add_argument("--summary-hidden", type=int, default=16, help="channels of the summary network")
    p.add_argument("--test", type=int, default=100, help="held-out pairs for the diagnostics")
    p.add_argument("--draws", type=int, default=49, help="posterior draws per held-out pair")
    p.add_argument("--chunk", type=int, default=10, help="observations per posterior_draws call")
    p.add_argument("--checkpoint", default=None,
                   help="save training here every 100 steps and resume from it if it exists")
    p.add_argument("--progress", action="store_true", help="a progress bar while training")
    p.add_argument("--memory", action="store_true", help="the memory study instead of training (see above)")
    p.add_argument("--sizes", type=int, nargs="+", help="volume sides of the memory study")
    p.add_argument("--quick", action="store_true", help="16^3, at most 20 steps, depth 1, hidden 8, 8 held-out "
                                                        "pairs, 9 draws; with --memory 16^3 and 32^3 (CI)")
    args = p.parse_args()
    if args.memory:
        # Four host devices for the split; set before JAX starts its backends. Nothing runs,
        # so XLA's backend optimisation can go (it does not change buffer assignment).
        jax.config.update("jax_num_cpu_devices", 4)
        if args.quick:
            args.depth, args.hidden, args.summary_hidden = 1, 8, 8
        memory_study(args)
        return
    if args.quick:
        args.size, args.steps, args.depth, args.hidden, args.summary_hidden = 16, min(args.steps, 20), 1, 8, 8
        args.test, args.draws, args.chunk = 8, 9, 4
    if args.size % 8 or args.test % args.chunk:
        p.error(f"--size must be a multiple of 8 and --test of --chunk; got {args.size}, {args.test}, {args.chunk}")
    train_and_check(args)


if __name__ == "__main__":
    main()
