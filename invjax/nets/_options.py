"""Checks of the options networks share: layer classes given as values, sizes."""

from __future__ import annotations

from .._layer import AbstractLayer


def check_layer_class(name: str, option: str, value) -> type:
    """``value`` is an invjax layer class (``conv=ij.layers.Conv1x1``, ``squeeze=ij.layers.HaarSqueeze``)."""
    if not (isinstance(value, type) and issubclass(value, AbstractLayer)):
        raise ValueError(
            f"{name}: {option} must be an invjax layer class (e.g. ij.layers.{_EXAMPLES[option]}), got {value!r}."
        )
    return value


_EXAMPLES = {"conv": "Conv1x1LU", "squeeze": "HaarSqueeze"}


def check_positive(name: str, **sizes) -> None:
    """Every size is an int >= 1."""
    bad = {k: v for k, v in sizes.items() if not isinstance(v, int) or v < 1}
    if bad:
        given = ", ".join(f"{k}={v!r}" for k, v in bad.items())
        raise ValueError(f"{name}: {', '.join(bad)} must be integers >= 1, got {given}.")


def check_cond_channels(name: str, cond_channels) -> None:
    """``cond_channels`` is an int >= 0 (0: unconditional)."""
    if not isinstance(cond_channels, int) or cond_channels < 0:
        raise ValueError(f"{name}: cond_channels must be an integer >= 0, got {cond_channels!r}.")
