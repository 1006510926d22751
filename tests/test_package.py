"""The package installs as declared: a wheel and an sdist build, and the wheel works in a clean
virtual environment (its own dependencies from the package registry, nothing from this one); its
public modules hold only what they export."""

import importlib
import importlib.metadata
import os
import pathlib
import pkgutil
import subprocess
import sys
import tarfile
import textwrap
import types
import zipfile

import pytest

import invjax as ij

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_version_is_the_installed_distributions():
    assert ij.__version__ == importlib.metadata.version("invjax")
    assert (ROOT / "invjax" / "py.typed").exists()



def _public_modules():
    """The modules a user imports: ``invjax``, ``invjax.diagnostics``, ``invjax.layers``,
    ``invjax.nets``, and any other package below ``invjax`` whose dotted name has no private part."""
    names = ["invjax", "invjax.diagnostics", "invjax.layers", "invjax.nets"]
    names += [info.name for info in pkgutil.walk_packages(ij.__path__, "invjax.")
              if not any(part.startswith("_") for part in info.name.split("."))]
    return [importlib.import_module(name) for name in sorted(set(names))]


@pytest.mark.parametrize("module", _public_modules(), ids=lambda m: m.__name__)
def test_public_namespaces_hold_only_their_exports(module):
    """As in equinox: ``dir()`` of a public module lists its ``__all__`` and its public
    submodules, no imported helper (``np``, ``jax``, ``Callable``, ...)."""
    public = {n for n in dir(module) if not n.startswith("_")}
    submodules = {n for n in public if isinstance(getattr(module, n), types.ModuleType)
                  and getattr(module, n).__name__ == f"{module.__name__}.{n}"}
    plain = sorted(n for n in submodules if not hasattr(getattr(module, n), "__path__"))
    assert not plain, f"{module.__name__}: public submodules {plain}; name them _private"
    leaked = sorted(public - set(module.__all__) - submodules)
    missing = sorted(set(module.__all__) - public)
    assert not leaked and not missing, f"{module.__name__}: leaked {leaked}, in __all__ but missing {missing}"


_SMOKE = textwrap.dedent("""
    import sys, jax, jax.numpy as jnp, numpy as np, invjax as ij
    assert "site-packages" in ij.__file__, ij.__file__  # the wheel, not the source tree
    flow = ij.nets.Glow(1, 2, 2, 8, key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (2, 1, 8, 8))
    flow = flow.initialize(x)
    lp = flow.log_prob(x)
    ij.save("flow.eqx", flow)
    again = ij.load("flow.eqx", ij.nets.Glow(1, 2, 2, 8, key=jax.random.key(5)))
    np.testing.assert_array_equal(again.log_prob(x), lp)
    print(ij.__version__, lp.shape, bool(jnp.isfinite(lp).all()))
""")


@pytest.mark.slow
def test_wheel_and_sdist_build_and_the_wheel_works_in_a_clean_environment(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], check=True,
                   capture_output=True)
    (wheel,) = dist.glob("invjax-*.whl")
    (sdist,) = dist.glob("invjax-*.tar.gz")
    assert wheel.name.startswith(f"invjax-{ij.__version__}-py3-none-any")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"invjax/__init__.py", "invjax/py.typed", "invjax/nets/_glow.py"} <= names
    assert not any(n.startswith(("tests/", "benchmarks/", "examples/")) for n in names)
    members = {m.split("/", 1)[1] for m in tarfile.open(sdist).getnames() if "/" in m}
    assert {"pyproject.toml", "README.md", "LICENSE", "invjax/py.typed"} <= members
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}  # nothing from here
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True, capture_output=True, env=clean)
    out = subprocess.run([str(python), "-c", _SMOKE], check=True, capture_output=True, text=True, cwd=tmp_path,
                         env=clean)
    assert out.stdout.split() == [ij.__version__, "(2,)", "True"], out.stdout


def test_declared_lower_bounds_are_the_ones_ci_tests():
    """pyproject.toml's lower bounds are exactly the versions .ci/min-versions installs and
    runs the fast tier with, so the declared range is a tested one."""
    import re

    block = re.search(r"\ndependencies = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(), re.S).group(1)
    declared = dict(re.findall(r'"([A-Za-z0-9_.-]+)>=([0-9.]+)"', block))
    assert len(declared) == block.count('"') // 2, block  # every dependency has a lower bound only
    pinned = dict(line.split("==") for line in (ROOT / ".ci" / "min-versions.txt").read_text().split()
                  if "==" in line)
    assert declared == pinned
