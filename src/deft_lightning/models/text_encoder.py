"""Running CLIP's frozen text tower on prompt embeddings instead of token ids.

The tower is causal and pools the EOT token, so cutting every prompt after the longest EOT position
gives exactly the same features as the full 77-token context at a fraction of the cost.
"""

from __future__ import annotations

import torch
from torch import nn


def encode_prompt_embeddings(clip_model: nn.Module, embeddings: torch.Tensor, eot_positions: torch.Tensor) -> torch.Tensor:
    """Text features (P, E) of prompts given as token embeddings (P, L, D) with their EOT positions.

    ``L`` may be shorter than the model's context length (truncated prompts); the causal mask and
    positional embedding are cut to match.
    """
    length = embeddings.shape[1]
    cast_dtype = clip_model.transformer.get_cast_dtype()
    x = embeddings.to(cast_dtype) + clip_model.positional_embedding[:length].to(cast_dtype)
    attn_mask = clip_model.attn_mask[:length, :length] if clip_model.attn_mask is not None else None
    x = clip_model.transformer(x, attn_mask=attn_mask)
    x = clip_model.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), eot_positions.to(x.device)]
    projection = clip_model.text_projection
    if projection is None:
        return x
    return projection(x) if isinstance(projection, nn.Linear) else x @ projection


def encode_token_ids_truncated(clip_model: nn.Module, token_ids: torch.Tensor) -> torch.Tensor:
    """Like open_clip's ``encode_text`` on token ids, but cut after the longest EOT (argmax id)."""
    eot_positions = token_ids.argmax(dim=-1)
    length = int(eot_positions.max()) + 1
    embeddings = clip_model.token_embedding(token_ids[:, :length])
    return encode_prompt_embeddings(clip_model, embeddings, eot_positions)
