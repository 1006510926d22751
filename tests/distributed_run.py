"""Run by tests/test_distributed.py: one process of a ``jax.distributed`` run on this
machine (2 processes x 2 host CPU devices, JAX's gloo collectives), or the one-device
reference (``process_id = -1``). Results go to ``<out>/<role>-<process>.json``.

    python tests/distributed_run.py <role> <process_id> <port> <out>

Roles: ``fit`` (``ij.fit`` with space 1, 2 and 4, losses and gradients; the simulator
path; bad set-ups; ``ij.fit_vi`` with space 1, 2 and 4, and amortized), ``resume`` (a
simulator run with checkpoints; with ``INVJAX_KILL_AT=<step>`` process 1 SIGKILLs itself
when it draws that step's pairs).
"""

import json
import os
import signal
import sys

import jax

ROLE, PROCESS, PORT, OUT = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if PROCESS >= 0:  # what each process of a multi-host launch runs (docs/scaling.md)
    jax.config.update("jax_num_cpu_devices", 2)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{PORT}", num_processes=2, process_id=PROCESS)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402

import invjax as ij  # noqa: E402
from invjax import _loop  # noqa: E402
from invjax._batches import array_batches  # noqa: E402

KEY = jr.key(3)
SHAPE = (1, 32, 8)
X, COND = jr.normal(jr.key(1), (16, *SHAPE)), jr.normal(jr.key(2), (16, *SHAPE))


def flow():
    return ij.nets.Glow(1, 2, 1, 8, cond_channels=1, cond_spatial=True, key=jr.key(0))


def nll(f, x, cond):
    return -jnp.mean(f.log_prob(x, cond))


def simulate(key, n):
    return jr.normal(key, (n, *SHAPE)), jr.normal(jr.fold_in(key, 1), (n, *SHAPE))


def shares(parts):
    """Each process's own arrays: share ``p`` of ``parts`` of the data set."""
    return [(X[p::parts], COND[p::parts]) for p in range(parts)]


