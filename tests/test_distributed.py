"""Several processes: ``ij.fit`` and ``ij.fit_vi`` under ``jax.distributed`` on this machine (2 processes x 2
host CPU devices, coordinator on 127.0.0.1, gloo collectives), against the one-device run
of the same global batches; a process SIGKILLed mid-run, and the run resumed.

Each process runs ``tests/distributed_run.py``, as every host of a cluster would
(docs/scaling.md, "Several hosts").
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # three launches of 2 processes each: the full suite only

HERE = pathlib.Path(__file__).resolve().parent
ENV = dict(os.environ, JAX_PLATFORMS="cpu", JAX_ENABLE_X64="0")


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(role, out, processes=(0, 1), env=None, port=None):
    port = port or _port()
    return [subprocess.Popen([sys.executable, str(HERE / "distributed_run.py"), role, str(p), str(port), str(out)],
                             env=env or ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for p in processes]


def _finish(procs, timeout=600):
    for p in procs:
        _, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err[-3000:]


def _read(out, role, process):
    return json.loads((out / f"{role}-{process}.json").read_text())


def test_fit_over_two_processes_equals_one_device(tmp_path):
    procs = _launch("fit", tmp_path) + _launch("fit", tmp_path, processes=(-1,))  # the reference beside them
    _finish(procs)
    first, second, one = (_read(tmp_path, "fit", p) for p in (0, 1, -1))
    assert first["process_count"] == 2 and first["devices"] == 4 and one["devices"] == 1
    # space=1: each process holds 2 of the 4 batch shards; space=2: one sample per process's
    # pair of devices; space=4: every sample spans both processes (they feed the same samples).
    assert [first["part_1"], second["part_1"]] == [[0, 2], [1, 2]]
    assert [first["part_2"], second["part_2"]] == [[0, 2], [1, 2]]
    assert [first["part_4"], second["part_4"]] == [[0, 1], [0, 1]]
    for space in (1, 2, 4):
        assert first[f"fit_{space}"] == second[f"fit_{space}"]  # one replicated loss
        # Losses of 3 Adam steps: float32 round-off of sums taken in another order.
        np.testing.assert_allclose(first[f"fit_{space}"], one[f"fit_{space}"], rtol=1e-4)
        loss, grads = first[f"grad_{space}"]
        ref_loss, ref_grads = one[f"grad_{space}"]
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
        scale = max(np.max(np.abs(g)) for g in ref_grads)
        for g, r in zip(grads, ref_grads, strict=True):
            np.testing.assert_allclose(g, r, rtol=1e-3, atol=1e-3 * scale)
        assert first[f"sharding_{space}"] == "P('batch', None, 'space', 'space2')"
    # The simulator: each process draws its own pairs (different keys), and the run equals
    # one device trained on the two processes' pairs side by side.
    assert not np.allclose(first["drawn"], second["drawn"])
    np.testing.assert_allclose(first["simulator"], one["simulator"], rtol=1e-4)
    batch, space, devices, layout = first["errors"]
    assert "batch_size (6) must be a multiple of the number of devices (4)" in batch and "over 2 processes" in batch
    assert "space must divide the number of devices (4)" in space and "got space=8" in space
    assert "pass devices=None" in devices
    assert "the processes feed different layouts" in layout and "(B, 1, 32, 8)" in layout
    assert "(B, 1, 16, 8)" in second["errors"][3]
    # fit_vi: the latents are drawn for the whole batch with the run's key, split over both
    # processes' devices; the same losses as on one device (float32 sums in another order).
    for name in ("vi_1", "vi_2", "vi_4", "vi_amortized"):
        assert first[name] == second[name]
        np.testing.assert_allclose(first[name], one[name if name == "vi_amortized" else "vi_1"], rtol=1e-4)


def test_a_killed_process_resumes_from_the_one_checkpoint_with_the_same_losses(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    _finish(_launch("resume", whole))
    reference = _read(whole, "resume", 0)
    assert reference["writes"] == 3 and _read(whole, "resume", 1)["writes"] == 0  # steps 2, 4, 6; process 0 only
    # Process 1 SIGKILLs itself when it draws step 5's pairs (step 4 done, so the
    # checkpoint of step 4 is on disk); its partner fails or hangs in the next collective
    # and is killed too, as a scheduler would.
    first, second = _launch("resume", killed, env=dict(ENV, INVJAX_KILL_AT="5"))
    second.communicate(timeout=600)
    assert second.returncode == -signal.SIGKILL
    first.kill()
    first.communicate()
    assert not (killed / "resume-0.json").exists()
    _finish(_launch("resume", killed))  # the same command again
    resumed = _read(killed, "resume", 0)
    assert resumed["writes"] == 1  # only the last checkpoint (step 6): steps 4 and 5 were redone
    np.testing.assert_allclose(resumed["train"], reference["train"], rtol=1e-6)  # 0-3 from the file, 4-5 again
    assert _read(killed, "resume", 1)["train"] == resumed["train"]
