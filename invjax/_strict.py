"""Equinox's abstract/final rule, enforced when a class is created.

Equinox's pattern (``docs/pattern.md``): a class is either abstract or final. Abstract
classes are named ``Abstract...`` and may be subclassed; what a subclass must provide is
an ``abc.abstractmethod`` or an ``eqx.AbstractVar``; a concrete method is never
overridden. Final classes provide everything and are not subclassed. Equinox 0.13
dropped its ``strict=True`` check, so invjax's base classes (layers, flows, base
distributions) use this metaclass instead: a layer that forgets a method fails when its
class is defined, not later with a silently inherited default.
"""


import inspect

import equinox as eqx


def _is_abstract_name(name: str) -> bool:
    return name.startswith("Abstract") or name.startswith("_Abstract")


class StrictMeta(type(eqx.Module)):
    """The metaclass of invjax's abstract base classes (see the module docstring)."""

    def __new__(mcs, name, bases, namespace, **kwargs):
        cls = super().__new__(mcs, name, bases, namespace, **kwargs)
        strict_bases = [b for b in cls.__mro__[1:] if isinstance(b, StrictMeta)]
        for base in bases:
            if isinstance(base, StrictMeta) and not _is_abstract_name(base.__name__):
                raise TypeError(
                    f"{name} subclasses {base.__name__}, a final class. Subclass its abstract base "
                    "instead, or wrap it (Equinox's abstract/final rule)."
                )
        for attr, value in namespace.items():
            if attr.startswith("__") or not (callable(value) or isinstance(value, property)):
                continue
            for base in strict_bases:
                inherited = base.__dict__.get(attr)
                if callable(inherited) or isinstance(inherited, property):
                    if not getattr(inherited, "__isabstractmethod__", False):
                        raise TypeError(
                            f"{name}.{attr} overrides a concrete method of {base.__name__}; only abstract "
                            "methods may be implemented in a subclass (Equinox's abstract/final rule)."
                        )
                    break
        missing = sorted(cls.__abstractmethods__) + sorted(getattr(cls, "__abstractvars__", ()))
        if missing and not _is_abstract_name(name):
            raise TypeError(
                f"{name} does not implement {', '.join(missing)}. Implement them, or name the class "
                f"'Abstract{name}' if it is meant to be subclassed."
            )
        return cls


    def __call__(cls, *args, **kwargs):
        # Every constructor whose ``key`` is required gets a clear error for a key that is not
        # one (None, an int seed), instead of JAX's from deep inside jax.random.
        if "key" in kwargs and _requires_key(cls):
            from ._checks import check_key

            check_key(cls.__name__, kwargs["key"])
        return super().__call__(*args, **kwargs)


def _requires_key(cls) -> bool:
    parameter = inspect.signature(cls.__init__).parameters.get("key")
    return parameter is not None and parameter.default is inspect.Parameter.empty


class AbstractStrictModule(eqx.Module, metaclass=StrictMeta):
    """An ``eqx.Module`` whose subclasses follow the abstract/final rule."""