def global_batches(parts, steps, batch_size=8):
    """The global batches a run over ``parts`` shares sees, assembled here in one process
    (``fit`` draws each share with its own key: ``fold_in(shuffle_key, part)``)."""
    shuffle_key = jr.split(KEY)[1]
    streams = [array_batches(x, c, batch_size // parts, shuffle_key if parts == 1 else jr.fold_in(shuffle_key, p))(0)
               for p, (x, c) in enumerate(shares(parts))]
    out = []
    for _ in range(steps):
        pieces = [next(s) for s in streams]
        out.append(tuple(jnp.concatenate(parts_, 0) for parts_ in zip(*pieces, strict=True)))
    return out


def simulated_global_batches(parts, steps, batch_size=8):
    shuffle_key = jr.split(KEY)[1]
    keys = [shuffle_key if parts == 1 else jr.fold_in(shuffle_key, p) for p in range(parts)]
    return [tuple(jnp.concatenate(z, 0) for z in zip(*[simulate(jr.fold_in(k, i), batch_size // parts) for k in keys],
                                                      strict=True)) for i in range(steps)]


def vi_runs(devices, spaces):
    """``ij.fit_vi``'s losses: unconditional on ``(1, 32, 16)`` samples for each ``space``, and
    amortized on vectors from one observation (every process picks it, whatever its key: the
    one-device run sees the same batches)."""
    target = lambda x: -0.5 * jnp.sum((x - 1.0) ** 2, axis=(1, 2, 3))
    out = {}
    for space in spaces:
        _, history = ij.fit_vi(ij.nets.Glow(1, 2, 1, 8, key=jr.key(0)), target, (1, 32, 16), key=KEY, steps=3,
                               batch_size=4, progress=False, devices=devices, space=space)
        out[f"vi_{space}"] = history["train"]
    posterior = ij.nets.RealNVP(2, 2, 8, cond_channels=1, key=jr.key(0))
    _, history = ij.fit_vi(posterior, lambda x, y: -0.5 * jnp.sum((x - y) ** 2, axis=1), (2,), jnp.ones((1, 1)),
                           key=KEY, steps=3, batch_size=4, progress=False, devices=devices)
    out["vi_amortized"] = history["train"]
    return out


def gradient(f, batch):
    f = f.initialize(*batch)
    loss, grads = eqx.filter_value_and_grad(nll)(f, *batch)
    return float(loss), [np.asarray(g).ravel().tolist() for g in jax.tree.leaves(eqx.filter(grads, eqx.is_array))]


def fit_role():
    out = {"process_count": jax.process_count(), "devices": len(jax.devices())}
    if PROCESS < 0:  # the one-device reference of every run below
        one = jax.devices()[:1]
        for space, parts in ((1, 2), (2, 2), (4, 1)):
            batches = global_batches(parts, 3)
            _, history = ij.fit(flow(), iter(batches), key=KEY, steps=3, batch_size=8, progress=False, devices=one)
            out[f"fit_{space}"] = history["train"]
            firsts = [(x[: 8 // parts], c[: 8 // parts]) for x, c in shares(parts)]  # what each process places
            out[f"grad_{space}"] = gradient(flow(), tuple(jnp.concatenate(a, 0) for a in zip(*firsts, strict=True)))
        _, history = ij.fit(flow(), iter(simulated_global_batches(2, 6)), key=KEY, steps=6, batch_size=8,
                            progress=False, devices=one)
        out["simulator"] = history["train"]
        return out | vi_runs(one, (1,))
    for space in (1, 2, 4):
        mesh = ij.device_mesh(space=space)
        part, parts = ij.process_part(mesh)
        x, cond = shares(parts)[part]  # this process's own data, nothing else
        _, history = ij.fit(flow(), x, cond, key=KEY, steps=3, batch_size=8, progress=False, space=space)
        out[f"fit_{space}"] = history["train"]
        out[f"part_{space}"] = [part, parts]
        batch = ij.shard_batch((x[: 8 // parts], cond[: 8 // parts]), mesh, local=True)
        out[f"grad_{space}"] = gradient(ij.replicate(flow(), mesh), batch)
        out[f"sharding_{space}"] = str(batch[0].sharding.spec)
    # The simulator: each process draws its own pairs (recorded to compare across processes).
    drawn = []

    def recording(key, n):
        pairs = simulate(key, n)
        drawn.append(float(jnp.sum(pairs[0])))
        return pairs

    _, history = ij.fit(flow(), recording, key=KEY, steps=6, batch_size=8, progress=False, space=2)
    out["simulator"], out["drawn"] = history["train"], drawn
    errors = []
    x, cond = shares(2)[jax.process_index()]
    calls = (lambda: ij.fit(flow(), x, cond, key=KEY, steps=1, progress=False, batch_size=6),  # 4 batch shards
             lambda: ij.fit(flow(), x, cond, key=KEY, steps=1, progress=False, space=8),  # more than 4 devices
             lambda: ij.fit(flow(), x, cond, key=KEY, steps=1, progress=False, devices=jax.local_devices()),
             lambda: ij.fit(flow(), x[:, :, : 16 if PROCESS else 32], cond[:, :, : 16 if PROCESS else 32], key=KEY,
                            steps=1, progress=False, batch_size=8))  # the processes' shapes differ
    for call in calls:
        try:
            call()
            errors.append(None)
        except ValueError as error:
            errors.append(str(error))
    out["errors"] = errors
    return out | vi_runs(None, (1, 2, 4))


def resume_role():
    kill_at = int(os.environ.get("INVJAX_KILL_AT", "-1"))
    steps = [0]

    def simulate_or_die(key, n):
        if PROCESS == 1 and steps[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # mid-run, with no warning: like a lost node
        steps[0] += 1
        return simulate(key, n)

    writes = [0]
    save = _loop.save_checkpoint

    def counted(*args, **kwargs):
        writes[0] += 1
        return save(*args, **kwargs)

    _loop.save_checkpoint = counted
    _, history = ij.fit(flow(), simulate_or_die, key=KEY, steps=6, batch_size=8, progress=False, space=2,
                        checkpoint=os.path.join(OUT, "run.eqx"), checkpoint_every=2)
    return {"train": history["train"], "writes": writes[0]}


if __name__ == "__main__":
    result = fit_role() if ROLE == "fit" else resume_role()
    name = os.path.join(OUT, f"{ROLE}-{PROCESS}.json")
    with open(name + ".tmp", "w") as f:
        json.dump(result, f)
    os.replace(name + ".tmp", name)
