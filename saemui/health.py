"""SAE health: how well an SAE reconstructs the activations it encodes, and how its features fire.

Names and definitions follow sae-lens / SAEBench: explained variance = 1 − Σ|x − x̂|² / Σ|x − mean(x)|², MSE per
element, cosine similarity and ‖x̂‖/‖x‖ per token, L0 and dead / dense fractions from firing counts.

- :class:`HealthAccumulator`: exact, mergeable sums over the scored tokens of a MUI run (the engine and the
  distributed merge);
- :func:`firing_stats`: the numbers that follow from firing counts alone (the engine and the distributed merge).

SAE training's evaluation (:class:`saemui.sae_eval.ReconStats`) builds on :class:`HealthAccumulator`, so cards
and runs compute the same figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from saemui.errors import SaemuiError

# Exact float64 sums. Every finite float64 is an integer multiple of 2**-1074, so a sum of them is an integer
# in those units: it is kept in base-2**32 limbs (int64, one column per summed quantity). Integer addition is
# associative, so partial sums merge in any order and any grouping to the same value, which is rounded to
# float64 once, when read. 2046 exponent steps + 53 mantissa bits fit in 66 limbs; one more takes the carries.
_LIMB_BITS = 32
_N_LIMBS = 67
_LIMB_MASK = (1 << _LIMB_BITS) - 1
# Each value adds < 2**33 to a limb, so this many additions cannot overflow int64 between carry passes.
_ADDS_BEFORE_CARRY = 1 << 20


def _limb_parts(v: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A float64 vector as (lowest limb index, signed contributions to that limb and the next two)."""
    bits = v.contiguous().view(torch.int64)
    biased = (bits >> 52) & 0x7FF
    if bool((biased == 0x7FF).any()):
        raise SaemuiError("SAE health: non-finite reconstruction figures (NaN/Inf); check the SAE's dtype")
    frac = bits & ((1 << 52) - 1)
    normal = biased > 0
    mant = torch.where(normal, frac | (1 << 52), frac)  # value = ±mant · 2**(pos − 1074)
    pos = torch.where(normal, biased - 1, torch.zeros_like(biased))
    k, shift = pos // _LIMB_BITS, pos % _LIMB_BITS
    lo = (mant & _LIMB_MASK) << shift  # < 2**63
    hi = (mant >> _LIMB_BITS) << shift  # < 2**52
    sign = torch.where(bits < 0, -1, 1)
    parts = [lo & _LIMB_MASK, (lo >> _LIMB_BITS) + (hi & _LIMB_MASK), hi >> _LIMB_BITS]
    return k, [sign * c for c in parts]


class ExactSum:
    """Order-independent, exact running sums of float64 vectors (one sum per element)."""

    def __init__(self, size: int, limbs: torch.Tensor | None = None) -> None:
        # A normal tensor even when created under inference_mode (the engine's forward), which would forbid
        # updating it in place afterwards.
        with torch.inference_mode(False):
            self.limbs = torch.zeros(_N_LIMBS, size, dtype=torch.int64) if limbs is None else limbs.clone()
        if self.limbs.shape != (_N_LIMBS, size) or self.limbs.dtype != torch.int64:
            raise SaemuiError(f"exact-sum limbs must be int64 [{_N_LIMBS}, {size}]")
        self._adds = 0

    def add(self, v: torch.Tensor) -> None:
        k, parts = _limb_parts(v.detach().to("cpu", torch.float64).reshape(-1))
        for j, c in enumerate(parts):
            self.limbs.scatter_add_(0, (k + j).unsqueeze(0), c.unsqueeze(0))
        self._adds += 1
        if self._adds >= _ADDS_BEFORE_CARRY:
            self._carry()

    def merge(self, other: ExactSum) -> None:
        self._carry()
        other._carry()
        self.limbs += other.limbs
        self._carry()

    def _carry(self) -> None:
        # Bring every limb but the top one into [0, 2**32); the top limb keeps the sign.
        for i in range(_N_LIMBS - 1):
            c = self.limbs[i] >> _LIMB_BITS  # floor division, also for negative limbs
            self.limbs[i] -= c << _LIMB_BITS
            self.limbs[i + 1] += c
        self._adds = 0

    def values(self) -> list[float]:
        """Each exact sum, rounded once to the nearest float64."""
        self._carry()
        cols = self.limbs.T.tolist()
        # int / int true division rounds correctly
        return [sum(x << (_LIMB_BITS * i) for i, x in enumerate(c)) / (1 << 1074) for c in cols]


