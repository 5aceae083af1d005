# coding=utf-8
"""Contrastive views on the accelerator: the waveform chain of :class:`~.augmentation_views.ContrastiveViewGenerator`
as batched torch operations that run on any device.

The host path (``ContrastiveViewGenerator.__call__``) augments every view row by row on the CPU (scipy ``sosfilt`` in
float64) and computes the Kaldi features there; at the paper's scale that costs 10-20 host cores per GPU
(``docs/RESULTS.md``, ``data_path``). Here the data workers only decode and crop; the collator draws every random
parameter on the CPU from the same deterministic ``(seed, epoch, clip ids)`` generator, in the same order as the host
path (:func:`sample_view_parameters`), and the training step turns ``(waveforms, parameters)`` into features on the
model's device (:func:`views_from_parameters`):

1. roll + gain + polarity: one ``gather`` per group of rows (``out[j] = scale * clip[(j - shift) mod length]``);
2. Gaussian noise at the drawn SNR (RMS of the scaled row): on the CPU the noise samples are drawn row by row from
   the generator state the collator saved after the parameters, so the device path reproduces the host path
   exactly; on an accelerator they come from a device generator seeded from that state (equally deterministic, not
   sample-identical to the CPU stream);
3. the high-pass and band-stop Butterworth cascades (:func:`sosfilt_steady`), each second-order section computed as
   a block-parallel linear recurrence: a causal FFT convolution inside blocks of ``block`` samples and a log-depth
   scan of the 2-sample state across blocks, started in the steady state of the first sample as the host path
   (``sosfilt`` with ``sosfilt_zi(sos) * x[0]``) does;
4. Kaldi fbank + padding + normalisation: :meth:`AudioMosaicFeatureExtractor.batch_features`.

Speed change (``p_speed > 0``, a soxr resampling) has no device version: such chains raise a clear error.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from .augmentation_chain import sample_roll_parameters
from .feature_extraction_audiomosaic import _no_autocast, empty_batch_float32

__all__ = ["HostTensors", "device_views_problem", "padded_rows", "sample_view_parameters", "sosfilt_steady",
           "views_from_parameters"]

#: Device types without float64 tensors, which the filters' states and the noise levels need (Apple's MPS).
NO_FLOAT64_DEVICES = frozenset({"mps"})


def device_views_problem(device: torch.device | str) -> str | None:
    """Why the views cannot be computed on ``device``, or ``None``: the IIR filters' states and the noise levels are
    float64 (the host path's precision), and Apple's MPS has no float64 tensors."""
    kind = torch.device(device).type
    if kind in NO_FLOAT64_DEVICES:
        return (f"the {kind} device has no float64 tensors, which the views' IIR filter states and noise levels "
                "need; compute the views on the host (--views_on_device false, the default there)")
    return None

#: A second-order section that passes its input through (pads cascades of different lengths).
_IDENTITY_SECTION = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)

#: Elements per gather / filter group (bounds the temporary index and FFT buffers: ~256 MB of int64 indices).
_GROUP_ELEMENTS = 1 << 25


class HostTensors:
    """Small control tensors that stay on the host on their way into the training step.

    The DataLoader's pinning, accelerate's device placement and Trainer's `_prepare_inputs` recurse into dicts, lists
    and objects with a ``.to`` method, and leave any other object as it is. The views' random parameters (row
    counts, which rows are filtered, the filter sections, the noise generator's state) decide the control flow of
    :func:`views_from_parameters`: on an accelerator every read of a device tensor on the host (``.item()``,
    ``.tolist()``, ``.nonzero()`` of a CPU copy) waits for all the work queued before it. Kept on the host, they are
    read freely; the values the device computes with are copied over without blocking.

    Reads like the dict it holds (``holder["sos"]``, ``"lengths" in holder``, iteration, ``len``, ``keys`` /
    ``values`` / ``items``, ``dict(holder)``) without being a `Mapping` (which the device placement would enter).
    accelerate's ``dispatch_batches`` / ``split_batches`` cannot cut it by rows: the pre-training run refuses them
    with views on the device.
    """

    __slots__ = ("tensors",)

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self.tensors = dict(tensors)

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.tensors[key]

    def __contains__(self, key: object) -> bool:
        return key in self.tensors

    def get(self, key: str, default: Any = None) -> Any:
        return self.tensors.get(key, default)

    def __iter__(self):
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    def keys(self):
        return self.tensors.keys()

    def values(self):
        return self.tensors.values()

    def items(self):
        return self.tensors.items()

    def __repr__(self) -> str:
        return f"HostTensors({', '.join(f'{k}: {tuple(v.shape)}' for k, v in self.tensors.items())})"


def padded_rows(rows: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D clips (numpy arrays or tensors) as one float32 ``(B, longest)`` tensor, zero after each clip, and their
    lengths ``(B,)`` int64: what the collators send to the device.

    In a DataLoader worker the tensor is made in shared memory, as torch's `default_collate` makes its batches: the
    batch then reaches the training process without the extra copy torch makes of a private tensor (a 512-clip
    batch of 10 s clips is 320 MiB: the copy took longer than decoding the clips from 16 kHz WAV, ``data_path``'s
    ``worker_transfer``)."""
    lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)
    padded = _empty_batch_tensor(len(rows), int(lengths.max()))
    for out, row in zip(padded, rows):
        out[: len(row)] = torch.as_tensor(row)
        out[len(row):] = 0.0
    return padded, lengths


