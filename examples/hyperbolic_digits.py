"""A hyperbolic (leapfrog) network on scikit-learn's digits.

    python examples/hyperbolic_digits.py      # 56 s on a 2-core CPU (docs/examples/digits.md)

Two scales: Haar squeeze, ActNorm, leapfrog layers that go down a scale and back up.
Every layer but the ActNorm preserves volume, so this is a weaker density model than
Glow or HINT; it is here to show the family trains with the invertible backward. Prints
test bits/dim before and after; writes ``examples/out/hyperbolic_samples.png``.
"""

from _digits import density_example

import invjax as ij

if __name__ == "__main__":
    density_example(
        "Hyperbolic",
        lambda key, depth, hidden: ij.nets.Hyperbolic(1, levels=2, depth=depth, hidden=hidden, key=key),
    )
