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

"inverse_block" (data2vec 2.0 / EAT, M2D ``--block_mask``): the *visible* region is made of b x b squares (b = 5)
around ``n_c = int(L (1 - r + a) / b^2)`` random centres (a = 0.07; clamped to the grid edges), equalised by random
removal/addition to exactly ``int(L (1 - r))`` cells: L = 512 at r = 0.8 → 5 centres, 102 kept; L = 256 → 2 centres,
51 kept; L = 64 → no centre, i.e. 12 uniformly random patches.

"dwm" (Dispersion-Weighted Masking, arXiv 2603.23810) needs ``patch_weights`` from :func:`dispersion_weights` (mean
absolute deviation, or variance, of each patch of the normalised log-mel input). It masks ``L - int(L (1 - r))``
patches drawn without replacement with probability proportional to the weight (textured patches are masked more often
than flat background; L = 512, r = 0.8 → 410 masked, 102 kept), then swaps ``int(n_mask * hint_ratio)`` of them back
at random ("hints"); ``hint_ratio >= 1`` is plain random masking. :func:`dwm_hint_ratio` is the curriculum, e.g. for
300 epochs (start 50, k = 2): epochs 0-49 → 1.0, 50 → 0.972, 100 → 0.889, 200 → 0.556, 299 → 0.0067 (for 400 epochs:
50 → 0.984, 399 → 0.005). Strategies that need weights carry ``uses_patch_weights = True``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .device_checks import check_on_device


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


def mask_from_ids_keep(ids_keep: torch.Tensor, num_patches: int) -> torch.BoolTensor:
    """The ``(B, L)`` dropped-patch mask (``True`` = dropped) of kept indices ``(B, K)``."""
    mask = torch.ones(ids_keep.shape[0], num_patches, dtype=torch.bool, device=ids_keep.device)
    return mask.scatter_(1, ids_keep, False)


def _finish(ids_keep: torch.Tensor, num_patches: int, device) -> MaskingOutput:
    ids_keep = ids_keep.sort(dim=1).values.to(device)
    return MaskingOutput(ids_keep=ids_keep, mask=mask_from_ids_keep(ids_keep, num_patches))


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