# Per scored-token chunk, the SAE's reconstruction figures are float64 partial sums; the accumulator sums the
# partials exactly. A chunk's partials depend only on its activations and reconstruction, so the totals are the
# same whatever order and grouping the chunks arrive in, in one process or merged from several. They equal a
# single process's bit for bit when every chunk's activations are bit-identical to that run's: the same batches
# (a token's activations depend on the padded length of its batch), the same dtype, device and thread count.
_SCALARS = ("sse", "sum_sq", "l2_ratio_sum", "cos_sum")


class HealthAccumulator:
    """Exact sums for SAE explained variance, MSE, ‖x̂‖/‖x‖ and cosine over scored tokens; mergeable."""

    def __init__(self, n: int = 0, d: int | None = None, limbs: torch.Tensor | None = None) -> None:
        self.n = int(n)
        self.d = d
        # columns: the _SCALARS, then Σx per activation dimension
        self.sums = None if d is None else ExactSum(len(_SCALARS) + d, limbs)

    def add(self, x_ND: torch.Tensor, xhat_ND: torch.Tensor) -> None:
        x, xh = x_ND.double(), xhat_ND.double()
        if self.sums is None:
            self.d = int(x.shape[1])
            self.sums = ExactSum(len(_SCALARS) + self.d)
        xn = x.norm(dim=1).clamp_min(1e-12)
        scalars = torch.stack(
            [
                ((x - xh) ** 2).sum(),
                (x**2).sum(),
                (xh.norm(dim=1) / xn).sum(),
                torch.nn.functional.cosine_similarity(x, xh, dim=1).sum(),
            ]
        )
        self.sums.add(torch.cat([scalars, x.sum(0)]))
        self.n += x.shape[0]

    def merge(self, other: HealthAccumulator) -> None:
        """Add another accumulator's tokens (e.g. another process's): exact, in any order."""
        if other.sums is None:
            self.n += other.n
            return
        if self.sums is None:
            self.d, self.sums = other.d, ExactSum(len(_SCALARS) + other.d)
        if other.d != self.d:
            raise SaemuiError(f"health sums over {other.d} and {self.d} activation dimensions cannot merge")
        self.sums.merge(other.sums)
        self.n += other.n

    def state(self) -> dict:
        """Plain tensors and ints (checkpoints, torch.distributed); ``HealthAccumulator(**state)`` restores."""
        if self.sums is not None:
            self.sums._carry()
        return {"n": self.n, "d": self.d, "limbs": None if self.sums is None else self.sums.limbs.clone()}

    def summary(self) -> dict:
        if not self.n or self.sums is None:
            return {"explained_variance": None, "mse": None, "l2_ratio": None, "cossim": None}
        vals = self.sums.values()
        sse, sum_sq, l2_ratio_sum, cos_sum = vals[: len(_SCALARS)]
        mean = torch.tensor(vals[len(_SCALARS) :], dtype=torch.float64) / self.n
        sst = sum_sq - self.n * float((mean**2).sum())
        return {
            "explained_variance": 1.0 - sse / sst if sst > 0 else None,
            "mse": sse / (self.n * self.d),
            "l2_ratio": l2_ratio_sum / self.n,
            "cossim": cos_sum / self.n,
        }


def health_rows(
    layers: Sequence[int], fire_LU: np.ndarray, n_tokens_L: np.ndarray, sums: Mapping[int, HealthAccumulator]
) -> list[dict]:
    """``summary["sae_health"]``: per layer the firing figures, then the reconstruction ones when summed.

    One function for the engine and the distributed merge, so both write the same keys in the same order.
    """
    rows = []
    for r, layer in enumerate(layers):
        row = firing_stats(layer, fire_LU[r], int(n_tokens_L[r]))
        if layer in sums:
            row.update(sums[layer].summary())
        rows.append(row)
    return rows


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
