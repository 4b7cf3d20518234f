"""LoRA (Hu et al. 2021) on CLIP's visual tower: ``W x + (alpha / rank) · B A dropout(x)``, B = 0 at init.

``targets`` picks what is adapted in each chosen block:

- ``attn`` (reference, default): the **q and v** projections only. open_clip's attention is an
  ``nn.MultiheadAttention`` whose q/k/v weights are one fused ``in_proj_weight``, so no ``nn.Linear``
  exists for q or v. peft 0.21.2 cannot restrict LoRA to slices of it: its ``nn.MultiheadAttention``
  layer adapts all of q, k, v (one shared A) *and* out_proj, by merging the deltas into the frozen weights
  before every forward and subtracting them after — which drifts the "frozen" weights by float rounding
  at every forward (measured: ~4e-8 after three steps on the tiny CLIP) and ignores dropout. So this target is our own small module:
  low-rank deltas added to the q and v slices of the in-projection output, inside the exact attention
  re-implementation of :mod:`blocks` (the frozen tower is not modified). A is kaiming-uniform with fan-in
  ``rank`` (U(±1/√rank)), as the reference's (width × rank) layout gives; reference scaling is 1/rank,
  i.e. ``alpha=1``.
- ``qkv`` (through peft): ``target_parameters=[…attn.in_proj_weight]``, a parametrisation
  ``W + ΔW`` of the whole fused in-projection (q, k and v; one A, B of 3·width rows); exact, no drift;
  peft does not allow dropout here.
- ``mlp`` (through peft): standard LoRA layers on ``mlp.c_fc`` and ``mlp.c_proj``.

Targeting ``attn.out_proj`` alone is refused: ``nn.MultiheadAttention`` reads ``out_proj.weight``
directly, so a LoRA layer there would never run. peft targets are injected into the tower in place (its
state-dict keys gain ``base_layer``); call this module, not ``.visual``, to get every target applied.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import Tensor, nn

from deft_lightning.errors import ConfigError
from deft_lightning.models.peft.base import VisualPEFT
from deft_lightning.models.peft.blocks import cast_like, check_attention_blocks, residual_block, run_tower, self_attention

TARGETS = ("attn", "qkv", "mlp")


class LowRankDelta(nn.Module):
    """``scaling · B A dropout(x)`` for one projection; zero at init because B = 0."""

    def __init__(self, in_features: int, out_features: int, rank: int, alpha: float, dropout: float) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(rank)  # kaiming-uniform (a=√5) with fan-in = rank, as in the reference
        self.lora_A = nn.Parameter(torch.empty(rank, in_features).uniform_(-bound, bound))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank))
        self.scaling = float(alpha) / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.dropout(x) @ cast_like(self.lora_A, x).t()
        return (hidden @ cast_like(self.lora_B, x).t()) * self.scaling


class QueryValueLoRA(nn.Module):
    """Adds low-rank deltas to the q and v parts of a fused q|k|v in-projection output."""

    def __init__(self, width: int, rank: int, alpha: float, dropout: float) -> None:
        super().__init__()
        self.q = LowRankDelta(width, width, rank, alpha, dropout)
        self.v = LowRankDelta(width, width, rank, alpha, dropout)

    def forward(self, x: Tensor, qkv: Tensor) -> Tensor:
        q, k, v = qkv.chunk(3, dim=-1)
        return torch.cat([q + self.q(x), k, v + self.v(x)], dim=-1)


def _normalise_targets(targets: str | Iterable[str]) -> list[str]:
    names = [targets] if isinstance(targets, str) else [str(t) for t in targets]
    for name in names:
        if "out_proj" in name:
            raise ConfigError(
                f"LoRA target {name!r} would silently do nothing: nn.MultiheadAttention uses out_proj.weight "
                "directly and never calls out_proj. Use targets 'attn' (q and v), 'qkv' or 'mlp'."
            )
        if name not in TARGETS:
            raise ConfigError(f"unknown LoRA target {name!r}; valid targets: {list(TARGETS)}")
    if not names:
        raise ConfigError(f"LoRA needs at least one target out of {list(TARGETS)}")
    if "attn" in names and "qkv" in names:
        raise ConfigError("LoRA targets 'attn' (q and v) and 'qkv' both adapt the attention in-projection; pick one")
    return sorted(set(names), key=TARGETS.index)


class VisualLoRA(VisualPEFT):
    def __init__(
        self,
        visual: nn.Module,
        rank: int = 8,
        alpha: float = 1.0,
        dropout: float = 0.0,
        targets: str | Iterable[str] = ("attn",),
        partial: int | None = None,
    ) -> None:
        super().__init__(visual, partial)
        if int(rank) < 1:
            raise ConfigError(f"LoRA rank must be >= 1, got {rank}")
        self.targets = _normalise_targets(targets)
        self.rank, self.alpha, self.dropout = int(rank), float(alpha), float(dropout)
        check_attention_blocks(visual, self.peft_blocks, "LoRA")
        if "qkv" in self.targets or "mlp" in self.targets:
            self._inject_peft()
        self.attn_lora = nn.ModuleDict()
        if "attn" in self.targets:
            for index in self.peft_blocks:
                width = self.blocks[index].attn.embed_dim
                self.attn_lora[str(index)] = QueryValueLoRA(width, self.rank, self.alpha, self.dropout)

    def _inject_peft(self) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        if "qkv" in self.targets and self.dropout > 0:
            raise ConfigError(
                "LoRA target 'qkv' (peft target_parameters on the fused in-projection) cannot use dropout; "
                "set dropout: 0 or use target 'attn'"
            )
        prefixes = [f"transformer.resblocks.{index}" for index in self.peft_blocks]
        modules = [f"{p}.mlp.{name}" for p in prefixes for name in ("c_fc", "c_proj")] if "mlp" in self.targets else []
        parameters = [f"{p}.attn.in_proj_weight" for p in prefixes] if "qkv" in self.targets else []
        options = {"target_parameters": parameters} if parameters else {}
        try:
            config = LoraConfig(
                r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=modules, bias="none", **options
            )
        except TypeError as error:  # peft < 0.17 has no target_parameters
            raise ConfigError(f"LoRA target 'qkv' needs peft >= 0.17 (target_parameters); {error}") from None
        inject_adapter_in_model(config, self.visual)
        self._check_no_silent_targets()

    def _check_no_silent_targets(self) -> None:
        """A LoRA layer on a child of nn.MultiheadAttention (out_proj) would never run: refuse it."""
        from peft.tuners.lora import LoraLayer

        for name, module in self.visual.named_modules():
            if isinstance(module, nn.MultiheadAttention):
                for child_name, child in module.named_children():
                    if isinstance(child, LoraLayer):
                        raise ValueError(f"LoRA layer on {name}.{child_name} would never run (MHA bypasses it)")

    def _block(self, index: int, block: nn.Module, x: Tensor) -> Tensor:
        if str(index) not in self.attn_lora:
            return block(x)
        lora = self.attn_lora[str(index)]
        return residual_block(block, x, lambda h: self_attention(block.attn, h, adjust_qkv=lora), block.mlp)

    def forward(self, images: Tensor) -> Tensor:
        if not self.attn_lora:  # peft targets only: they live inside the tower
            return self.visual(images)
        return run_tower(self.visual, images, self._block)
