"""A model's structure as JSON data, rebuilt from an allow-list: what ``save`` stores and ``load`` reads.

A *recipe* describes a pytree without running or unpickling anything: modules by class
and fields, containers by kind, arrays by shape and dtype (their values are stored apart,
by Equinox's serialisation), and a few kinds of static values. Reading a recipe imports
only allow-listed names and builds modules field by field, without calling ``__init__``
(so no user code, no random initialisation, no compilation), exactly as they were saved.

The allow-list:

- classes: Equinox modules and dataclasses defined in ``invjax`` (every layer, network,
  distribution and backprop mode), and Equinox's own layers (``equinox.nn``), e.g. a
  summary network built from ``eqx.nn.MLP``;
- functions (activations held by modules): those of ``jax.nn``, ``jax.numpy`` and
  ``invjax``, and Equinox's identity.

Anything else (a lambda, a module class of your own) makes the structure unstorable:
``save`` still writes the arrays, and ``load`` needs ``like=``.
"""

from __future__ import annotations

import dataclasses
import importlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

_CLASS_MODULES = ("invjax.", "equinox.nn.")
_FUNCTION_MODULES = ("jax.nn", "jax._src.nn.", "jax.numpy", "jax._src.numpy.", "invjax.", "equinox.nn.")
_SCALARS = (bool, int, float, str, type(None))
# Modules renamed private (0.x): files saved before name classes and functions by the old path.
_RENAMED_MODULES = {
    "invjax.layers.actnorm": "invjax.layers._actnorm",
    "invjax.layers.bounded": "invjax.layers._bounded",
    "invjax.layers.chain": "invjax.layers._chain",
    "invjax.layers.composite": "invjax.layers._composite",
    "invjax.layers.conditional_hint": "invjax.layers._conditional_hint",
    "invjax.layers.conditioners": "invjax.layers._conditioners",
    "invjax.layers.conjugate": "invjax.layers._conjugate",
    "invjax.layers.conv1x1": "invjax.layers._conv1x1",
    "invjax.layers.coupling": "invjax.layers._coupling",
    "invjax.layers.elementwise_affine": "invjax.layers._elementwise_affine",
    "invjax.layers.gradient_step": "invjax.layers._gradient_step",
    "invjax.layers.hint": "invjax.layers._hint",
    "invjax.layers.hyperbolic": "invjax.layers._hyperbolic",
    "invjax.layers.invert": "invjax.layers._invert",
    "invjax.layers.map_cond": "invjax.layers._map_cond",
    "invjax.layers.on_channels": "invjax.layers._on_channels",
    "invjax.layers.permute": "invjax.layers._permute",
    "invjax.layers.scales": "invjax.layers._scales",
    "invjax.layers.spline": "invjax.layers._spline",
    "invjax.layers.squeeze": "invjax.layers._squeeze",
    "invjax.layers.stack": "invjax.layers._stack",
    "invjax.nets.conditional_hint": "invjax.nets._conditional_hint",
    "invjax.nets.constrained": "invjax.nets._constrained",
    "invjax.nets.glow": "invjax.nets._glow",
    "invjax.nets.hint": "invjax.nets._hint",
    "invjax.nets.hyperbolic": "invjax.nets._hyperbolic",
    "invjax.nets.irim": "invjax.nets._irim",
    "invjax.nets.iunet": "invjax.nets._iunet",
    "invjax.nets.realnvp": "invjax.nets._realnvp",
    "invjax.nets.standardized": "invjax.nets._standardized",
    "invjax.nets.summaries": "invjax.nets._summaries",
    "invjax.nets.summarized": "invjax.nets._summarized",
}


class Unstorable(Exception):
    """The structure holds something outside the allow-list (the message says what and where)."""


def _name(obj) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


def _allowed(name: str, prefixes: tuple[str, ...]) -> bool:
    module = name.split(":", 1)[0]
    return any(module == p.rstrip(".") or module.startswith(p) for p in prefixes)


def _resolve(name: str, prefixes: tuple[str, ...], what: str):
    """Import an allow-listed ``module:qualname``; ``ValueError`` for anything else."""
    if not isinstance(name, str) or ":" not in name or not _allowed(name, prefixes):
        raise ValueError(f"names {what} {name!r}, which is not on load's allow-list ({', '.join(prefixes)})")
    module, qualname = name.split(":", 1)
    module = _RENAMED_MODULES.get(module, module)
    if "<" in qualname:
        raise ValueError(f"names {what} {name!r}, a local object, which load does not rebuild")
    try:
        obj = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"names {what} {name!r}, which this version of the library does not have ({e})") from None
    return obj


def _function_name(obj) -> str | None:
    """``module:name`` of an allow-listed function that imports back to ``obj`` itself, else None.

    The name is the function's qualified name, or the module attribute that holds it (a
    lambda kept under a name, as Equinox's ``_identity``).
    """
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str) or not _allowed(f"{module}:", _FUNCTION_MODULES):
        return None
    candidates = [getattr(obj, "__qualname__", None)]
    try:
        candidates += [k for k, v in vars(importlib.import_module(module)).items() if v is obj]
    except ImportError:
        return None
    for qualname in candidates:
        if isinstance(qualname, str) and "<" not in qualname:
            try:
                if _resolve(f"{module}:{qualname}", _FUNCTION_MODULES, "a function") is obj:
                    return f"{module}:{qualname}"
            except ValueError:
                pass
    return None


