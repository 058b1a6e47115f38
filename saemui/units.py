"""Unit scorers: turn one layer's captured activations at scored tokens into per-unit scores.

- :class:`SAEFeatures`: SAE feature activations ``sae.encode(resid)`` of clean activations (never spliced).
- :class:`MLPNeurons`: contribution ``a_i · (W_down[:, i] · W_U[target])``, the neuron's direct logit-lens effect
  on the target token, computed only for the scored targets (no d_mlp × vocab matrix, official-code bug 19).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from saemui.capture import site_name
from saemui.errors import SaemuiError
from saemui.models import LoadedModel

NEURON_SITES = {"down_input": "mlp_post", "gate_act": "gate_act"}


class UnitScorer:
    """Scores for one layer. ``site`` is the capture site; ``n_units`` the units per layer."""

    layer: int
    site: str
    n_units: int

    def scores(
        self, acts_ND: torch.Tensor, target_N: torch.Tensor, chunk: int
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield (row offset, scores [n, U] float32) over chunks of the N scored tokens."""
        raise NotImplementedError


class SAEFeatures(UnitScorer):
    def __init__(self, sae, layer: int, hook_name: str, device: torch.device):
        self.sae, self.layer, self.site = sae, layer, hook_name
        self.n_units = int(sae.cfg.d_sae)
        self.device = device

    @torch.inference_mode()
    def scores(self, acts_ND, target_N, chunk):
        for i in range(0, acts_ND.shape[0], chunk):
            x = acts_ND[i : i + chunk].to(device=self.sae.device, dtype=self.sae.dtype)
            yield i, self.sae.encode(x).float()


class MLPNeurons(UnitScorer):
    def __init__(self, lm: LoadedModel, layer: int, site: str = "down_input"):
        if site not in NEURON_SITES:
            raise SaemuiError(f"neuron site {site!r} unknown (expected down_input or gate_act)")
        block = lm.arch.layers(lm.model)[layer]
        self.layer = layer
        self.site = site_name(layer, NEURON_SITES[site])
        # Scores in fp32 whatever the model dtype: thresholds compare products of small numbers.
        self.W_down_DI = lm.arch.w_down_DI(block).float()
        self.W_U_VD = lm.W_U_VD
        self.n_units = int(self.W_down_DI.shape[1])

    @torch.inference_mode()
    def scores(self, acts_ND, target_N, chunk):
        for i in range(0, acts_ND.shape[0], chunk):
            u_ND = self.W_U_VD[target_N[i : i + chunk]].float()
            proj_NI = u_ND @ self.W_down_DI
            yield i, acts_ND[i : i + chunk].float() * proj_NI
