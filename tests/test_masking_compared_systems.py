"""Masking strategies of peer ("seed") systems: Dispersion-Weighted Masking (DWM) and inverse block masking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modeling_audiomosaic.masking import (
    MASKING_STRATEGIES,
    _stamp_blocks,
    apply_masking,
    dispersion_weights,
    dwm_hint_ratio,
    dwm_masking,
    inverse_block_masking,
    random_masking,
)

GRID = (64, 8)  # 1024 frames x 128 mel bins, 16x16 patches
L = 512


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _assert_contract(out, batch: int, num: int, kept: int) -> None:
    assert out.ids_keep.shape == (batch, kept) and out.ids_keep.dtype == torch.long
    assert out.mask.shape == (batch, num) and out.mask.dtype == torch.bool
    assert (out.ids_keep.diff(dim=1) > 0).all()  # ascending and unique
    assert (out.mask.sum(dim=1) == num - kept).all()
    assert not out.mask.gather(1, out.ids_keep).any()


def _components(keep: np.ndarray, rows: int, cols: int) -> int:
    """Number of 4-connected components of the kept cells of a row-major (rows, cols) grid."""
    grid = np.zeros(rows * cols, dtype=bool)
    grid[keep] = True
    grid = grid.reshape(rows, cols)
    seen = np.zeros_like(grid)
    count = 0
    for r in range(rows):
        for c in range(cols):
            if not grid[r, c] or seen[r, c]:
                continue
            count += 1
            seen[r, c] = True
            stack = [(r, c)]
            while stack:
                a, b = stack.pop()
                for x, y in ((a + 1, b), (a - 1, b), (a, b + 1), (a, b - 1)):
                    if 0 <= x < rows and 0 <= y < cols and grid[x, y] and not seen[x, y]:
                        seen[x, y] = True
                        stack.append((x, y))
    return count


# ---------------------------------------------------------------------------------------------------------- DWM


def _half_textured_spectrogram(batch: int = 1) -> torch.Tensor:
    """1024 x 128 log-mel whose first 512 frames (time patches 0..31) are textured and the rest nearly flat."""
    g = _gen(123)
    spec = torch.randn(batch, 1024, 128, generator=g)
    spec[:, 512:] *= 0.05
    return spec


def test_dispersion_weights_match_numpy_loop():
    spec = torch.randn(2, 70, 48, generator=_gen(1)) * 3 + 1  # 70 frames: the last 6 are ignored; 48 mel = 3 patches
    x = spec.double().numpy()
    p = 16
    t_patches, f_patches = 70 // p, 48 // p
    for metric in ("mad", "variance"):
        ref = np.zeros((2, t_patches * f_patches))
        for b in range(2):
            for t in range(t_patches):
                for f in range(f_patches):
                    patch = x[b, t * p:(t + 1) * p, f * p:(f + 1) * p].ravel()
                    if metric == "mad":
                        value = np.mean(np.abs(patch - patch.mean()))
                    else:
                        value = patch.var(ddof=1)
                    ref[b, t * f_patches + f] = value + 1e-12  # time-major token order
        got = dispersion_weights(spec, p, metric=metric)
        assert got.shape == (2, t_patches * f_patches)
        np.testing.assert_allclose(got.double().numpy(), ref, rtol=1e-5)
        # (B, 1, frames, mel) gives the same weights
        torch.testing.assert_close(dispersion_weights(spec[:, None], p, metric=metric), got)


def test_dispersion_weights_flat_patch_is_positive_and_errors():
    w = dispersion_weights(torch.zeros(1, 32, 32), 16)
    assert torch.equal(w, torch.full((1, 4), 1e-12))
    with pytest.raises(ValueError, match="metric"):
        dispersion_weights(torch.zeros(1, 32, 32), 16, metric="std")
    with pytest.raises(ValueError, match="spectrogram"):
        dispersion_weights(torch.zeros(32, 32), 16)
    with pytest.raises(ValueError, match="no full"):
        dispersion_weights(torch.zeros(1, 8, 32), 16)


def test_dwm_keep_counts_and_contract():
    weights = dispersion_weights(_half_textured_spectrogram(6), 16)
    for ratio, kept in ((0.8, 102), (0.75, 128), (0.7, 153), (0.6, 204)):
        for hint in (0.0, 0.3, 0.5, 1.0):
            for probabilistic in (True, False):
                out = apply_masking("dwm", GRID, 6, ratio, patch_weights=weights, generator=_gen(2),
                                    hint_ratio=hint, probabilistic=probabilistic)
                _assert_contract(out, 6, L, kept)
    # ratio 0 keeps everything
    _assert_contract(dwm_masking(GRID, 2, 0.0, patch_weights=weights[:2], generator=_gen()), 2, L, L)


def test_dwm_masks_textured_patches_more_often():
    draws = 2000
    weights = dispersion_weights(_half_textured_spectrogram(), 16).expand(draws, L).contiguous()
    out = apply_masking("dwm", GRID, draws, 0.5, patch_weights=weights, generator=_gen(3))
    _assert_contract(out, draws, L, 256)
    freq = out.mask.double().mean(dim=0)
    textured, flat = freq[:256], freq[256:]  # time patches 0..31 = tokens 0..255
    # weights ~0.8 vs ~0.04: every textured patch is masked far more often than any flat one (~0.89 vs ~0.11)
    assert textured.min() > 0.75 and flat.max() < 0.25
    assert textured.mean() - flat.mean() > 0.7
    # random masking at the same count treats both halves alike
    rand = apply_masking("random", GRID, draws, 0.5, generator=_gen(3)).mask.double().mean(dim=0)
    assert abs(rand[:256].mean() - rand[256:].mean()) < 0.02


def test_dwm_single_mask_probability_is_proportional_to_weight():
    draws = 20000
    weights = torch.tensor([[1.0, 2.0, 3.0, 4.0]]).expand(draws, 4).contiguous()
    out = dwm_masking((2, 2), draws, 0.25, patch_weights=weights, generator=_gen(4))  # keep 3, mask 1
    freq = out.mask.double().mean(dim=0)
    torch.testing.assert_close(freq, torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64), atol=0.015, rtol=0)


def test_dwm_deterministic_topk_without_hints():
    weights = torch.rand(4, L, generator=_gen(5))
    n_mask = L - 102
    out = dwm_masking(GRID, 4, 0.8, patch_weights=weights, generator=_gen(), hint_ratio=0.0, probabilistic=False)
    top = torch.zeros(4, L, dtype=torch.bool).scatter_(1, weights.topk(n_mask, dim=1).indices, True)
    assert torch.equal(out.mask, top)


def test_dwm_full_hint_is_random_masking():
    weights = torch.rand(5, L, generator=_gen(6))
    expected = random_masking(GRID, 5, 0.8, generator=_gen(7))
    for hint in (1.0, 1.5):
        for probabilistic in (True, False):
            out = apply_masking("dwm", GRID, 5, 0.8, patch_weights=weights, generator=_gen(7), hint_ratio=hint,
                                probabilistic=probabilistic)
            assert torch.equal(out.ids_keep, expected.ids_keep) and torch.equal(out.mask, expected.mask)
        # the weights are not read at a full hint: the model does not compute them (the curriculum's first epochs)
        out = apply_masking("dwm", GRID, 5, 0.8, patch_weights=None, generator=_gen(7), hint_ratio=hint)
        assert torch.equal(out.ids_keep, expected.ids_keep)


def test_dwm_hints_reduce_overlap_with_top_weights():
    batch, n_keep = 64, 102
    n_mask = L - n_keep
    weights = torch.rand(batch, L, generator=_gen(8)) ** 4
    top = torch.zeros(batch, L, dtype=torch.bool).scatter_(1, weights.topk(n_mask, dim=1).indices, True)
    overlaps = {}
    for probabilistic in (False, True):
        for hint in (0.0, 0.5):
            out = dwm_masking(GRID, batch, 0.8, patch_weights=weights, generator=_gen(9), hint_ratio=hint,
                              probabilistic=probabilistic)
            assert out.num_kept == n_keep  # the hint swap does not change the visible count
            overlaps[probabilistic, hint] = (out.mask & top).sum(dim=1).double()
    n_hint = int(n_mask * 0.5)
    # deterministic: all of the top set without hints; with hints M_rest (n_mask - n_hint) stays, and on average
    # n_hint * n_hint / (n_keep + n_hint) of the hinted patches are re-masked
    assert (overlaps[False, 0.0] == n_mask).all()
    assert (overlaps[False, 0.5] >= n_mask - n_hint).all()
    expected = n_mask - n_hint + n_hint * n_hint / (n_keep + n_hint)
    assert abs(overlaps[False, 0.5].mean().item() - expected) < 5
    assert overlaps[True, 0.5].mean() < overlaps[True, 0.0].mean() - 20


def test_dwm_is_reproducible():
    weights = torch.rand(3, L, generator=_gen(10))
    a = dwm_masking(GRID, 3, 0.8, patch_weights=weights, generator=_gen(11), hint_ratio=0.4).ids_keep
    b = dwm_masking(GRID, 3, 0.8, patch_weights=weights, generator=_gen(11), hint_ratio=0.4).ids_keep
    c = dwm_masking(GRID, 3, 0.8, patch_weights=weights, generator=_gen(12), hint_ratio=0.4).ids_keep
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_dwm_errors():
    weights = torch.rand(2, L)
    with pytest.raises(ValueError, match="requires patch_weights"):
        apply_masking("dwm", GRID, 2, 0.8)
    with pytest.raises(ValueError, match="shape"):
        apply_masking("dwm", GRID, 2, 0.8, patch_weights=torch.rand(2, 256))
    with pytest.raises(ValueError, match="shape"):
        apply_masking("dwm", GRID, 3, 0.8, patch_weights=weights)
    with pytest.raises(ValueError, match="non-negative"):
        apply_masking("dwm", GRID, 2, 0.8, patch_weights=-weights)
    with pytest.raises(ValueError, match="finite"):
        apply_masking("dwm", GRID, 2, 0.8, patch_weights=torch.full((2, L), float("nan")))
    with pytest.raises(ValueError, match="hint_ratio"):
        apply_masking("dwm", GRID, 2, 0.8, patch_weights=weights, hint_ratio=-0.1)
    with pytest.raises(ValueError, match="mask ratio"):
        apply_masking("dwm", GRID, 2, -0.2, patch_weights=weights)
    with pytest.raises(ValueError, match="positive entries"):
        apply_masking("dwm", GRID, 2, 0.8, patch_weights=torch.zeros(2, L))
    with pytest.raises(ValueError, match="patch_weights"):  # other strategies still reject weights
        apply_masking("random", GRID, 2, 0.8, patch_weights=weights)


def test_dwm_registration():
    assert MASKING_STRATEGIES["dwm"] is dwm_masking and dwm_masking.uses_patch_weights is True
    assert MASKING_STRATEGIES["inverse_block"] is inverse_block_masking
    assert not getattr(inverse_block_masking, "uses_patch_weights", False)


def test_dwm_hint_ratio_curriculum():
    for epoch in range(50):
        assert dwm_hint_ratio(epoch, 300) == 1.0
    assert dwm_hint_ratio(50, 300) == pytest.approx(35 / 36)  # 0.9722...
    assert dwm_hint_ratio(100, 300) == pytest.approx(8 / 9)  # 0.8889
    assert dwm_hint_ratio(200, 300) == pytest.approx(5 / 9)  # 0.5556
    assert dwm_hint_ratio(299, 300) == pytest.approx(0.0066556, abs=1e-6)  # 1 - (299/300)^2
    assert dwm_hint_ratio(50, 400) == pytest.approx(0.984375)
    assert dwm_hint_ratio(399, 400) == pytest.approx(0.005, abs=1e-4)
    assert dwm_hint_ratio(300, 300) == 0.0 and dwm_hint_ratio(400, 300) == 0.0  # clipped
    assert dwm_hint_ratio(10, 300, start_epoch=0, k=1.0) == pytest.approx(1 - 10 / 300)
    # absolute override
    assert dwm_hint_ratio(0, 300, abs_hint_ratio=0.3) == 0.3 and dwm_hint_ratio(250, 300, abs_hint_ratio=0.0) == 0.0
    with pytest.raises(ValueError, match="total_epochs"):
        dwm_hint_ratio(0, 0)


# ------------------------------------------------------------------------------------------- inverse block masking


def _stamp_reference(centres, grid, block_size: int) -> np.ndarray:
    """Plain-loop stamping: (B, L) bool with clamped b x b squares around (row, col) = divmod(centre, W)."""
    rows, cols = grid
    out = np.zeros((len(centres), rows * cols), dtype=bool)
    for b, sample in enumerate(centres):
        for centre in sample:
            r0, c0 = divmod(int(centre), cols)
            for dr in range(-(block_size // 2), block_size - block_size // 2):
                for dc in range(-(block_size // 2), block_size - block_size // 2):
                    r = min(max(r0 + dr, 0), rows - 1)
                    c = min(max(c0 + dc, 0), cols - 1)
                    out[b, r * cols + c] = True
    return out


def test_stamp_blocks_matches_loop_reference():
    cases = [((64, 8), 5), ((8, 8), 5), ((5, 3), 3), ((32, 8), 4), ((10, 10), 1), ((64, 8), 6)]
    for seed, (grid, block) in enumerate(cases):
        num = grid[0] * grid[1]
        centres = torch.randint(0, num, (6, 4), generator=_gen(seed))
        centres[0] = torch.tensor([0, num - 1, grid[1] - 1, num - grid[1]])  # the four corners
        got = _stamp_blocks(centres, grid, block)
        assert got.dtype == torch.bool and got.shape == (6, num)
        np.testing.assert_array_equal(got.numpy(), _stamp_reference(centres.numpy(), grid, block))
    empty = _stamp_blocks(torch.zeros(3, 0, dtype=torch.long), GRID, 5)
    assert empty.shape == (3, L) and not empty.any()


def test_stamp_blocks_clamps_at_edges():
    stamp = _stamp_blocks(torch.tensor([[0]]), GRID, 5).reshape(64, 8)
    expected = torch.zeros(64, 8, dtype=torch.bool)
    expected[0:3, 0:3] = True  # rows 0..2 x cols 0..2
    assert torch.equal(stamp, expected)
    stamp = _stamp_blocks(torch.tensor([[63 * 8 + 7]]), GRID, 5).reshape(64, 8)
    expected = torch.zeros(64, 8, dtype=torch.bool)
    expected[61:64, 5:8] = True
    assert torch.equal(stamp, expected)
    stamp = _stamp_blocks(torch.tensor([[20 * 8 + 4]]), GRID, 5).reshape(64, 8)  # interior: a full 5x5 square
    expected = torch.zeros(64, 8, dtype=torch.bool)
    expected[18:23, 2:7] = True
    assert torch.equal(stamp, expected)


@pytest.mark.parametrize("grid,kept", [((64, 8), 102), ((32, 8), 51), ((8, 8), 12)])
def test_inverse_block_keep_counts(grid, kept):
    num = grid[0] * grid[1]
    assert kept == int(num * (1 - 0.8))
    out = apply_masking("inverse_block", grid, 16, 0.8, generator=_gen(13))
    _assert_contract(out, 16, num, kept)


def test_inverse_block_is_block_structured():
    draws = 200
    block = apply_masking("inverse_block", GRID, draws, 0.8, generator=_gen(14)).ids_keep.numpy()
    rand = apply_masking("random", GRID, draws, 0.8, generator=_gen(14)).ids_keep.numpy()
    block_components = np.mean([_components(ids, *GRID) for ids in block])
    rand_components = np.mean([_components(ids, *GRID) for ids in rand])
    assert block_components < 0.3 * rand_components, (block_components, rand_components)


def test_inverse_block_equalises_the_stamp():
    """The kept set is a subset of the stamp when the stamp is too large, and a superset when it is too small.

    The stamp is rebuilt from the same generator: the centres are the strategy's first draw (5 per sample for L = 512).
    """
    batch, target = 64, 102
    out = inverse_block_masking(GRID, batch, 0.8, generator=_gen(15))
    centres = torch.randint(0, L, (batch, int(L * (0.2 + 0.07) / 25)), generator=_gen(15))
    assert centres.shape[1] == 5
    stamp = _stamp_reference(centres.numpy(), GRID, 5)
    kept = ~out.mask.numpy()
    larger = smaller = 0
    for s, k in zip(stamp, kept):
        if s.sum() >= target:
            assert not (k & ~s).any()
            larger += 1
        else:
            assert not (s & ~k).any()
            smaller += 1
    assert larger > 0 and smaller > 0


def test_inverse_block_small_grid_is_uniform():
    draws = 4000
    out = inverse_block_masking((8, 8), draws, 0.8, generator=_gen(16))  # no centre: uniform keep of 12 of 64
    freq = (~out.mask).double().mean(dim=0)
    assert (freq - 12 / 64).abs().max() < 0.03


def test_inverse_block_determinism_and_errors():
    a = apply_masking("inverse_block", GRID, 4, 0.8, generator=_gen(17)).ids_keep
    b = apply_masking("inverse_block", GRID, 4, 0.8, generator=_gen(17)).ids_keep
    c = apply_masking("inverse_block", GRID, 4, 0.8, generator=_gen(18)).ids_keep
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="keeps no patch"):
        apply_masking("inverse_block", (2, 2), 2, 0.8)
    with pytest.raises(ValueError, match="patch_weights"):
        apply_masking("inverse_block", GRID, 2, 0.8, patch_weights=torch.ones(2, L))
    with pytest.raises(ValueError, match="mask ratio"):
        apply_masking("inverse_block", GRID, 2, 1.0)