def _empty_batch_tensor(rows: int, columns: int) -> torch.Tensor:
    """An uninitialised float32 ``(rows, columns)`` tensor, in shared memory inside a DataLoader worker."""
    return empty_batch_float32((rows, columns))


def _to_device(tensor: torch.Tensor, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A host tensor on `device` without waiting for the device's queue (a blocking copy synchronises the stream)."""
    return tensor.to(device=device, dtype=dtype, non_blocking=tensor.device.type == "cpu" and device.type != "cpu")


# ---------------------------------------------------------------------------------------------------------------------
# Second-order sections as block-parallel recurrences
# ---------------------------------------------------------------------------------------------------------------------


def _matrix_powers(matrix: torch.Tensor, count: int) -> torch.Tensor:
    """``M^n`` for ``n = 0 .. count - 1`` of a batch of 2 x 2 matrices ``(R, 2, 2)``: ``(R, count, 2, 2)`` float64.

    Built by doubling (``P[m:2m] = P[0:m] @ M^m``): ``log2(count)`` batched products.
    """
    rows = matrix.shape[0]
    powers = torch.eye(2, dtype=torch.float64, device=matrix.device).expand(rows, 1, 2, 2).clone()
    step = matrix  # M^m with m = powers.shape[1]
    while powers.shape[1] < count:
        powers = torch.cat([powers, powers @ step[:, None]], dim=1)
        step = step @ step
    return powers[:, :count]


def _biquad_steady(x: torch.Tensor, section: torch.Tensor, level: torch.Tensor, block: int) -> torch.Tensor:
    """One second-order section ``(b0, b1, b2, 1, a1, a2)`` per row of ``x`` (R, N), started at steady state.

    The section in its transposed direct form II (``scipy.signal.sosfilt``'s form) as a state-space system with
    state ``s = (z1, z2)``: ``y[n] = b0 x[n] + z1``, ``s' = A s + B x[n]`` with ``A = [[-a1, 1], [-a2, 0]]`` and ``B =
    (b1 - a1 b0, b2 - a2 b0)``. The initial state is the steady state of a constant input ``level`` (R,), as
    ``sosfilt_zi`` gives it. Inside a block of ``K`` samples ``y = h * x + C A^n s_block`` (``h[0] = b0``, ``h[k] = C
    A^(k-1) B``, ``C = (1, 0)``): a causal FFT convolution with the section's own impulse response, which stays
    bounded (unlike the recursive part's alone, whose gain near DC reaches 1e8 for a 20 Hz high-pass). The block
    states follow ``s_(c+1) = A^K s_c + sum_m A^(K-1-m) B x[cK + m]``, solved for all blocks by a log-depth scan in
    float64.
    """
    rows, length = x.shape
    dtype = x.dtype
    b0, b1, b2 = section[:, 0], section[:, 1], section[:, 2]
    a1, a2 = section[:, 4], section[:, 5]
    matrix = torch.zeros(rows, 2, 2, dtype=torch.float64, device=x.device)
    matrix[:, 0, 0] = -a1
    matrix[:, 0, 1] = 1.0
    matrix[:, 1, 0] = -a2
    drive = torch.stack([b1 - a1 * b0, b2 - a2 * b0], dim=-1)  # B: (R, 2)
    gain = (b0 + b1 + b2) / (1.0 + a1 + a2)
    state_1 = (b2 - a2 * gain) * level
    start = torch.stack([(b1 - a1 * gain) * level + state_1, state_1], dim=-1)  # steady-state (z1, z2): (R, 2)

    num_blocks = -(-length // block)
    blocks = x if num_blocks * block == length else torch.nn.functional.pad(x, (0, num_blocks * block - length))
    blocks = blocks.view(rows, num_blocks, block)
    powers = _matrix_powers(matrix, block + 1)  # A^0 .. A^K
    response = powers[:, :block] @ drive[:, None, :, None]  # A^k B: (R, K, 2, 1)
    response = response[..., 0]
    impulse = torch.cat([b0[:, None], response[:, : block - 1, 0]], dim=1)  # h[0] = b0, h[k] = (A^(k-1) B)_0
    # zero-state output inside every block: causal linear convolution via an FFT of size 2K
    size = 2 * block
    spectrum = torch.fft.rfft(blocks, n=size) * torch.fft.rfft(impulse.to(dtype), n=size)[:, None]
    y = torch.fft.irfft(spectrum, n=size)[..., :block]  # (R, C, K)
    # state carried out of each block by its input: sum_m A^(K-1-m) B x_m  (float64)
    carried = torch.einsum("rck,rkj->rcj", blocks.to(torch.float64), response.flip(1))  # (R, C, 2)
    transition = powers[:, block]  # A^K
    carried[:, 0] += (transition @ start[..., None])[..., 0]
    power, distance = transition, 1
    while distance < num_blocks:  # inclusive scan: carried[c] = sum_i (A^K)^i e_(c-i) + (A^K)^(c+1) s_0
        shifted = (power[:, None] @ carried[:, :-distance, :, None])[..., 0]
        carried = torch.cat([carried[:, :distance], carried[:, distance:] + shifted], dim=1)
        power = power @ power
        distance *= 2
    states = torch.cat([start[:, None], carried[:, :-1]], dim=1)  # state entering each block: (R, C, 2)
    first_row = powers[:, :block, 0, :]  # C A^n: (R, K, 2)
    y = y + torch.einsum("rkj,rcj->rck", first_row, states).to(dtype)
    return y.reshape(rows, num_blocks * block)[:, :length]


def sosfilt_steady(x: torch.Tensor, sos: torch.Tensor, block: int = 1024) -> torch.Tensor:
    """Cascaded second-order sections per row, started at the steady state of each row's first sample.

    The torch counterpart of ``scipy.signal.sosfilt(sos, x, zi=sosfilt_zi(sos) * x[0])`` for a batch in which every
    row has its own cascade. Runs on the device of `x`, in its dtype (coefficients, impulse responses and the block
    states in float64).

    Args:
        x (`torch.Tensor`): ``(R, N)`` float32 or float64 rows.
        sos (`torch.Tensor`): ``(R, S, 6)`` normalised sections (``a0 = 1``) per row; identity sections
            ``(1, 0, 0, 1, 0, 0)`` pad shorter cascades. Best on the CPU (see the comment in the code).
        block (`int`, defaults to 1024): Block length of the parallel recurrence (the result does not depend on it
            beyond rounding).

    Returns:
        `torch.Tensor` ``(R, N)``, a new tensor.
    """
    if x.dim() != 2 or sos.dim() != 3 or sos.shape[0] != x.shape[0] or sos.shape[2] != 6:
        raise ValueError(
            f"sosfilt_steady needs x (R, N) and sos (R, S, 6), got {tuple(x.shape)} and {tuple(sos.shape)}."
        )
    # which sections each row has (identity sections pad shorter cascades and are skipped) is read on the host: give
    # `sos` on the CPU and `x` on an accelerator, and nothing here waits for the device
    host_sos = sos.to("cpu", torch.float64)
    active = (host_sos != torch.tensor(_IDENTITY_SECTION, dtype=torch.float64)).any(dim=-1)  # (R, S)
    sos = _to_device(host_sos, x.device)
    level = x[:, 0].to(torch.float64)
    y = x.clone()
    for k in range(sos.shape[1]):
        rows = active[:, k].nonzero().flatten()
        if rows.numel() == 0:
            continue
        index = _to_device(rows, x.device)
        section = sos[index, k]
        y[index] = _biquad_steady(y[index], section, level[index], block)
        gain = section[:, :3].sum(dim=1) / (1.0 + section[:, 4] + section[:, 5])
        level[index] = level[index] * gain
    return y


# ---------------------------------------------------------------------------------------------------------------------
# Parameters (CPU, in the collator) and views (any device, in the training step)
# ---------------------------------------------------------------------------------------------------------------------

def sample_view_parameters(
    view_generator: Any, lengths: torch.Tensor, generator: torch.Generator, num_views: int | None = None
) -> dict[str, torch.Tensor]:
    """Draws every random parameter of the views of a batch, exactly as the host path draws them.

    Draw order (the host path's): roll shifts and gains, the chain's parameters, then (later, in
    :func:`views_from_parameters`) the noise of each row in row order; the generator's state after the parameters is
    returned so the noise can continue the same stream.

    Returns a dict of CPU tensors, rows clip-major (row ``b * num_views + v``): ``shift`` (long), ``scale`` (float64:
    roll gain x polarity x gain), ``apply_noise`` (bool), ``snr_db`` (float64), ``sos`` (``(rows, S, 6)`` float64,
    identity-padded cascades), ``filtered`` (bool) and ``noise_state`` (uint8, the generator state).
    """
    views = view_generator.num_views if num_views is None else int(num_views)
    lengths = torch.as_tensor(lengths, dtype=torch.long).reshape(-1)
    rows = lengths.numel() * views
    chain_aug = view_generator.augmentation
    if chain_aug.p_speed > 0:
        raise ValueError(
            "views on the device do not support the speed change (p_speed > 0: a soxr resampling on the host); use "
            "an augmentation preset without it (original, light, none) or compute the views on the host "
            "(--views_on_device false)."
        )
    row_full = lengths.repeat_interleave(views)
    if view_generator.roll_and_gain:
        shifts, gains = sample_roll_parameters(row_full, generator, (10, 10))
    else:
        shifts, gains = torch.zeros(rows, dtype=torch.long), torch.ones(rows, dtype=torch.float64)
    chain = chain_aug.sample_parameters(rows, generator)
    cascades = chain_aug._filter_bank(chain)
    sections = max([c.shape[0] for c in cascades if c is not None], default=1)
    sos = np.tile(np.asarray(_IDENTITY_SECTION), (rows, sections, 1))
    for r, cascade in enumerate(cascades):
        if cascade is not None:
            sos[r, : cascade.shape[0]] = cascade
    return {
        "shift": shifts,
        "scale": chain["scale"] * gains,
        "apply_noise": chain["apply_noise"].clone(),
        "snr_db": chain["snr_db"].to(torch.float64),
        "sos": torch.from_numpy(sos),
        "filtered": torch.tensor([c is not None for c in cascades], dtype=torch.bool),
        "noise_state": generator.get_state(),
    }


def _roll_scale(waveforms, clip_of_row, shift, full, row_len, scale, width) -> torch.Tensor:
    """``out[r, j] = scale[r] * waveforms[clip_of_row[r], (j - shift[r]) mod full[r]]`` for ``j < row_len[r]``, else
    0 (the host path's roll over the clip's whole length, cropped to ``width``, times the combined gain)."""
    rows = clip_of_row.numel()
    device = waveforms.device
    out = torch.empty(rows, width, dtype=torch.float32, device=device)
    positions = torch.arange(width, device=device)
    group = max(1, _GROUP_ELEMENTS // max(width, 1))
    for r0 in range(0, rows, group):
        r1 = min(r0 + group, rows)
        index = torch.remainder(positions[None, :] - shift[r0:r1, None], full[r0:r1, None])
        values = torch.gather(waveforms[clip_of_row[r0:r1]], 1, index)
        values.mul_(scale[r0:r1, None])
        values.masked_fill_(positions[None, :] >= row_len[r0:r1, None], 0.0)
        out[r0:r1] = values
    return out


def _noise_seed(state: torch.Tensor) -> int:
    digest = hashlib.blake2b(state.to("cpu").numpy().tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def _add_noise(rows: torch.Tensor, row_len: torch.Tensor, host_len: torch.Tensor,
               parameters: dict[str, torch.Tensor]) -> None:
    """White noise at each row's drawn SNR relative to the row's RMS (rows with ``apply_noise``; silent rows none).

    `row_len` is on the device of `rows`, `host_len` its CPU copy; `parameters` on the CPU.
    """
    apply = parameters["apply_noise"]
    if not bool(apply.any()):
        return
    state = parameters["noise_state"].to(torch.uint8)
    snr_db = parameters["snr_db"].to(torch.float64)
    if rows.device.type == "cpu":
        # the host path's stream: one randn(length) per noisy row, in row order
        rms = torch.linalg.vector_norm(rows, dim=1).to(torch.float64) / host_len.to(torch.float64).sqrt()
        std = rms * torch.pow(10.0, -snr_db / 20.0)
        use = apply & (std > 0) & torch.isfinite(std)
        generator = torch.Generator()
        generator.set_state(state)
        for r in use.nonzero().flatten().tolist():
            length = int(host_len[r])
            noise = torch.randn(length, generator=generator)
            rows[r, :length].add_(noise, alpha=float(std[r]))
        return
    # on an accelerator: the same levels computed where the rows are (no host read), noise from a device generator
    device = rows.device
    rms = torch.linalg.vector_norm(rows, dim=1).to(torch.float64) / row_len.to(torch.float64).sqrt()
    std = rms * torch.pow(10.0, -_to_device(snr_db, device) / 20.0)
    use = _to_device(apply, device) & (std > 0) & torch.isfinite(std)
    generator = None
    if device.type != "meta":  # meta: shape-only tensors, no generator (the tests' check that no value is read)
        generator = torch.Generator(device=device)
        generator.manual_seed(_noise_seed(state))
    noise = torch.randn(rows.shape, generator=generator, device=device, dtype=rows.dtype)
    scale = torch.where(use, std, torch.zeros_like(std)).to(rows.dtype)
    positions = torch.arange(rows.shape[1], device=device)
    noise.mul_(scale[:, None]).masked_fill_(positions[None, :] >= row_len[:, None], 0.0)
    rows.add_(noise)


def views_from_parameters(
    view_generator: Any,
    waveforms: torch.Tensor,
    lengths: torch.Tensor,
    parameters: dict[str, torch.Tensor],
    filter_dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """The views of a batch from its waveforms and drawn parameters, computed on the device of `waveforms`.

    Args:
        view_generator: the `ContrastiveViewGenerator` (chain, feature extractor, ``num_samples``, ``max_length``).
        waveforms (`torch.Tensor`): ``(B, W)`` float waveforms (zero after each clip's length), on any device.
        lengths (`torch.Tensor`): ``(B,)`` valid samples per clip (the lengths given to the parameter draw).
        parameters: the dict of :func:`sample_view_parameters`, or a :class:`HostTensors` of it.

    `lengths` and `parameters` are best given on the CPU (as the collator's :class:`HostTensors` keeps them): the
    control flow reads them on the host, and the few values the device needs are copied without blocking, so on an
    accelerator the views are queued without waiting for the device. Given on the device, they are copied back once.
        filter_dtype (`torch.dtype`, defaults to float64): precision of the IIR filters. float64 (as the host
            path's ``sosfilt``) keeps the features within ~4e-6 of the host path's; float32 halves the filters' memory
            traffic but differs by up to ~3e-4 in the normalised features (narrow band-stops near DC).

    Returns:
        float32 ``(B, num_views, max_length, num_mel_bins)`` on the device of `waveforms`. Autocast is disabled inside.
    """
    device = waveforms.device
    problem = device_views_problem(device)
    if problem is not None:
        raise ValueError(f"cannot compute the views on {device}: {problem}.")
    batch = waveforms.shape[0]
    if isinstance(parameters, HostTensors):
        parameters = parameters.tensors
    # the control flow reads host tensors: parameters on the device are copied back once (one wait for the device)
    host = {key: value.to("cpu") for key, value in parameters.items()}
    rows = host["shift"].numel()
    if rows % batch:
        raise ValueError(f"the parameters describe {rows} rows, not a multiple of the batch of {batch} clips.")
    views = rows // batch
    width = view_generator.num_samples
    host_full = torch.as_tensor(lengths).to("cpu", torch.long).reshape(-1)
    if bool((host_full < view_generator.window_size).any()):
        raise ValueError(f"every clip needs at least {view_generator.window_size} samples (one 25 ms frame).")
    host_row_full = host_full.repeat_interleave(views)
    host_row_len = host_row_full.clamp(max=width)
    with torch.no_grad(), _no_autocast(device):
        row_full = _to_device(host_row_full, device)
        row_len = _to_device(host_row_len, device)
        clip_of_row = torch.arange(batch, device=device).repeat_interleave(views, output_size=rows)
        shift = _to_device(host["shift"], device, torch.long)
        scale = _to_device(host["scale"], device, torch.float32)
        out = _roll_scale(waveforms.to(torch.float32), clip_of_row, shift, row_full, row_len, scale, width)
        _add_noise(out, row_len, host_row_len, host)
        filtered = host["filtered"].nonzero().flatten()
        if filtered.numel():
            index = _to_device(filtered, device)
            host_sos = host["sos"][filtered]
            group = max(1, _GROUP_ELEMENTS // (4 * width))
            for g0 in range(0, filtered.numel(), group):
                part = index[g0 : g0 + group]
                y = sosfilt_steady(out[part].to(filter_dtype), host_sos[g0 : g0 + group]).to(torch.float32)
                out[part] = y
            positions = torch.arange(width, device=device)
            out.masked_fill_(positions[None, :] >= row_len[:, None], 0.0)
        fe = view_generator.feature_extractor
        features = fe.batch_features(
            out, host_row_len, max_length=view_generator.max_length, check_finite=False
        )["input_values"]
    return features.view(batch, views, view_generator.max_length, int(fe.num_mel_bins))
