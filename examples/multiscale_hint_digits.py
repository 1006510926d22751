"""Multiscale HINT on scikit-learn's digits: density estimation with recursive couplings.

    python examples/multiscale_hint_digits.py      # 80 s on a 2-core CPU (docs/examples/digits.md)

Two levels (Haar squeeze, HINT steps, split). Prints the test negative log-likelihood in
bits per dimension before and after training; writes
``examples/out/multiscale_hint_samples.png``.
"""

from _digits import density_example

import invjax as ij

if __name__ == "__main__":
    density_example(
        "Multiscale HINT",
        lambda key, depth, hidden: ij.nets.MultiscaleHINT(1, levels=2, depth=depth, hidden=hidden, key=key),
    )