def _stamp_blocks(centres: torch.Tensor, grid, block_size: int) -> torch.Tensor:
    """Stamp a ``block_size`` x ``block_size`` square around each centre (inverse block masking, steps 2-3).

    ``centres`` are ``(B, n_c)`` token indices on the ``(H, W) = grid`` token grid (row ``c // W``, column ``c % W``).
    Offsets run from ``-(b // 2)`` to ``b - 1 - b // 2`` in both axes and coordinates are clamped to the grid, so
    squares near an edge shrink onto the edge row/column; overlapping squares merge. Returns a ``(B, L)`` bool tensor
    (``True`` = stamped).
    """
    rows_n, cols_n = grid
    centres = centres.long()
    offsets = torch.arange(block_size, device=centres.device) - block_size // 2
    rows = (centres // cols_n)[:, :, None] + offsets  # (B, n_c, b)
    cols = (centres % cols_n)[:, :, None] + offsets
    rows, cols = rows.clamp(0, rows_n - 1), cols.clamp(0, cols_n - 1)
    cells = (rows[:, :, :, None] * cols_n + cols[:, :, None, :]).flatten(1)  # (B, n_c * b * b)
    stamp = torch.zeros(centres.shape[0], rows_n * cols_n, dtype=torch.bool, device=centres.device)
    return stamp.scatter_(1, cells, True)


def _equalise(stamp: torch.Tensor, target: int, generator, device) -> torch.Tensor:
    """Indices ``(B, target)`` (unsorted) of ``stamp`` equalised to ``target`` set cells (inverse block step 4).

    Ranking ``stamp + U(0, 1)`` puts every set cell before every unset cell, each group in uniformly random order, so
    the first ``target`` ranks are: a uniform subset of the set cells without replacement when there are ``n >=
    target`` of them (= unsetting ``n - target`` uniformly chosen set cells), otherwise all set cells plus
    ``target - n`` uniformly chosen unset cells.
    """
    score = stamp.to(torch.float64) + _rand(stamp.shape, generator, device).to(stamp.device, torch.float64)
    return score.argsort(dim=1, descending=True)[:, :target]


def inverse_block_masking(
    grid, batch_size, mask_ratio, *, patch_weights=None, generator=None, device=None, block_size: int = 5,
    mask_prob_adjust: float = 0.07,
):
    """Inverse block masking (data2vec 2.0 / EAT; M2D ``--block_mask``): the visible region is a few b x b squares.

    ``p' = 1 - r`` is the fraction kept; ``n_c = int(L (p' + a) / b^2)`` centres are drawn uniformly with replacement
    per sample, a b x b square is stamped around each (clamped to the grid, see :func:`_stamp_blocks`), and the stamp
    is equalised to exactly ``int(L p')`` cells by uniform random removal/addition; the stamped cells are kept. Grid
    rows are time patches (``H = T'``), columns frequency patches (``W = F'``). L = 512 at r = 0.8: 5 centres, 102
    kept; L = 256: 2 centres, 51 kept; L = 64: no centre, i.e. 12 uniformly random patches.
    """
    _check(grid, batch_size, patch_weights, "inverse_block")
    if block_size < 1:
        raise ValueError(f"block_size must be positive, got {block_size}.")
    if mask_prob_adjust < 0:
        raise ValueError(f"mask_prob_adjust must be non-negative, got {mask_prob_adjust}.")
    num = grid[0] * grid[1]
    target = keep_count(num, mask_ratio)
    if target == 0:
        raise ValueError(f"inverse block masking at ratio {mask_ratio} keeps no patch of a {tuple(grid)} grid.")
    keep_fraction = 1 - mask_ratio
    n_centres = int(num * (keep_fraction + mask_prob_adjust) / block_size**2)
    work = generator.device if generator is not None else device
    centres = torch.randint(0, num, (batch_size, n_centres), generator=generator, device=work)
    stamp = _stamp_blocks(centres, grid, block_size)
    return _finish(_equalise(stamp, target, generator, work), num, device)


def patchify(spectrogram: torch.Tensor, patch_size) -> torch.Tensor:
    """``(B, frames, mel)`` (or ``(B, 1, frames, mel)``) -> ``(B, L, ph * pw)`` patches in time-major token order.

    Patch ``t * F' + f`` holds frames ``[t ph, (t+1) ph)`` x bins ``[f pw, (f+1) pw)``, flattened frame-major;
    ``patch_size`` is an int (square) or a ``(time, freq)`` pair. Frames (and bins) beyond a multiple of the patch size
    are ignored, as the patch embedding ignores them. Used by DWM's weights and by the MAE targets.
    """
    x = spectrogram
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"spectrogram must be (batch, frames, mel_bins) or (batch, 1, frames, mel_bins); got "
                         f"{tuple(spectrogram.shape)}.")
    ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
    if ph < 1 or pw < 1:
        raise ValueError(f"patch_size must be positive, got {patch_size}.")
    t, f = x.shape[1] // ph, x.shape[2] // pw
    if t == 0 or f == 0:
        raise ValueError(f"a {tuple(x.shape[1:])} spectrogram holds no full {ph}x{pw} patch.")
    x = x[:, : t * ph, : f * pw].reshape(x.shape[0], t, ph, f, pw)
    return x.permute(0, 1, 3, 2, 4).reshape(x.shape[0], t * f, ph * pw)


def dispersion_weights(spectrogram: torch.Tensor, patch_size, metric: str = "mad") -> torch.Tensor:
    """Per-patch dispersion of the normalised log-mel input (DWM step 2-3), in the encoder's token order.

    ``spectrogram`` is ``(B, frames, mel_bins)`` or ``(B, 1, frames, mel_bins)``; ``patch_size`` an int (square
    patches) or a ``(time, freq)`` pair (see :func:`patchify`). ``metric="mad"``: mean absolute deviation of the
    patch's pixels from the patch mean; ``"variance"``: their unbiased variance. ``1e-12`` is added so no weight is
    zero. Returns ``(B, L)`` float weights.
    """
    if metric not in ("mad", "variance"):
        raise ValueError(f"Unknown dispersion metric {metric!r}; choose 'mad' or 'variance'.")
    patches = patchify(spectrogram, patch_size)
    if patches.dtype != torch.float64:
        patches = patches.float()
    if metric == "mad":
        weights = (patches - patches.mean(dim=-1, keepdim=True)).abs().mean(dim=-1)
    else:
        weights = patches.var(dim=-1)
    return weights + 1e-12


def dwm_hint_ratio(
    epoch: int, total_epochs: int, start_epoch: int = 50, k: float = 2.0, abs_hint_ratio: float = -1.0
) -> float:
    """DWM curriculum: the hint ratio for 0-based ``epoch`` of ``total_epochs``.

    ``abs_hint_ratio >= 0`` overrides; else ``1.0`` before ``start_epoch`` (pure random masking) and
    ``1 - (epoch / total_epochs) ** k`` after, clipped to ``[0, 1]``.
    """
    if total_epochs <= 0:
        raise ValueError(f"total_epochs must be positive, got {total_epochs}.")
    if abs_hint_ratio >= 0:
        h = float(abs_hint_ratio)
    elif epoch < start_epoch:
        h = 1.0
    else:
        h = 1.0 - (epoch / total_epochs) ** k
    return min(max(h, 0.0), 1.0)


