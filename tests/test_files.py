"""Files: save / load without running code from a file, and a clear ValueError for every bad
or mismatched file, with nothing overwritten."""

import io
import json
import os
import pickle
import struct

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from cases import CASES
from helpers import perturb

import invjax as ij


def _leaves_equal(a, b):
    la, lb = jax.tree.leaves(eqx.filter(a, eqx.is_array)), jax.tree.leaves(eqx.filter(b, eqx.is_array))
    return len(la) == len(lb) and all(
        x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(la, lb, strict=True)
    )


def _summarized(key=0, activation=jax.nn.relu):
    flow = ij.nets.RealNVP(2, depth=2, hidden=8, cond_channels=3, key=jr.key(key))
    return ij.nets.Summarized(flow, eqx.nn.MLP(5, 3, 8, 1, activation=activation, key=jr.key(key + 1)))


@pytest.mark.parametrize("name", ["glow_householder_haar", "conditional_hint_net_vector_cond", "hyperbolic_image"])
def test_networks_load_without_a_template(tmp_path, name):
    """invjax's own classes rebuild from the file's data alone: same classes, same pytree,
    same arrays, same hyper-parameters. (The contract tests save and load every case.)"""
    model = perturb(CASES[name][0](jr.key(0)), jr.key(1))
    loaded = ij.load(ij.save(tmp_path / f"{name}.eqx", model))
    assert jax.tree.structure(loaded) == jax.tree.structure(model)
    assert _leaves_equal(loaded, model)


def test_a_summarized_model_loads_without_a_template(tmp_path):
    model = perturb(_summarized(), jr.key(2))  # a summary network from eqx.nn: no like= needed
    loaded = ij.load(ij.save(tmp_path / "model.eqx", model, metadata={"note": "trained"}))
    x, y = jr.normal(jr.key(3), (4, 2)), jr.normal(jr.key(4), (4, 5))
    np.testing.assert_array_equal(loaded.log_prob(x, y), model.log_prob(x, y))
    assert ij.load_metadata(tmp_path / "model.eqx") == {"note": "trained"}
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary file


def test_a_file_naming_the_old_public_module_paths_loads(tmp_path):
    """Files written before the submodules went private name ``invjax.nets.realnvp:RealNVP``
    etc.: load maps the old paths to the new modules."""
    model = perturb(CASES["glow_householder_haar"][0](jr.key(0)), jr.key(1))
    path = ij.save(tmp_path / "new.eqx", model)
    data = (tmp_path / "new.eqx").read_bytes()
    start = len(b"INVJAX2\n") + 8  # magic, then the header's length (<Q), then the JSON header
    (size,) = struct.unpack("<Q", data[start - 8 : start])
    header = data[start : start + size].decode()
    old = header.replace("invjax.layers._", "invjax.layers.").replace("invjax.nets._", "invjax.nets.")
    assert old != header and "invjax.nets.glow:Glow" in old
    (tmp_path / "old.eqx").write_bytes(data[: start - 8] + struct.pack("<Q", len(old)) + old.encode() + data[start + size :])
    loaded = ij.load(tmp_path / "old.eqx")
    assert jax.tree.structure(loaded) == jax.tree.structure(model)
    assert _leaves_equal(loaded, model)


def test_a_model_holding_a_lambda_loads_with_like(tmp_path):
    model = _summarized(activation=lambda v: jnp.maximum(v, 0.0))
    path = ij.save(tmp_path / "model.eqx", model)
    with pytest.raises(ValueError, match=r"model\.eqx.*summary\.activation.*pass like="):
        ij.load(path)
    x, y = jr.normal(jr.key(3), (4, 2)), jr.normal(jr.key(4), (4, 5))
    np.testing.assert_array_equal(ij.load(path, like=_summarized(5, jax.nn.relu)).log_prob(x, y), model.log_prob(x, y))


class _Exploit:
    """Unpickling it creates a marker (a directory)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _first_format_file(path, header: bytes, model) -> None:
    """A file as invjax's first format wrote it: magic, pickled structure, JSON note, leaves."""
    leaves = io.BytesIO()
    eqx.tree_serialise_leaves(leaves, model)
    note = json.dumps({"unpicklable": "", "metadata": {"step": 3}}).encode()
    path.write_bytes(b"INVJAX1\n" + struct.pack("<QQ", len(header), len(note)) + header + note + leaves.getvalue())


def test_load_never_unpickles(tmp_path):
    marker = tmp_path / "marker"
    flow = ij.nets.RealNVP(2, depth=2, hidden=4, key=jr.key(0))
    path = tmp_path / "crafted.eqx"
    _first_format_file(path, pickle.dumps(_Exploit(marker)), flow)
    pickle.loads(pickle.dumps(_Exploit(marker)))
    assert marker.exists()  # the exploit works...
    marker.rmdir()
    with pytest.raises(ValueError, match=r"crafted\.eqx.*never unpickles.*like=model.*save it again"):
        ij.load(path)
    assert not marker.exists()  # ...but not through load
    # A first-format file's arrays are read into a model built the same way, then re-saved.
    old = perturb(flow, jr.key(1))
    _first_format_file(path, pickle.dumps(None), old)
    assert _leaves_equal(ij.load(path, like=flow), old) and ij.load_metadata(path) == {"step": 3}
    assert not marker.exists()


