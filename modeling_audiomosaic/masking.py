"""Token-masking strategies for pre-training, behind one contract.

Every strategy is a function

    strategy(grid, batch_size, mask_ratio, *, patch_weights=None, generator=None, device=None, **options)
        -> MaskingOutput(ids_keep (B, K) long, mask (B, L) bool)

* ``grid = (T', F')`` is the patch grid in the encoder's token order: token ``i = t * F' + f`` (time-major).
* ``ids_keep`` are the kept (visible) patch-token indices, sorted ascending, the same count ``K`` for every sample, CLS
  excluded (the encoder always keeps CLS in front). ``mask`` is ``True`` where a patch is dropped.
* ``mask_ratio`` is a float (or a ``(time, freq)`` pair for ``time_freq``); keep counts use the original's floor
  ``int(n * (1 - ratio))``.
* Randomness comes only from ``generator`` (a ``torch.Generator``), so masks are reproducible.
* ``patch_weights`` ``(B, L)`` is for content-aware strategies; the others reject it.

``MASKING_STRATEGIES`` maps names to strategies. "time"/"freq" act on the true grid (what the paper describes);
"original_time"/"original_freq" reproduce the released code, which views the tokens on a swapped ``(F', T')`` grid:
for 1024x128 inputs at ratios 0.6 / 0.4 they keep 192 / 304 patches (193 / 305 tokens with CLS) instead of 200 / 256.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class MaskingOutput:
    """Result of a masking strategy: kept patch indices ``(B, K)`` (ascending) and the dropped-patch mask ``(B, L)``."""

    ids_keep: torch.LongTensor
    mask: torch.BoolTensor

    @property
    def num_kept(self) -> int:
        return self.ids_keep.shape[1]


def keep_count(n: int, ratio: float) -> int:
    """Number of items kept out of ``n`` at mask ratio ``ratio`` (the original's ``int(n * (1 - ratio))``)."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}.")
    return int(n * (1 - ratio))


def _check(grid, batch_size, patch_weights, name, uses_weights=False):
    if len(grid) != 2 or min(grid) < 1:
        raise ValueError(f"grid must be (time_patches, freq_patches) with positive sizes, got {grid}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    if patch_weights is not None and not uses_weights:
        raise ValueError(f"masking strategy {name!r} does not use patch_weights.")


def _rand(shape, generator, device):
    return torch.rand(shape, generator=generator, device=generator.device if generator is not None else device)


def _finish(ids_keep: torch.Tensor, num_patches: int, device) -> MaskingOutput:
    ids_keep = ids_keep.sort(dim=1).values.to(device)
    mask = torch.ones(ids_keep.shape[0], num_patches, dtype=torch.bool, device=ids_keep.device)
    mask.scatter_(1, ids_keep, False)
    return MaskingOutput(ids_keep=ids_keep, mask=mask)


def _stripes(rows: int, cols: int, keep_axis: int, n_keep: int, batch_size: int, generator, device) -> torch.Tensor:
    """Keep ``n_keep`` random whole rows (``keep_axis=0``) or columns (``1``) of a row-major ``(rows, cols)`` view of
    the tokens (cell ``(r, c)`` = token ``r * cols + c``); returns unsorted token indices ``(B, n_keep * other)``."""
    n = rows if keep_axis == 0 else cols
    chosen = _rand((batch_size, n), generator, device).argsort(dim=1)[:, :n_keep]  # (B, n_keep)
    if keep_axis == 0:
        return (chosen[:, :, None] * cols + torch.arange(cols, device=chosen.device)).flatten(1)
    return (torch.arange(rows, device=chosen.device)[None, :, None] * cols + chosen[:, None, :]).flatten(1)


def time_masking(grid, batch_size, mask_ratio, *, patch_weights=None, generator=None, device=None):
    """Drop whole time columns of the true grid: keep ``int(T' (1 - r))`` time indices, all frequency patches each."""
    _check(grid, batch_size, patch_weights, "time")
    t, f = grid
    ids = _stripes(t, f, 0, keep_count(t, mask_ratio), batch_size, generator, device)
    return _finish(ids, t * f, device)


def freq_masking(grid, batch_size, mask_ratio, *, patch_weights=None, generator=None, device=None):
    """Drop whole frequency bands of the true grid: keep ``int(F' (1 - r))`` bands over all time patches."""
    _check(grid, batch_size, patch_weights, "freq")
    t, f = grid
    ids = _stripes(t, f, 1, keep_count(f, mask_ratio), batch_size, generator, device)
    return _finish(ids, t * f, device)


def original_time_masking(grid, batch_size, mask_ratio, *, patch_weights=None, generator=None, device=None):
    """The released code's "time" masking: the tokens viewed as a ``(F', T')`` grid (swapped), whole rows kept.

    Row ``a`` holds tokens ``[a T', (a + 1) T')``: with time-major tokens these are ``T' / F'`` consecutive time
    patches with all bands. For 1024 frames (T' = 64, F' = 8) it keeps 3 chunks of 8 consecutive time patches at
    ratio 0.6 (192 patches).
    """
    _check(grid, batch_size, patch_weights, "original_time")
    t, f = grid
    ids = _stripes(f, t, 0, keep_count(f, mask_ratio), batch_size, generator, device)
    return _finish(ids, t * f, device)


def original_freq_masking(grid, batch_size, mask_ratio, *, patch_weights=None, generator=None, device=None):
    """The released code's "frequency" masking: columns ``b`` of the swapped ``(F', T')`` view are kept.

    Column ``b`` holds tokens ``{a T' + b}``: for 1024 frames it is band ``b mod 8`` at the 8 time patches
    ``t = 8 a + b // 8`` — a phase pattern, not a band. At ratio 0.4 it keeps 38 of 64 columns (304 patches).
    """
    _check(grid, batch_size, patch_weights, "original_freq")
    t, f = grid
    ids = _stripes(f, t, 1, keep_count(t, mask_ratio), batch_size, generator, device)
    return _finish(ids, t * f, device)


def random_masking(grid, batch_size, mask_ratio, *, patch_weights=None, generator=None, device=None):
    """MAE unstructured masking: keep ``int(L (1 - r))`` patches chosen uniformly per sample."""
    _check(grid, batch_size, patch_weights, "random")
    num = grid[0] * grid[1]
    ids = _rand((batch_size, num), generator, device).argsort(dim=1)[:, : keep_count(num, mask_ratio)]
    return _finish(ids, num, device)


def time_freq_masking(grid, batch_size, mask_ratio, *, patch_weights=None, generator=None, device=None):
    """Fine-tuning 2-D token drop (AudioMAE / AudioMosaic classifier): drop time columns AND frequency bands.

    ``mask_ratio = (time_ratio, freq_ratio)`` (a float applies to both). Keeps ``int(T'(1-rt)) x int(F'(1-rf))``
    patches, e.g. 51 x 6 = 306 for 1024 frames at (0.2, 0.2).
    """
    _check(grid, batch_size, patch_weights, "time_freq")
    t_ratio, f_ratio = (mask_ratio, mask_ratio) if isinstance(mask_ratio, (int, float)) else mask_ratio
    t, f = grid
    times = _rand((batch_size, t), generator, device).argsort(dim=1)[:, : keep_count(t, t_ratio)]
    freqs = _rand((batch_size, f), generator, device).argsort(dim=1)[:, : keep_count(f, f_ratio)]
    ids = (times[:, :, None] * f + freqs[:, None, :]).flatten(1)
    return _finish(ids, t * f, device)


MaskingStrategy = Callable[..., MaskingOutput]

MASKING_STRATEGIES: dict[str, MaskingStrategy] = {
    "time": time_masking,
    "freq": freq_masking,
    "original_time": original_time_masking,
    "original_freq": original_freq_masking,
    "random": random_masking,
    "time_freq": time_freq_masking,
}


def register_masking_strategy(name: str, fn: MaskingStrategy, overwrite: bool = False) -> None:
    """Add a strategy under ``name`` (it must follow the contract of this module)."""
    if name in MASKING_STRATEGIES and not overwrite:
        raise ValueError(f"masking strategy {name!r} already exists; pass overwrite=True to replace it.")
    MASKING_STRATEGIES[name] = fn


def get_masking_strategy(name: str) -> MaskingStrategy:
    """Look up a strategy by name, with an error listing the valid names."""
    if name not in MASKING_STRATEGIES:
        raise ValueError(f"Unknown masking strategy {name!r}; choose one of {sorted(MASKING_STRATEGIES)}.")
    return MASKING_STRATEGIES[name]


def apply_masking(
    name: str,
    grid: tuple[int, int],
    batch_size: int,
    mask_ratio,
    *,
    patch_weights: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device=None,
    **options,
) -> MaskingOutput:
    """Run strategy ``name`` and check the contract (shape, equal keep counts, mask consistency)."""
    out = get_masking_strategy(name)(
        tuple(grid), batch_size, mask_ratio, patch_weights=patch_weights, generator=generator, device=device, **options
    )
    num = grid[0] * grid[1]
    if out.ids_keep.ndim != 2 or out.ids_keep.shape[0] != batch_size or out.mask.shape != (batch_size, num):
        raise RuntimeError(f"masking strategy {name!r} broke the contract: {tuple(out.ids_keep.shape)}, "
                           f"{tuple(out.mask.shape)}")
    if out.ids_keep.shape[1] == 0:
        raise ValueError(f"masking strategy {name!r} at ratio {mask_ratio} keeps no patch of a {grid} grid.")
    return out


__all__ = [
    "MaskingOutput",
    "MASKING_STRATEGIES",
    "apply_masking",
    "get_masking_strategy",
    "keep_count",
    "register_masking_strategy",
    "time_masking",
    "freq_masking",
    "original_time_masking",
    "original_freq_masking",
    "random_masking",
    "time_freq_masking",
]