def to_recipe(tree, path: str = ""):
    """The JSON-able recipe of ``tree``; ``Unstorable`` names the first thing it cannot describe."""
    if isinstance(tree, (jax.Array, np.ndarray)):
        if jnp.issubdtype(tree.dtype, jax.dtypes.prng_key):
            raise Unstorable(f"{path or 'the model'} is a PRNG key array; store jax.random.key_data(key) instead")
        return {"array": {"shape": list(tree.shape), "dtype": str(tree.dtype)}}
    if isinstance(tree, float) and not np.isfinite(tree):
        return {"float": repr(tree)}
    if isinstance(tree, _SCALARS):
        return tree
    if isinstance(tree, np.generic):
        return {"scalar": {"value": tree.item(), "dtype": str(tree.dtype)}}
    if isinstance(tree, (list, tuple)):
        items = [to_recipe(v, f"{path}[{i}]") for i, v in enumerate(tree)]
        return {"list" if isinstance(tree, list) else "tuple": items}
    if isinstance(tree, dict):
        if not all(isinstance(k, (str, int)) for k in tree):
            raise Unstorable(f"{path or 'the model'} is a dict with keys other than strings and integers")
        return {"dict": [[k, to_recipe(v, f"{path}[{k!r}]")] for k, v in tree.items()]}
    if isinstance(tree, type):
        if not _allowed(_name(tree), _CLASS_MODULES):
            raise Unstorable(f"{path} is the class {_name(tree)}, outside invjax and equinox.nn")
        return {"type": _name(tree)}
    if isinstance(tree, np.dtype):
        return {"dtype": str(tree)}
    if isinstance(tree, eqx.Module) or (dataclasses.is_dataclass(tree) and not isinstance(tree, type)):
        name = _name(type(tree))
        if not _allowed(name, _CLASS_MODULES) or "<" in name:
            raise Unstorable(f"{path or 'the model'} is a {name}, a class outside invjax and equinox.nn")
        fields = {f.name: to_recipe(getattr(tree, f.name), f"{path}.{f.name}") for f in dataclasses.fields(tree)}
        return {"module": name, "fields": fields}
    if callable(tree):
        name = _function_name(tree)
        if name is None:
            raise Unstorable(f"{path} is the function {getattr(tree, '__qualname__', tree)!r}, outside the "
                             f"allow-list (jax.nn, jax.numpy, invjax)")
        return {"function": name}
    raise Unstorable(f"{path or 'the model'} is a {type(tree).__name__}, which a file cannot describe")


def from_recipe(recipe):
    """The pytree a recipe describes, arrays as ``jax.ShapeDtypeStruct`` placeholders.

    Raises ``ValueError`` (saying what) for a malformed recipe or a name off the allow-list.
    """
    if isinstance(recipe, _SCALARS):
        return recipe
    if isinstance(recipe, list) or not isinstance(recipe, dict) or len(recipe) not in (1, 2):
        raise ValueError(f"has a malformed structure entry {str(recipe)[:80]!r}")
    kind = next(iter(recipe))
    body = recipe[kind]
    if kind == "array":
        try:
            shape, dtype = tuple(int(n) for n in body["shape"]), jnp.dtype(body["dtype"])
        except (TypeError, KeyError, ValueError) as e:
            raise ValueError(f"has a malformed array entry {body!r:.80} ({e})") from None
        if not (jnp.issubdtype(dtype, jnp.number) or dtype == jnp.bool_) or min(shape, default=0) < 0:
            raise ValueError(f"has an array entry of dtype {dtype} and shape {shape}, which no model holds")
        return jax.ShapeDtypeStruct(shape, dtype)
    if kind == "float":
        return float(body)
    if kind == "scalar":
        return np.dtype(body["dtype"]).type(body["value"])
    if kind in ("list", "tuple") and isinstance(body, list):
        items = [from_recipe(v) for v in body]
        return items if kind == "list" else tuple(items)
    if kind == "dict" and isinstance(body, list):
        return {k: from_recipe(v) for k, v in body}
    if kind == "dtype":
        return np.dtype(body)
    if kind == "type":
        return _class(body)
    if kind == "function":
        return _resolve(body, _FUNCTION_MODULES, "a function")
    if kind == "module" and isinstance(recipe.get("fields"), dict):
        return _module(body, recipe["fields"])
    raise ValueError(f"has an unknown structure entry {kind!r}")


def _class(name: str) -> type:
    cls = _resolve(name, _CLASS_MODULES, "the class")
    if not isinstance(cls, type):
        raise ValueError(f"names {name!r} as a class, but it is a {type(cls).__name__}")
    return cls


def _module(name: str, stored: dict):
    cls = _class(name)
    if not (issubclass(cls, eqx.Module) or dataclasses.is_dataclass(cls)):
        raise ValueError(f"names {name!r} as a module, but it is neither an Equinox module nor a dataclass")
    expected = {f.name for f in dataclasses.fields(cls)}
    if set(stored) != expected:
        raise ValueError(
            f"stores {name} with fields {sorted(stored)}, but this version of the class has {sorted(expected)} "
            f"(saved by another version of the library?)"
        )
    # Rebuilt field by field, as dataclasses' own __init__ does: __init__ would draw random
    # parameters (and compile) only for them to be overwritten by the stored arrays.
    obj = object.__new__(cls)
    for field in dataclasses.fields(cls):
        object.__setattr__(obj, field.name, from_recipe(stored[field.name]))
    return obj


__all__ = ["Unstorable", "from_recipe", "to_recipe"]
