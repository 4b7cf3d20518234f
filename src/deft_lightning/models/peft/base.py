"""Common ground of the visual PEFT variants: freezing the tower, choosing blocks, counting parameters."""

from __future__ import annotations

from torch import nn

from deft_lightning.errors import ConfigError


def resolve_blocks(num_blocks: int, partial: int | None) -> list[int]:
    """Indices of the blocks that get PEFT modules: all of them, or the last ``partial`` ones."""
    if partial is None:
        return list(range(num_blocks))
    if not 1 <= int(partial) <= num_blocks:
        raise ConfigError(f"peft.partial must be between 1 and {num_blocks} (the tower's blocks), got {partial}")
    return list(range(num_blocks - int(partial), num_blocks))


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return total, trainable


class VisualPEFT(nn.Module):
    """Wraps a frozen open_clip visual tower; subclasses add their own trainable parameters."""

    def __init__(self, visual: nn.Module, partial: int | None = None) -> None:
        super().__init__()
        self.visual = visual
        for parameter in visual.parameters():
            parameter.requires_grad_(False)
        self.blocks = list(visual.transformer.resblocks)
        self.peft_blocks = resolve_blocks(len(self.blocks), partial)

    def forward(self, images):
        return self.visual(images)

    def trainable_state_dict(self) -> dict:
        """Only what PEFT trained: kilobytes to a few MB, never the frozen tower."""
        names = {name for name, p in self.named_parameters() if p.requires_grad}
        return {name: value for name, value in self.state_dict().items() if name in names}
