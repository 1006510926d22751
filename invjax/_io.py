"""Save and load flows (and any pytree of them), safely: loading never runs code from a file.

A file is ``INVJAX2\n``, the length of a JSON header, the header, then Equinox's
serialised leaves (``eqx.tree_serialise_leaves``: NumPy's format, read without pickle).
The header holds

- ``structure``: the model as data (``invjax._recipe``: classes from an allow-list of
  invjax's and Equinox's layers, their fields, arrays by shape and dtype), or ``null`` if
  the model holds something a file cannot describe (a lambda, a class of your own), with
  the reason in ``unstorable``;
- ``arrays``: the path, shape and dtype of every array, so a mismatch is named before
  anything is read;
- ``leaves_bytes`` and ``sha256`` of the leaves, so a truncated or corrupted file is
  refused; ``metadata``: the caller's JSON dict.

``load(path)`` rebuilds the structure from the header (importing nothing outside the
allow-list, calling no constructor) and reads the arrays into it; ``load(path,
like=model)`` reads the arrays into ``model``'s structure. Nothing is ever unpickled:
files of the first format (``INVJAX1``, whose structure was a pickle) load only with
``like=``.

Writes are atomic: the bytes go to a temporary file in the same folder, are flushed to
disk, and replace the target in one ``os.replace``, so a crash never leaves a
half-written file behind.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import pathlib
import struct
import tempfile

import equinox as eqx
import jax

from ._recipe import Unstorable, from_recipe, to_recipe

_MAGIC = b"INVJAX2\n"
_OLD_MAGIC = b"INVJAX1\n"  # structure pickled: never unpickled; arrays readable with like=
_LENGTH = struct.Struct("<Q")


def save(path: str | os.PathLike, model, metadata: dict | None = None) -> pathlib.Path:
    """Write ``model`` (a flow, or any pytree of arrays and modules) to ``path``, atomically.

    The structure is stored as data (classes and fields, never a pickle), so
    :func:`load` can rebuild invjax's networks and layers, and Equinox's own modules
    (an ``eqx.nn.MLP`` summary network), without ``like=``. A model holding anything
    else (a lambda, a module class of your own) is saved too, with its arrays only:
    load it with ``like=``.

    Args:
        path: the file (its folder is created).
        model: the pytree to save.
        metadata: a JSON-serialisable dict stored beside the arrays (read it back with
            :func:`load_metadata`).

    Returns:
        the path.

    Raises:
        ValueError: ``metadata`` is not a JSON-serialisable dict, or ``model`` holds a
            PRNG key array (store ``jax.random.key_data(key)``).
    """
    path = pathlib.Path(path)
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError(f"save: metadata must be a dict, got {type(metadata).__name__}.")
    if path.is_dir():
        raise ValueError(f"save: {path} is a folder; give a file name, e.g. {path / 'flow.eqx'}.")
    try:
        structure, unstorable = to_recipe(model), ""
    except Unstorable as e:
        structure, unstorable = None, str(e)
    arrays = _array_specs(model)
    if any(a[2].startswith("key<") for a in arrays):
        raise ValueError(f"save: {path}: the model holds a PRNG key array; store jax.random.key_data(key) instead.")
    leaves = io.BytesIO()
    eqx.tree_serialise_leaves(leaves, model)
    leaves = leaves.getvalue()
    header = {"format": 2, "structure": structure, "unstorable": unstorable, "arrays": arrays,
              "leaves_bytes": len(leaves), "sha256": hashlib.sha256(leaves).hexdigest(), "metadata": metadata or {}}
    try:
        header = json.dumps(header, allow_nan=True).encode()
    except (TypeError, ValueError) as e:
        raise ValueError(f"save: {path}: metadata must be JSON-serialisable (strings, numbers, lists, dicts): "
                         f"{e}") from None
    _atomic_write(path, _MAGIC + _LENGTH.pack(len(header)) + header + leaves)
    return path


def load(path: str | os.PathLike, like=None):
    """Read a model written by :func:`save`. Never runs code from the file.

    Without ``like``, the structure comes from the file: only classes and functions on an
    allow-list (invjax's layers, networks, distributions; Equinox's ``equinox.nn``
    layers; the functions of ``jax.nn``, ``jax.numpy`` and invjax) are rebuilt, field by
    field, without calling any constructor; nothing is unpickled. With ``like``, the
    arrays are read into ``like``'s structure (Equinox's way) and the file's structure is
    only compared with it.

    Args:
        path: the file.
        like: optional model of the same structure (for instance freshly constructed);
            needed for models that hold lambdas or module classes of your own, and for
            files of invjax's first format.

    Returns:
        the model.

    Raises:
        ValueError: the file is not an invjax file, is truncated or corrupted, names a
            class or function off the allow-list, or does not match ``like`` (the message
            names the file and the first array that differs, expected against found).

    Example:
        ```python
        import jax, invjax as ij

        flow = ij.nets.RealNVP(in_channels=2, depth=2, hidden=8, key=jax.random.key(0))
        ij.save("flow.eqx", flow)
        flow = ij.load("flow.eqx")              # rebuilt from the file's data
        flow = ij.load("flow.eqx", like=flow)   # read into a structure you have
        ```
    """
    header, leaves = _read(path)
    given = like is not None
    if not given:
        if header["structure"] is None:
            raise ValueError(
                f"load: {path} holds the arrays but not the structure, which a file cannot describe "
                f"({header['unstorable']}); pass like=<a model built the same way>."
            )
        try:
            like = from_recipe(header["structure"])
        except ValueError as e:
            raise ValueError(f"load: {path} {e}; nothing was loaded.") from None
    _check_like(path, header["arrays"], like, "the model given as like=" if given else "its own structure")
    return _deserialise(path, leaves, like)


def load_metadata(path: str | os.PathLike) -> dict:
    """The ``metadata`` dict given to :func:`save` (empty if none)."""
    return _read(path)[0]["metadata"]


def _array_specs(model) -> list:
    """``[path, shape, dtype]`` of every array of ``model``, in leaf order."""
    arrays = eqx.filter(model, lambda a: eqx.is_array(a) or isinstance(a, jax.ShapeDtypeStruct))
    flat, _ = jax.tree_util.tree_flatten_with_path(arrays)
    return [[jax.tree_util.keystr(p), list(a.shape), str(a.dtype)] for p, a in flat]


def _check_like(path, stored: list | None, like, what: str) -> None:
    """``ValueError`` naming the first array whose path, shape or dtype differs."""
    if stored is None:
        return  # an INVJAX1 file: Equinox's own check below
    expected = _array_specs(like)
    for mine, theirs in zip(expected, stored, strict=False):
        if mine != theirs:
            raise ValueError(
                f"load: {path} does not match {what}: array {theirs[0] or '(root)'} in the file is "
                f"{_spec(theirs)}, the model has {mine[0] or '(root)'} {_spec(mine)}."
            )
    if len(expected) != len(stored):
        raise ValueError(f"load: {path} holds {len(stored)} arrays, {what} has {len(expected)}.")


def _spec(entry) -> str:
    return f"{entry[2]}{list(entry[1])}"


def _deserialise(path, leaves: bytes, like):
    try:
        return eqx.tree_deserialise_leaves(io.BytesIO(leaves), like)
    except Exception as e:  # Equinox's and NumPy's errors for a file that does not fit ``like``
        raise ValueError(
            f"load: {path} does not fit the structure it is read into ({type(e).__name__}: {e})."
        ) from None


def _read(path) -> tuple[dict, bytes]:
    """The header (a dict) and the leaves of an invjax file; ``ValueError`` for anything else."""
    path = pathlib.Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"load: cannot read {path}: {e.strerror or e}.") from None
    if data.startswith(_OLD_MAGIC):
        return _read_old(path, data)
    if not data.startswith(_MAGIC):
        raise ValueError(f"load: {path} is not an invjax file (it does not start with {_MAGIC!r}).")
    start = len(_MAGIC) + _LENGTH.size
    if len(data) < start:
        raise ValueError(f"load: {path} is truncated ({len(data)} bytes, not even a header).")
    (size,) = _LENGTH.unpack(data[len(_MAGIC) : start])
    if len(data) < start + size:
        raise ValueError(f"load: {path} is truncated: its header needs {size} bytes, {len(data) - start} are there.")
    try:
        header = json.loads(data[start : start + size])
        leaves = data[start + size :]
        complete = len(leaves) == header["leaves_bytes"]
        intact = hashlib.sha256(leaves).hexdigest() == header["sha256"]
        header["structure"], header["arrays"], header["metadata"]  # noqa: B018 (present)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"load: {path} has a malformed header ({type(e).__name__}: {e}).") from None
    if not complete:
        raise ValueError(f"load: {path} is truncated: {header['leaves_bytes']} bytes of arrays expected, "
                         f"{len(leaves)} found.")
    if not intact:
        raise ValueError(f"load: {path} is corrupted: its arrays do not match the checksum written with them.")
    return header, leaves


def _read_old(path, data: bytes) -> tuple[dict, bytes]:
    """A file of the first format: its pickled structure is skipped, never unpickled."""
    start = len(_OLD_MAGIC) + 16
    if len(data) < start:
        raise ValueError(f"load: {path} is truncated ({len(data)} bytes, not even a header).")
    size, note_size = struct.unpack("<QQ", data[len(_OLD_MAGIC) : start])
    if len(data) < start + size + note_size:
        raise ValueError(f"load: {path} is truncated.")
    try:
        note = json.loads(data[start + size : start + size + note_size])
    except ValueError:
        note = {}
    reason = (
        "it was written by invjax's first file format, whose structure is a pickle, and load never unpickles "
        "(a crafted pickle runs code). Read its arrays into a model built the same way with "
        "ij.load(path, like=model), then ij.save it again to get a file that loads on its own"
    )
    return {"structure": None, "unstorable": reason, "arrays": None, "metadata": note.get("metadata", {})}, (
        data[start + size + note_size :]
    )


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