def dwm_masking(
    grid, batch_size, mask_ratio, *, patch_weights=None, generator=None, device=None, hint_ratio: float = 0.0,
    probabilistic: bool = True,
):
    """Dispersion-Weighted Masking (DWM): mask patches with probability proportional to ``patch_weights``.

    ``patch_weights`` ``(B, L)`` (non-negative, finite; usually :func:`dispersion_weights`) is required. With
    ``hint_ratio >= 1`` the result is exactly :func:`random_masking`. Otherwise ``n_keep = int(L (1 - r))``,
    ``n_mask = L - n_keep`` patches are drawn without replacement with probability proportional to the weight
    (``probabilistic=False``: the top-``n_mask`` weights), then ``n_hint = int(n_mask * hint_ratio)`` of them are
    chosen at random and pooled with the visible patches, and ``n_hint`` of that pool are re-masked at random: the
    remaining ``n_keep`` are kept.
    """
    _check(grid, batch_size, patch_weights, "dwm", uses_weights=True)
    num = grid[0] * grid[1]
    if not hint_ratio >= 0:
        raise ValueError(f"hint_ratio must be non-negative, got {hint_ratio}.")
    if hint_ratio >= 1:  # every masked patch is a hint: plain random masking, the weights are not read
        return random_masking(grid, batch_size, mask_ratio, generator=generator, device=device)
    if patch_weights is None:
        raise ValueError("masking strategy 'dwm' requires patch_weights (B, L); compute them with "
                         "dispersion_weights(spectrogram, patch_size).")
    if tuple(patch_weights.shape) != (batch_size, num):
        raise ValueError(f"patch_weights must have shape (batch_size, num_patches) = {(batch_size, num)}, got "
                         f"{tuple(patch_weights.shape)}.")
    # checked on the device (no host read on an accelerator; see device_checks)
    check_on_device(torch.isfinite(patch_weights).all(), "patch_weights must be finite (found NaN or inf).")
    check_on_device((patch_weights >= 0).all(), "patch_weights must be non-negative.")
    n_keep = keep_count(num, mask_ratio)
    n_mask = num - n_keep
    work = generator.device if generator is not None else (device if device is not None else patch_weights.device)
    if n_mask == 0:
        return _finish(torch.arange(num, device=work).expand(batch_size, num), num, device)
    weights = patch_weights.to(work)
    if not weights.is_floating_point():
        weights = weights.float()
    n_hint = int(n_mask * hint_ratio)
    if probabilistic:
        check_on_device(((weights > 0).sum(dim=1) >= n_mask).all(), f"patch_weights need at least n_mask = {n_mask} "
                        "positive entries per sample for sampling without replacement.")
        # torch.multinomial(weights, n_mask, replacement=False, generator=generator), drawn as torch draws it (the
        # top n_mask of weight / Exp(1), the same numbers), without its input checks that read values on the host
        race = torch.empty_like(weights).exponential_(1.0, generator=generator)
        masked0 = (weights / race).topk(n_mask, dim=1).indices  # (B, n_mask)
    else:
        masked0 = weights.topk(n_mask, dim=1).indices
    is_masked = torch.zeros(batch_size, num, dtype=torch.bool, device=work).scatter_(1, masked0, True)
    visible0 = is_masked.to(torch.uint8).argsort(dim=1, stable=True)[:, :n_keep]  # complement, ascending
    # hint swap: n_hint random masked patches join the visible pool, then n_hint random pool members are re-masked
    masked0 = masked0.gather(1, _rand((batch_size, n_mask), generator, work).argsort(dim=1))
    pool = torch.cat([visible0, masked0[:, :n_hint]], dim=1)  # (B, n_keep + n_hint)
    pool = pool.gather(1, _rand(pool.shape, generator, work).argsort(dim=1))
    return _finish(pool[:, n_hint:], num, device)


dwm_masking.uses_patch_weights = True


MaskingStrategy = Callable[..., MaskingOutput]

MASKING_STRATEGIES: dict[str, MaskingStrategy] = {
    "time": time_masking,
    "freq": freq_masking,
    "original_time": original_time_masking,
    "original_freq": original_freq_masking,
    "random": random_masking,
    "time_freq": time_freq_masking,
    "dwm": dwm_masking,
    "inverse_block": inverse_block_masking,
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
    "mask_from_ids_keep",
    "register_masking_strategy",
    "time_masking",
    "freq_masking",
    "original_time_masking",
    "original_freq_masking",
    "random_masking",
    "time_freq_masking",
    "dwm_masking",
    "dwm_hint_ratio",
    "dispersion_weights",
    "patchify",
    "inverse_block_masking",
]
