"""Collectives used by the objectives and the projector: an all-gather and a sum that let gradients flow back to every
rank."""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    """Number of processes, 1 without an initialised process group (so single-process runs never call collectives)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def rank() -> int:
    """This process's rank (0 without an initialised process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0; the backward sums the incoming gradients over ranks (all-reduce) and returns this rank's
    slice, so each rank's loss contributes gradients to the embeddings of every rank (negatives included)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.contiguous()
        gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, tensor)
        ctx.batch = tensor.shape[0]
        return torch.cat(gathered, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        start = dist.get_rank() * ctx.batch
        return grad[start : start + ctx.batch]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from all ranks along dim 0, differentiably (identity in a single process).

    All ranks must pass the same shape (use ``drop_last=True`` in data loaders). The gradient of a rank-local loss is
    summed over ranks; DDP's gradient averaging then yields the gradient of the mean of the rank losses.
    """
    if world_size() == 1:
        return tensor
    return _GatherWithGrad.apply(tensor)


class _SumWithGrad(torch.autograd.Function):
    """All-reduce (sum); the backward sums the incoming gradients over ranks, as every rank's loss reads the sum."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.detach().clone().contiguous()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


def sum_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over all ranks, differentiably (identity in a single process). A collective."""
    if world_size() == 1:
        return tensor
    return _SumWithGrad.apply(tensor)


def gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from all ranks (no gradient; for metrics)."""
    if world_size() == 1:
        return tensor.detach()
    with torch.no_grad():
        gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, tensor.detach().contiguous())
    return torch.cat(gathered, dim=0)


def gather_objects(obj):
    """``[obj of rank 0, obj of rank 1, ...]`` (picklable objects; a collective: every rank must call it). A list of
    one element in a single process."""
    if world_size() == 1:
        return [obj]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered
