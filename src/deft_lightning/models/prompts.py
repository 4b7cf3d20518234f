"""CoOp-style learnable textual prompts: a positive and a negative context per class (SPEC §2).

Each prompt is the token sequence ``[SOS] [ctx x n_ctx] [class name] [.] [EOT]`` (class token at the
end; ``middle`` and ``front`` move the name). Frozen token embeddings are computed once; the learned
context vectors are scattered into their slots on every call, so one forward gives both prompt sets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deft_lightning.errors import ConfigError

CLASS_POSITIONS = ("end", "middle", "front")


@dataclass(frozen=True)
class PromptLayout:
    """Token ids of every prompt, where the context slots are, and where each prompt's EOT sits."""

    token_ids: torch.Tensor  # (C, L) int64, context slots hold a placeholder id
    context_positions: torch.Tensor  # (C, n_ctx) int64
    eot_positions: torch.Tensor  # (C,) int64
    name_positions: list[list[int]]  # per class, the positions of its name tokens


def build_prompt_layout(
    class_names: list[str], tokenizer, n_ctx: int, class_position: str = "end", context_length: int | None = None
) -> PromptLayout:
    """Lay out ``[SOS] ctx… name . [EOT]`` token ids for each class, with the context slots recorded."""
    if class_position not in CLASS_POSITIONS:
        raise ConfigError(f"class_position must be one of {CLASS_POSITIONS}, got {class_position!r}")
    context_length = context_length or tokenizer.context_length
    sot, eot = tokenizer.sot_token_id, tokenizer.eot_token_id
    placeholder = tokenizer.encode("X")[0]
    period = tokenizer.encode(".")
    rows, ctx_rows, eot_rows, name_rows = [], [], [], []
    for name in class_names:
        name_tokens = tokenizer.encode(name.replace("_", " "))
        half = n_ctx // 2
        if class_position == "end":
            pieces = [("ctx", n_ctx), ("name", name_tokens)]
        elif class_position == "middle":
            pieces = [("ctx", half), ("name", name_tokens), ("ctx", n_ctx - half)]
        else:
            pieces = [("name", name_tokens), ("ctx", n_ctx)]
        ids, ctx_pos, name_pos = [sot], [], []
        for kind, value in pieces:
            if kind == "ctx":
                ctx_pos.extend(range(len(ids), len(ids) + value))
                ids.extend([placeholder] * value)
            else:
                name_pos.extend(range(len(ids), len(ids) + len(value)))
                ids.extend(value)
        ids.extend(period)
        eot_rows.append(len(ids))
        ids.append(eot)
        if len(ids) > context_length:
            raise ConfigError(
                f"prompt for class {name!r} needs {len(ids)} tokens but the text tower takes {context_length}; "
                "shorten the context (detector.prompt.n_ctx) or the class name"
            )
        rows.append(ids + [0] * (context_length - len(ids)))
        ctx_rows.append(ctx_pos)
        name_rows.append(name_pos)
    return PromptLayout(
        token_ids=torch.tensor(rows, dtype=torch.long),
        context_positions=torch.tensor(ctx_rows, dtype=torch.long).reshape(len(class_names), n_ctx),
        eot_positions=torch.tensor(eot_rows, dtype=torch.long),
        name_positions=name_rows,
    )


class DualPromptLearner(nn.Module):
    """Positive and negative learnable contexts; returns the embedded prompts of both sets.

    ``forward`` gives a (2C, L', D) tensor — positive prompts first, then negative — cut after the
    longest EOT (L' ≤ context length), ready for :func:`encode_prompt_embeddings` in one batched call.
    """

    def __init__(
        self,
        class_names: list[str],
        tokenizer,
        token_embedding: nn.Embedding,
        n_ctx: int = 16,
        class_specific: bool = False,
        class_position: str = "end",
        init_words: str | None = None,
        init_std: float = 0.02,
        context_length: int | None = None,
    ) -> None:
        super().__init__()
        if init_words:
            init_ids = tokenizer.encode(init_words)
            n_ctx = len(init_ids)
        self.n_ctx = n_ctx
        self.num_classes = len(class_names)
        self.class_specific = class_specific
        layout = build_prompt_layout(class_names, tokenizer, n_ctx, class_position, context_length)
        self.layout = layout
        length = int(layout.eot_positions.max()) + 1  # exact: the text tower is causal, EOT pools
        self.shared_prefix_length = shared_prefix_length(layout, length, class_specific)
        with torch.no_grad():
            embedded = token_embedding(layout.token_ids[:, :length].to(token_embedding.weight.device))
        self.register_buffer("token_embeds", embedded.detach().clone(), persistent=False)
        self.register_buffer("eot_positions", layout.eot_positions.clone(), persistent=False)
        self.register_buffer("context_positions", layout.context_positions.clone(), persistent=False)
        width = token_embedding.weight.shape[1]
        shape = (self.num_classes, n_ctx, width) if class_specific else (n_ctx, width)
        if init_words:
            with torch.no_grad():
                words = token_embedding(torch.tensor(init_ids, device=token_embedding.weight.device)).detach()
            init = words.expand(shape).clone() if class_specific else words.clone()
            self.pos_ctx = nn.Parameter(init.clone())
            self.neg_ctx = nn.Parameter(init.clone())
        else:
            self.pos_ctx = nn.Parameter(torch.empty(shape).normal_(0.0, init_std))
            self.neg_ctx = nn.Parameter(torch.empty(shape).normal_(0.0, init_std))

    def _fill(self, context: torch.Tensor) -> torch.Tensor:
        classes, _, width = self.token_embeds.shape
        if context.dim() == 2:
            context = context.unsqueeze(0).expand(classes, -1, -1)
        index = self.context_positions.unsqueeze(-1).expand(-1, -1, width)
        return self.token_embeds.scatter(1, index, context.to(self.token_embeds.dtype))

    def forward(self) -> torch.Tensor:
        return torch.cat([self._fill(self.pos_ctx), self._fill(self.neg_ctx)], dim=0)

    def forward_shared_prefix(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The same prompts split at ``shared_prefix_length`` P: prefixes (2, P, D), suffixes (2C, L' - P, D).

        Every class of one set has the same first P tokens ([SOS] + the shared context for the default
        layout), so the causal text tower computes them once per set instead of once per class.
        """
        length = self.shared_prefix_length
        positive, negative = self._fill(self.pos_ctx), self._fill(self.neg_ctx)
        prefixes = torch.stack([positive[0, :length], negative[0, :length]])
        suffixes = torch.cat([positive[:, length:], negative[:, length:]], dim=0)
        return prefixes, suffixes

    def prompt_eot_positions(self) -> torch.Tensor:
        """EOT positions of the (2C) prompts returned by ``forward``."""
        return torch.cat([self.eot_positions, self.eot_positions])


def shared_prefix_length(layout: PromptLayout, length: int, class_specific: bool) -> int:
    """How many leading tokens are identical in every class's prompt (same ids, same shared context slot).

    Capped at the earliest EOT so each prompt keeps its pooled token in its own suffix. Class-specific
    contexts differ per class, so only [SOS] can be shared then.
    """
    classes = layout.token_ids.shape[0]
    source = layout.token_ids[:, :length].clone()  # what fills each slot: a token id, or context vector k
    slots = torch.arange(layout.context_positions.shape[1]).expand(classes, -1)
    marker = -(slots + 1)
    if class_specific:
        marker = marker - 1_000_000 * (torch.arange(classes).unsqueeze(1) + 1)
    source.scatter_(1, layout.context_positions, marker)
    shared = (source == source[:1]).all(dim=0)
    prefix = int(shared.long().cumprod(0).sum())
    return min(prefix, int(layout.eot_positions.min()))
