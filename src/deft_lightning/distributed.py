"""Gathering per-sample outputs from every rank, keyed by dataset index.

A DistributedSampler pads the last batch with repeated samples, so rows are de-duplicated by index,
never by order; ranks may also hold different row counts, so rows are padded before the gather.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    import lightning as L


def gather_rows_by_index(
    module: L.LightningModule | None, rows: dict[str, torch.Tensor], to_cpu: bool = True
) -> dict[str, torch.Tensor]:
    """All ranks' rows (each tensor's first dim is the row), one per distinct ``rows['index']``, sorted.

    Where an index arrives more than once (sampler padding), the lowest rank's first row is kept, so every
    rank gets the same result. ``module``'s trainer says who takes part (``module.all_gather``); code that
    has no module, such as a loss, passes None and gathers over the initialised ``torch.distributed`` group.
    ``to_cpu=False`` leaves the rows on their device (a loss that feeds them back into its own buffers).
    """
    if module is not None:
        world = module.trainer.world_size if module.trainer is not None else 1
        all_gather = module.all_gather
    else:
        world = distributed_world()[1]
        all_gather = _all_gather_stacked
    if world > 1:
        device = rows["index"].device
        count = torch.tensor([rows["index"].shape[0]], device=device)
        counts = all_gather(count).view(-1)
        longest = int(counts.max())
        gathered = {}
        for name, value in rows.items():
            padded = value.new_zeros((longest, *value.shape[1:]))
            padded[: value.shape[0]] = value
            stacked = all_gather(padded)  # (world, longest, ...)
            gathered[name] = torch.cat([stacked[r, : int(counts[r])] for r in range(world)])
        rows = gathered
    if to_cpu:
        rows = {name: value.cpu() for name, value in rows.items()}
    index = rows["index"]
    order = torch.argsort(index, stable=True)
    sorted_index = index[order]
    keep = torch.ones_like(sorted_index, dtype=torch.bool)
    keep[1:] = sorted_index[1:] != sorted_index[:-1]
    chosen = order[keep]
    return {name: value[chosen] for name, value in rows.items()}


def _all_gather_stacked(tensor: torch.Tensor) -> torch.Tensor:
    """``torch.distributed.all_gather`` stacked to (world, ...), as ``LightningModule.all_gather`` returns it."""
    parts = [torch.empty_like(tensor) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(parts, tensor.contiguous())
    return torch.stack(parts)


def concat_rows(batches: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    if not batches:
        return {}
    return {name: torch.cat([b[name] for b in batches]) for name in batches[0]}


def distributed_world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, or (0, 1) outside one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def unpadded_eval_sampler(dataset) -> "torch.utils.data.DistributedSampler | None":
    """A sampler giving each rank a disjoint, *unpadded* slice of an evaluation set (None without DDP).

    Lightning's default for validation is a padding ``DistributedSampler``, which makes every rank read the
    same number of samples by repeating a few: accuracy would count those twice. Evaluation runs without
    gradients, so DDP never synchronises during it and ranks may read one batch more or less than others.
    Lightning keeps a sampler that is already a ``DistributedSampler`` instead of replacing it.
    """
    rank, world = distributed_world()
    if world == 1:
        return None
    from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

    return UnrepeatedDistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False)
