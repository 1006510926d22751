"""A plain-PyTorch 3D Glow with the architecture of ``ij.nets.Glow(spatial_dims=3)``, for ``glow3d.py``.

No PyTorch library has a 3D Glow (normflows' ``GlowBlock`` is 2D), so this one is written
for the benchmark, layer by layer after invjax's defaults:

- squeeze: space-to-depth of every 2x2x2 block, channel-major (input channel ``c`` becomes
  channels ``8 c + k``, ``k`` the row-major offset in the block), ``ij.layers.Squeeze``;
- a flow step: ActNorm (per-channel ``log_scale`` and bias, identity at the start), the
  LU-parametrised invertible 1x1x1 convolution (``ij.layers.Conv1x1LU``: ``W = P L (U +
  diag(sign exp(log_scale)))`` from a random rotation; ``lower`` and ``upper`` are full
  ``C x C`` parameters masked to their triangles, as invjax stores them), an affine
  coupling (the first ``C // 2`` channels condition the rest through a 3^3 - 1^3 - 3^3
  convolution block, ReLU, ``hidden`` channels, the last convolution zero-initialised; its
  output is ``(raw, shift)``, the scale ``0.5 + 1.5 sigmoid(raw + log 0.5)``, so a new
  coupling is the identity);
- each level squeezes, runs ``depth`` steps and, except the last, factors out the second
  half of its channels to the latent; the base is a standard normal.

invjax puts the factored-out halves back at their place (inverse squeezes), so its latent
has the input's shape; a standard normal's density does not depend on that order, so
here each factored-out half's log-density is summed where it leaves. The initialisation
of the convolutions (PyTorch's defaults) differs from Equinox's; neither changes the
parameter count or the cost of a step, and :func:`load_invjax` copies an invjax Glow's
parameters in, which is how ``glow3d.py --check`` shows that both compute the same
log-likelihood.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

# SigmoidScale(0.5, 2.0) centred: raw = 0 gives s = 1.
LOW, HIGH = 0.5, 2.0
OFFSET = math.log((1 - LOW) / (HIGH - 1))


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, D, H, W)`` -> ``(B, 8C, D/2, H/2, W/2)``, channel ``8 c + k`` (invjax's order)."""
    b, c, d, h, w = x.shape
    x = x.reshape(b, c, d // 2, 2, h // 2, 2, w // 2, 2)
    return x.permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(b, 8 * c, d // 2, h // 2, w // 2)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """Per sample, summed over all other axes."""
    return -0.5 * z.pow(2).flatten(1).sum(1) - 0.5 * z[0].numel() * math.log(2 * math.pi)


class ActNorm(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        shape = (1, -1, 1, 1, 1)
        return x * self.log_scale.exp().view(shape) + self.bias.view(shape), self.log_scale.sum() * x[0, 0].numel()


class Conv1x1LU(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels))
        p, lower, upper = torch.linalg.lu(q)
        diag = torch.diagonal(upper)
        self.register_buffer("permutation", p.argmax(1))  # (L U)[permutation] = P L U
        self.register_buffer("sign", diag.sign())
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.lower = nn.Parameter(torch.tril(lower, -1))
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_scale = nn.Parameter(diag.abs().log())

    def matrix(self):
        eye = torch.eye(len(self.sign), device=self.lower.device)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign * self.log_scale.exp())
        return (lower @ upper)[self.permutation]

    def forward(self, x):
        c = x.shape[1]
        return F.conv3d(x, self.matrix().view(c, c, 1, 1, 1)), self.log_scale.sum() * x[0, 0].numel()


class AffineCoupling(nn.Module):
    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.half = channels // 2
        out = 2 * (channels - self.half)
        self.net = nn.Sequential(nn.Conv3d(self.half, hidden, 3, padding=1), nn.ReLU(),
                                 nn.Conv3d(hidden, hidden, 1), nn.ReLU(),
                                 nn.Conv3d(hidden, out, 3, padding=1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x):
        a, b = x[:, : self.half], x[:, self.half :]
        raw, shift = self.net(a).chunk(2, 1)
        scale = LOW + (HIGH - LOW) * torch.sigmoid(raw + OFFSET)
        return torch.cat([a, b * scale + shift], 1), scale.log().flatten(1).sum(1)


class Glow3d(nn.Module):
    """``levels`` scales of ``depth`` steps on ``(B, C, D, H, W)``; :meth:`log_prob` per sample.

    Args:
        in_channels: ``C``.
        levels: number of scales; every spatial size must be divisible by ``2**levels``.
        depth: flow steps per level.
        hidden: channels of the coupling conditioners.
    """

    def __init__(self, in_channels: int, levels: int, depth: int, hidden: int):
        super().__init__()
        self.levels = nn.ModuleList()
        channels = in_channels
        for _ in range(levels):
            channels *= 8
            self.levels.append(nn.ModuleList(
                nn.ModuleList([ActNorm(channels), Conv1x1LU(channels), AffineCoupling(channels, hidden)])
                for _ in range(depth)))
            channels //= 2  # the kept half goes on to the next level

    def log_prob(self, x):
        log_prob = x.new_zeros(x.shape[0])
        for i, level in enumerate(self.levels):
            x = squeeze(x)
            for step in level:
                for layer in step:
                    x, logdet = layer(x)
                    log_prob = log_prob + logdet
            if i < len(self.levels) - 1:  # factor out the second half
                kept = x.shape[1] // 2
                log_prob = log_prob + standard_normal_log_prob(x[:, kept:])
                x = x[:, :kept]
        return log_prob + standard_normal_log_prob(x)


def load_invjax(model: Glow3d, flow) -> Glow3d:
    """Copy the parameters of ``flow``, an ``ij.nets.Glow(spatial_dims=3)`` of the same sizes, into ``model``."""
    chain = flow.body
    for i, level in enumerate(model.levels):
        stacked = chain.layers[1].layer  # Stack: one Chain whose leaves have a leading depth axis
        actnorm, conv, coupling = stacked.layers
        for k, (ours_actnorm, ours_conv, ours_coupling) in enumerate(level):
            pairs = [(ours_actnorm.log_scale, actnorm.log_scale), (ours_actnorm.bias, actnorm.bias)]
            pairs += [(getattr(ours_conv, n), getattr(conv, n)) for n in ("lower", "upper", "log_scale")]
            for ours, theirs in zip(ours_coupling.net[::2], coupling.conditioner.convs, strict=True):
                pairs += [(ours.weight, theirs.weight), (ours.bias, theirs.bias)]
            with torch.no_grad():
                for ours, theirs in pairs:
                    ours.copy_(torch.from_numpy(np.asarray(theirs[k])).reshape(ours.shape))
                ours_conv.permutation.copy_(torch.from_numpy(np.asarray(conv.permutation[k])))
                ours_conv.sign.copy_(torch.from_numpy(np.asarray(conv.sign[k])))
        if i < len(model.levels) - 1:
            chain = chain.layers[2].inner  # FactorOut: the next level runs on the kept channels
    return model
