"""Gathering per-sample outputs from every rank, keyed by dataset index.

A DistributedSampler pads the last batch with repeated samples, so rows are de-duplicated by index,
never by order; ranks may also hold different row counts, so rows are padded before the gather.
"""

from __future__ import annotations

import lightning as L
import torch


def gather_rows_by_index(module: L.LightningModule, rows: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """All ranks' rows (each tensor's first dim is the row), one per distinct ``rows['index']``, sorted."""
    world = module.trainer.world_size if module.trainer is not None else 1
    if world > 1:
        count = torch.tensor([rows["index"].shape[0]], device=module.device)
        counts = module.all_gather(count).view(-1)
        longest = int(counts.max())
        gathered = {}
        for name, value in rows.items():
            padded = value.new_zeros((longest, *value.shape[1:]))
            padded[: value.shape[0]] = value
            stacked = module.all_gather(padded)  # (world, longest, ...)
            gathered[name] = torch.cat([stacked[r, : int(counts[r])] for r in range(world)])
        rows = gathered
    index = rows["index"].cpu()
    order = torch.argsort(index, stable=True)
    sorted_index = index[order]
    keep = torch.ones_like(sorted_index, dtype=torch.bool)
    keep[1:] = sorted_index[1:] != sorted_index[:-1]
    chosen = order[keep]
    return {name: value.cpu()[chosen] for name, value in rows.items()}


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
