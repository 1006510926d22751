"""Every script in ``examples/`` runs in a short mode (``--steps 1``), so examples never rot:
a renamed argument or a changed API fails here, not in a reader's hands. The scripts'
figures (bits/dim, errors, times) come from their default runs, quoted with the command in
the docs; this test checks only that they run and write their picture."""

import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # end-to-end runs of the scripts: the full suite only

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(p.stem for p in EXAMPLES.glob("[!_]*.py"))
PICTURES = {
    "quickstart": "quickstart_samples.png",
    "two_moons": "two_moons.png",
    "multiscale_hint_digits": "multiscale_hint_samples.png",
    "hyperbolic_digits": "hyperbolic_samples.png",
    "conditional_hint_posterior": "conditional_hint_posterior.png",
    "conditional_hint_denoising": "conditional_hint_denoising.png",
    "vi_gaussian": "vi_gaussian.png",
    "vi_deblurring": "vi_deblurring.png",
    "imaging_posterior": "imaging_posterior_sbc.png",
    "irim_deblurring": "irim_memory.png",
    "iunet_deblurring": "iunet_memory.png",
    "volume_posterior": "volume_posterior.png",
    "physics_refinement": "physics_refinement.png",
}
# Scripts whose evaluation has its own short mode (held-out pairs and draws, not only steps).
QUICK = {"imaging_posterior", "irim_deblurring", "iunet_deblurring", "volume_posterior", "physics_refinement"}


def test_every_script_is_listed():
    assert sorted(PICTURES) == SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs_in_a_short_mode(script, tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    env = {**os.environ, "INVJAX_EXAMPLES_OUT": str(tmp_path), "MPLBACKEND": "Agg", "JAX_ENABLE_X64": "0"}
    quick = ["--quick"] if script in QUICK else []
    result = subprocess.run([sys.executable, str(EXAMPLES / f"{script}.py"), "--steps", "1", *quick],
                            cwd=EXAMPLES, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert (tmp_path / PICTURES[script]).exists(), result.stdout[-2000:]
