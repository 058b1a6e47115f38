"""SAE health: how well an SAE reconstructs the activations it encodes, and how its features fire.

Names and definitions follow sae-lens / SAEBench: explained variance = 1 − Σ|x − x̂|² / Σ|x − mean(x)|², MSE per
element, cosine similarity and ‖x̂‖/‖x‖ per token, L0 and dead / dense fractions from firing counts.

- :class:`HealthAccumulator`: streaming float64 sums over the scored tokens of a MUI run (the engine);
- :func:`firing_stats`: the numbers that follow from firing counts alone (the engine and the distributed merge);
- :func:`recon_metrics`: the same reconstruction numbers over a whole activation matrix in memory, with the
  exact two-pass mean (SAE training's evaluation, ``scripts/train_saes.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class HealthAccumulator:
    """Running sums for SAE explained variance over scored tokens (float64)."""

    sse: float = 0.0
    sum_sq: float = 0.0
    sum_x: torch.Tensor | None = None
    n: int = 0
    l2_ratio_sum: float = 0.0
    cos_sum: float = 0.0

    def add(self, x_ND: torch.Tensor, xhat_ND: torch.Tensor) -> None:
        x, xh = x_ND.double(), xhat_ND.double()
        self.sse += float(((x - xh) ** 2).sum())
        self.sum_sq += float((x**2).sum())
        s = x.sum(0)
        self.sum_x = s if self.sum_x is None else self.sum_x + s
        self.n += x.shape[0]
        xn = x.norm(dim=1).clamp_min(1e-12)
        self.l2_ratio_sum += float((xh.norm(dim=1) / xn).sum())
        self.cos_sum += float(torch.nn.functional.cosine_similarity(x, xh, dim=1).sum())

    def state(self) -> dict:
        return {
            "sse": self.sse,
            "sum_sq": self.sum_sq,
            "sum_x": self.sum_x,
            "n": self.n,
            "l2_ratio_sum": self.l2_ratio_sum,
            "cos_sum": self.cos_sum,
        }

    def summary(self) -> dict:
        if not self.n:
            return {"explained_variance": None, "mse": None, "l2_ratio": None, "cossim": None}
        mean = self.sum_x / self.n
        sst = self.sum_sq - self.n * float((mean**2).sum())
        d = mean.numel()
        return {
            "explained_variance": 1.0 - self.sse / sst if sst > 0 else None,
            "mse": self.sse / (self.n * d),
            "l2_ratio": self.l2_ratio_sum / self.n,
            "cossim": self.cos_sum / self.n,
        }


def firing_stats(layer: int, fire_U: np.ndarray, n_tokens: int) -> dict:
    """SAE-health numbers that follow from firing counts alone (sae-lens / SAEBench names)."""
    nt = max(int(n_tokens), 1)
    dens = fire_U / nt
    return {
        "layer": layer,
        "l0": float(fire_U.sum() / nt),
        "dead_fraction": float((fire_U == 0).mean()),
        "dense_fraction": float((dens > 0.1).mean()),
        "freq_over_1_percent": float((dens > 0.01).mean()),
        "freq_over_10_percent": float((dens > 0.1).mean()),
    }


@torch.no_grad()
def recon_metrics(sae: Any, x: torch.Tensor, chunk: int = 8192) -> dict[str, Any]:
    """sae-lens / SAEBench conventions: explained_variance = 1 - sum|x - x̂|² / sum|x - mean(x)|².

    ``sae`` is a sae-lens SAE; ``x`` [N, d_in] float32. ``_fires`` holds per-feature firing counts (a tensor, for
    the caller to pool across splits; not JSON).
    """
    n = x.shape[0]
    mu = x.mean(0)
    sse = tv = cos = l0 = l2r = 0.0
    fires = torch.zeros(sae.cfg.d_sae)
    for i in range(0, n, chunk):
        xb = x[i : i + chunk]
        f = sae.encode(xb)
        xh = sae.decode(f)
        sse += float((xb - xh).pow(2).sum())
        tv += float((xb - mu).pow(2).sum())
        cos += float(torch.nn.functional.cosine_similarity(xb, xh, dim=-1).sum())
        l2r += float((xh.norm(dim=-1) / xb.norm(dim=-1).clamp_min(1e-8)).sum())
        act = f > 0
        l0 += float(act.sum())
        fires += act.sum(0).float()
    return {
        "n_tokens": n,
        "l0": l0 / n,
        "explained_variance": 1 - sse / tv,
        "mse": sse / (n * x.shape[1]),
        "cossim": cos / n,
        "l2_ratio": l2r / n,
        "_fires": fires,
    }