@pytest.mark.parametrize(
    "entry",
    [
        {"function": "os:system"},
        {"module": "subprocess:Popen", "fields": {}},
        {"type": "builtins:eval"},
        {"function": "side_effect_module:anything"},
        {"module": "side_effect_module:Anything", "fields": {}},
        {"function": "invjax._io:<lambda>"},
        {"module": "invjax.nets._realnvp:RealNVP", "fields": {"unexpected": 1}},
        {"array": {"shape": [2], "dtype": "object"}},
        ["not", "a", "structure"],
    ],
)
def test_a_crafted_structure_is_refused(tmp_path, monkeypatch, entry):
    """Names off the allow-list are refused before anything is imported: importing a module
    runs its code (here a module on sys.path that creates a marker when imported)."""
    marker = tmp_path / "imported"
    (tmp_path / "side_effect_module.py").write_text(f"import os\nos.mkdir({str(marker)!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    flow = ij.nets.RealNVP(2, depth=2, hidden=4, key=jr.key(0))
    path = ij.save(tmp_path / "flow.eqx", flow)
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[8:16])
    header = json.loads(data[16 : 16 + size])
    header["structure"]["fields"]["body"] = entry  # the RealNVP's body replaced
    header = json.dumps(header).encode()
    path.write_bytes(data[:8] + struct.pack("<Q", len(header)) + header + data[16 + size :])
    with pytest.raises(ValueError, match=r"load: .*flow\.eqx.*(allow-list|local object|fields|malformed|dtype)"):
        ij.load(path)
    assert not marker.exists()


def test_bad_files_raise_value_errors_naming_the_file(tmp_path):
    flow = ij.nets.RealNVP(2, depth=2, hidden=4, key=jr.key(0))
    data = ij.save(tmp_path / "flow.eqx", flow).read_bytes()
    (size,) = struct.unpack("<Q", data[8:16])
    bad = {
        "empty": b"",
        "magic only": data[:8],
        "header cut": data[: 16 + size // 2],
        "header only": data[: 16 + size],
        "arrays cut": data[:-7],
        "one byte flipped": data[:-20] + bytes([data[-20] ^ 1]) + data[-19:],
        "not json": data[:16] + b"{" * size + data[16 + size :],
        "another format": b"PK\x03\x04 a zip file",
    }
    for what, content in bad.items():
        path = tmp_path / "bad.eqx"
        path.write_bytes(content)
        for read in (ij.load, ij.load_metadata, lambda p: ij.load(p, like=flow)):
            with pytest.raises(ValueError, match=r"bad\.eqx") as e:
                read(path)
            assert type(e.value) is ValueError, what
    with pytest.raises(ValueError, match=r"cannot read .*missing\.eqx"):
        ij.load(tmp_path / "missing.eqx")


def test_a_mismatched_template_is_named(tmp_path):
    path = ij.save(tmp_path / "flow.eqx", ij.nets.RealNVP(2, depth=2, hidden=4, key=jr.key(0)))
    wider = ij.nets.RealNVP(2, depth=2, hidden=8, key=jr.key(0))
    with pytest.raises(ValueError, match=r"flow\.eqx does not match.*float\d+\[2, 4, 1\].*float\d+\[2, 8, 1\]"):
        ij.load(path, like=wider)
    deeper = ij.nets.RealNVP(2, depth=3, hidden=4, key=jr.key(0))
    with pytest.raises(ValueError, match=r"flow\.eqx does not match"):
        ij.load(path, like=deeper)
    with pytest.raises(ValueError, match=r"flow\.eqx does not match|holds \d+ arrays"):
        ij.load(path, like={"flow": deeper})


def test_metadata_must_be_json(tmp_path):
    flow = ij.nets.RealNVP(2, depth=2, hidden=4, key=jr.key(0))
    for metadata in ({"when": object()}, {"array": jnp.ones(3)}, ["not", "a", "dict"]):
        with pytest.raises(ValueError, match=r"metadata"):
            ij.save(tmp_path / "flow.eqx", flow, metadata=metadata)
    assert not (tmp_path / "flow.eqx").exists()


def _pairs(n):
    return jr.normal(jr.key(0), (n, 2)), jr.normal(jr.key(1), (n, 5))


def test_a_failed_resume_names_the_checkpoint_and_leaves_it_untouched(tmp_path):
    x, y = _pairs(64)
    ckpt = tmp_path / "run.eqx"
    kwargs = dict(key=jr.key(5), batch_size=16, progress=False, checkpoint=ckpt, checkpoint_every=5)
    ij.fit(_summarized(), x, y, steps=10, **kwargs)
    saved = ckpt.read_bytes()
    other = ij.nets.Summarized(ij.nets.RealNVP(2, depth=3, hidden=8, cond_channels=3, key=jr.key(0)),
                               eqx.nn.MLP(5, 3, 8, 1, key=jr.key(1)))
    with pytest.raises(ValueError, match=r"cannot resume from the checkpoint .*run\.eqx.*does not match.*left as"):
        ij.fit(other, x, y, steps=20, **kwargs)
    assert ckpt.read_bytes() == saved
    with pytest.raises(ValueError, match=r"run\.eqx is at step 10, beyond steps=5; pass steps >= 10"):
        ij.fit(_summarized(), x, y, steps=5, **kwargs)
    assert ckpt.read_bytes() == saved
    ckpt.write_bytes(saved[: len(saved) // 2])
    with pytest.raises(ValueError, match=r"cannot resume from the checkpoint .*run\.eqx.*truncated"):
        ij.fit(_summarized(), x, y, steps=20, **kwargs)
    assert ckpt.read_bytes() == saved[: len(saved) // 2]


def test_fit_refuses_python_lists():
    x, y = _pairs(8)
    with pytest.raises(ValueError, match=r"x is a Python list of list; pass an array \(jnp\.asarray\(x\)"):
        ij.fit(_summarized(), x.tolist(), y, key=jr.key(0), steps=1, progress=False)
    with pytest.raises(ValueError, match=r"cond is a Python list of list"):
        ij.fit(_summarized(), x, y.tolist(), key=jr.key(0), steps=1, progress=False)
