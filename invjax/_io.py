"""Save and load flows (and any pytree of them): Equinox serialisation plus the structure.

A file holds a short header (the pytree's structure, with every array replaced by its
shape and dtype, pickled) followed by Equinox's serialised leaves. ``load(path)``
rebuilds the model from the header, so nobody has to reconstruct it by hand; or
``load(path, like=model)`` skips the header and reads the arrays into ``model``'s
structure (Equinox's own way, no unpickling).

Writes are atomic: the bytes go to a temporary file in the same folder, are flushed to
disk, and replace the target in one ``os.replace``, so a crash never leaves a
half-written file behind.
"""

from __future__ import annotations

import glob
import importlib
import io
import json
import os
import pathlib
import pickle
import struct
import tempfile

import equinox as eqx
import jax
import jax.numpy as jnp

_MAGIC = b"INVJAX1\n"


class _ArraySpec:
    """Stands in for an array in a saved structure."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(shape), str(dtype)


def _is_spec(x) -> bool:
    return isinstance(x, _ArraySpec)


def _import(module: str, qualname: str):
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


class _Pickler(pickle.Pickler):
    """Stores functions by import path, looked up again on load.

    Plain pickle refuses ``jax.nn.relu`` (the object in the module is a jit wrapper of the
    function a module holds); any importable function is stored as its module and name.
    """

    def reducer_override(self, obj):
        if obj is _import or isinstance(obj, type) or not callable(obj) or isinstance(obj, eqx.Module):
            return NotImplemented
        module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        if not module or not qualname or "<" in qualname:
            return NotImplemented  # lambdas and local functions: pickle raises a clear error
        try:
            _import(module, qualname)
        except (ImportError, AttributeError):
            return NotImplemented
        return _import, (module, qualname)


def save(path: str | os.PathLike, model, metadata: dict | None = None) -> pathlib.Path:
    """Write ``model`` (a flow, or any pytree of arrays and modules) to ``path``, atomically.

    ``metadata`` is any JSON-serialisable dict stored beside the arrays (read it back with
    :func:`load_metadata`). Returns the path. Functions stored in modules are saved by import path. If the
    structure still cannot be pickled (a lambda inside a module, as in ``eqx.nn.MLP``),
    the arrays are saved without it and :func:`load` needs ``like=``.
    """
    path = pathlib.Path(path)
    arrays, rest = eqx.partition(model, eqx.is_array)
    specs = jax.tree.map(lambda a: _ArraySpec(a.shape, a.dtype), arrays)
    try:
        buffer = io.BytesIO()
        _Pickler(buffer).dump(eqx.combine(specs, rest, is_leaf=_is_spec))
        header = buffer.getvalue()
    except (pickle.PicklingError, AttributeError, TypeError) as e:
        # A lambda or local function somewhere (Equinox's MLP keeps one): the arrays are
        # still saved, and load needs ``like``.
        header = b""
        reason = f"{type(e).__name__}: {e}"
    else:
        reason = ""
    leaves = io.BytesIO()
    eqx.tree_serialise_leaves(leaves, model)
    note = json.dumps({"unpicklable": reason, "metadata": metadata or {}}).encode()
    _atomic_write(
        path,
        _MAGIC + struct.pack("<QQ", len(header), len(note)) + header + note + leaves.getvalue(),
    )
    return path


def load(path: str | os.PathLike, like=None):
    """Read a model written by :func:`save`.

    Args:
        path: the file.
        like: optional model of the same structure (for instance freshly constructed); its
            arrays are replaced by the stored ones and the header is not unpickled. Without
            it the structure comes from the file: only load files you trust.
    """
    header, note, leaves = _sections(path)
    if like is None:
        if not header:
            raise ValueError(
                f"load: {path} holds the arrays but not the structure, which could not be pickled when "
                f"it was saved ({note['unpicklable']}); pass like=<a model built the same way>."
            )
        skeleton = pickle.loads(header)
        like = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype) if _is_spec(s) else s, skeleton, is_leaf=_is_spec)
    return eqx.tree_deserialise_leaves(io.BytesIO(leaves), like)


def load_metadata(path: str | os.PathLike) -> dict:
    """The ``metadata`` dict given to :func:`save` (empty if none)."""
    return _sections(path)[1]["metadata"]


def _sections(path) -> tuple[bytes, dict, bytes]:
    """The file's pickled structure (empty if none), its JSON note, and the leaves."""
    data = pathlib.Path(path).read_bytes()
    if not data.startswith(_MAGIC):
        raise ValueError(f"load: {path} is not an invjax file (it does not start with {_MAGIC!r}).")
    start = len(_MAGIC) + 16
    size, note_size = struct.unpack("<QQ", data[len(_MAGIC) : start])
    header, note = data[start : start + size], data[start + size : start + size + note_size]
    return header, json.loads(note), data[start + size + note_size :]


def _atomic_write(path: pathlib.Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    # A process killed while writing leaves its temporary file behind (the checkpoint it
    # was replacing is intact); the next successful save of the same file removes it.
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)


__all__ = ["load", "load_metadata", "save"]
