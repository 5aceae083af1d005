# coding=utf-8
"""The waveform augmentations of AudioMosaic pre-training: roll + gain and the random augmentation chain.

- :func:`roll_and_gain`: the original ``roll_mag_aug`` for a batch (circular roll by a random offset, gain
  ``Beta(10, 10) + 0.5``); :func:`sample_beta_gain` draws the gains alone.
- :class:`WaveformAugmentation`: a configurable, cheap version of the original audiomentations chain (polarity
  inversion, Gaussian noise at a random SNR, gain in dB, Butterworth high-pass and band-stop filters, optional
  resampling-based speed change instead of time-stretch / pitch-shift) followed by mean removal; the named settings
  are in :data:`AUGMENTATION_PRESETS`. ``docs/augmentation.md`` lists the transforms, their defaults and their cost.

Randomness comes from :mod:`.random_draws`: the per-clip parameters of a batch are drawn first
(vectorised), then the Gaussian noise of each clip in clip order, so a seed fixes the output exactly.

Processing: the sample-level work is done clip by clip on contiguous rows (scale-and-copy, noise, one
``scipy.signal.sosfilt`` call for both filters, mean removal) so that every clip is processed while it is in the CPU
cache. Each clip has its own filter, so scipy's 2-D ``sosfilt`` (one filter for all rows) does not apply. A batched
FFT-domain filter in torch (rfft, per-clip frequency response of the cascaded sections, irfft) was measured at
~15 ms per 10 s clip against ~2 ms for ``sosfilt`` (the response evaluation dominates), and it would filter
circularly.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from .augmentation_filters import butterworth_bandstop_sos, butterworth_highpass_sos, sos_steady_state
from .augmentation_inputs import prepare_batch
from .random_draws import GeneratorLike, as_generator, bernoulli, sample_beta, uniform

__all__ = ["AUGMENTATION_PRESETS", "WaveformAugmentation", "roll_and_gain", "sample_beta_gain"]


# ---------------------------------------------------------------------------------------------------------------------
# Settings validation
# ---------------------------------------------------------------------------------------------------------------------


def _check_probability(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}.")
    return value


def _check_range(name: str, value: Sequence[float], low: float | None = None, high: float | None = None,
                 strict_low: bool = False, strict_high: bool = False) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a (min, max) pair of numbers, got {value!r}.") from err
    if not (math.isfinite(a) and math.isfinite(b)) or a > b:
        raise ValueError(f"{name} must be a finite (min, max) pair with min <= max, got {value!r}.")
    if low is not None and (a < low or (strict_low and a == low)):
        raise ValueError(f"{name} must be {'>' if strict_low else '>='} {low}, got {value!r}.")
    if high is not None and (b > high or (strict_high and b == high)):
        raise ValueError(f"{name} must be {'<' if strict_high else '<='} {high}, got {value!r}.")
    return a, b


def _check_rolloff(name: str, value: Sequence[int]) -> tuple[int, int]:
    a, b = _check_range(name, value, low=6)
    if a % 6 or b % 6:
        raise ValueError(f"{name} must be multiples of 6 dB/octave (6, 12, 18, 24, ...), got {value!r}.")
    return int(a), int(b)


# ---------------------------------------------------------------------------------------------------------------------
# Roll + gain
# ---------------------------------------------------------------------------------------------------------------------


def sample_beta_gain(
    n: int, generator: GeneratorLike = None, alpha: float = 10, beta: float = 10, offset: float = 0.5
) -> torch.Tensor:
    """Draws ``n`` gains ``Beta(alpha, beta) + offset`` (default ``Beta(10, 10) + 0.5``, range 0.5-1.5, mean 1).

    The Beta draws are those of :func:`.random_draws.sample_beta` (exact order statistic for
    integer parameters).

    Returns:
        `torch.Tensor` of shape ``(n,)``, float64.
    """
    return sample_beta(n, alpha, beta, generator) + offset


def sample_roll_parameters(
    lengths: torch.Tensor, generator: torch.Generator | None, gain_beta: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per clip: an integer shift uniform in ``[0, length)`` and a gain ``Beta(*gain_beta) + 0.5``."""
    n = lengths.numel()
    u = torch.rand(n, dtype=torch.float64, generator=generator)
    shifts = torch.minimum((u * lengths.to(torch.float64)).floor().to(torch.long), lengths - 1)
    gains = sample_beta_gain(n, generator, *gain_beta)
    return shifts, gains


def roll_scale_into(src: torch.Tensor, dst: torch.Tensor, shift: int, scale: float) -> None:
    """``dst[j] = scale * src[(j - shift) mod len(src)]`` for ``j < len(dst) <= len(src)`` (``np.roll`` convention).

    Only the first ``len(dst)`` samples of the rolled clip are computed (crop after roll); one pass, no index tensor.
    """
    length, out = src.shape[0], dst.shape[0]
    first = min(shift, out)  # rolled[0:shift] = src[length - shift:]
    if first:
        torch.mul(src[length - shift : length - shift + first], scale, out=dst[:first])
    if out > shift:
        torch.mul(src[: out - shift], scale, out=dst[shift:out])


def roll_and_gain(
    wave: torch.Tensor | np.ndarray,
    generator: torch.Generator | int | None = None,
    *,
    lengths: Sequence[int] | torch.Tensor | None = None,
    gain_beta: tuple[int, int] = (10, 10),
    return_params: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The original ``roll_mag_aug``: per clip, a random circular roll and a random gain.

    For every clip ``i`` (valid length ``L``), ``shift ~ U{0, ..., L - 1}`` and ``gain ~ Beta(10, 10) + 0.5``
    (range 0.5-1.5, mean 1.0) are drawn independently, and ``out[j] = gain * wave[(j - shift) mod L]`` (the
    ``np.roll(wave, shift)`` convention). Samples beyond a clip's length (when `lengths` is given) are set to 0.

    Args:
        wave (`torch.Tensor` or `np.ndarray`): Float audio of shape ``(N,)`` or ``(batch, N)``.
        generator (`torch.Generator`, `int` or `None`): Source of randomness (``None``: torch's global generator).
        lengths (*optional*): Valid samples per clip, ``(batch,)``; clips are rolled within their own length.
        gain_beta (`tuple[int, int]`, defaults to ``(10, 10)``): Beta parameters of the gain (see
            :func:`sample_beta_gain`).
        return_params (`bool`): Also return ``{"shift": (B,) long, "gain": (B,) float64}``.

    Returns:
        A new float tensor with the shape and dtype of `wave` (the input is not modified) and, if requested, the
        parameters.

    Raises:
        TypeError: non-float input. ValueError: empty input, NaN/inf samples (naming the clip), bad `lengths`.
    """
    x, squeeze, lengths_t = prepare_batch(wave, lengths)
    generator = as_generator(generator)
    batch, num_samples = x.shape
    if lengths_t is None:
        lengths_t = torch.full((batch,), num_samples, dtype=torch.long)
    shifts, gains = sample_roll_parameters(lengths_t, generator, gain_beta)
    out = torch.zeros_like(x) if lengths is not None else torch.empty_like(x)
    for i, (length, shift, gain) in enumerate(zip(lengths_t.tolist(), shifts.tolist(), gains.tolist())):
        roll_scale_into(x[i, :length], out[i, :length], shift, gain)
    out = out[0] if squeeze else out
    if return_params:
        return out, {"shift": shifts, "gain": gains}
    return out


# ---------------------------------------------------------------------------------------------------------------------
# The augmentation chain
# ---------------------------------------------------------------------------------------------------------------------


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


#: Named settings for :meth:`WaveformAugmentation.from_preset`.
AUGMENTATION_PRESETS: dict[str, dict[str, Any]] = {
    # No waveform augmentation (only the mean removal). The original "AudioMosaicPretrain_NoAug" ablation.
    "none": dict(p_polarity=0.0, p_noise=0.0, p_gain=0.0, p_highpass=0.0, p_bandstop=0.0, p_speed=0.0),
    # The original chain minus TimeStretch/PitchShift (the default of this class).
    "original": dict(),
    # The original chain with a resampling-based speed change standing in for TimeStretch (p 0.7) and PitchShift.
    "original_speed": dict(p_speed=0.7, speed_range=(0.8, 1.25)),
    # A milder chain (for short fine-tuning runs or small models).
    "light": dict(
        p_polarity=0.5, p_noise=0.3, snr_db=(15.0, 40.0), p_gain=0.3, gain_db=(-6.0, 6.0), p_highpass=0.15,
        highpass_hz=(20.0, 1000.0), p_bandstop=0.2, p_speed=0.0,
    ),
}


class WaveformAugmentation:
    r"""Random waveform augmentation chain for pre-training views, in the spirit of the original audiomentations one.

    Applied in this order, each transform independently per clip with its own probability (all parameters drawn
    per clip):

    1. **polarity inversion** (`p_polarity`): multiply by -1.
    2. **speed change** (`p_speed`, off by default): resample the clip by a factor ``r ~ U(speed_range)``
       (``r > 1``: faster and higher, ``r < 1``: slower and lower; tempo and pitch change together, like playing a
       tape at another speed) with soxr, then crop or zero-pad at the end to the original length. This is a cheap
       stand-in for the original TimeStretch + PitchShift, which change tempo and pitch separately.
    3. **Gaussian noise** (`p_noise`): white noise with standard deviation ``rms(x) / 10^(snr / 20)``,
       ``snr ~ U(snr_db)`` dB, where ``rms`` is the clip's RMS at this point (a silent clip gets no noise).
    4. **gain** (`p_gain`): multiply by ``10^(g / 20)``, ``g ~ U(gain_db)`` dB.
    5. **high-pass** (`p_highpass`): Butterworth high-pass, cut-off drawn uniformly on the mel scale in
       `highpass_hz` (as audiomentations does; `frequency_scale="linear"` draws it uniformly in Hz), roll-off drawn
       from the multiples of 6 dB/octave in `highpass_rolloff_db` (order ``rolloff / 6``).
    6. **band-stop** (`p_bandstop`): Butterworth band-stop with centre ``c`` drawn on the mel scale in
       `bandstop_center_hz`, bandwidth ``c * f`` with ``f ~ U(bandstop_bandwidth_fraction)`` (band
       ``[c - cf/2, c + cf/2]``, upper edge clipped below Nyquist) and roll-off as for the high-pass (prototype
       order ``rolloff / 6``, i.e. ``2 rolloff / 6`` poles, like ``scipy.signal.butter(..., "bandstop")``).
    7. **mean removal** (`subtract_mean`): subtract each clip's mean (always done by the original).

    Both filters are causal IIR filters (transposed direct form II, ``scipy.signal.sosfilt`` in float64, cascaded
    into one call when both apply) started in the steady state of the first sample, as in audiomentations
    (``zero_phase=False``). Because the scalar steps commute with everything up to the noise, polarity and gain
    are applied in a single multiplication; the noise level is then computed from the scaled clip, which gives the
    same result as the original order.

    Args:
        p_polarity (`float`, defaults to 0.5), p_noise (`float`, defaults to 0.5), p_gain (`float`, defaults to 0.3),
        p_highpass (`float`, defaults to 0.3), p_bandstop (`float`, defaults to 0.5), p_speed (`float`, defaults to
        0.0): Probabilities of the transforms.
        snr_db (`tuple`, defaults to ``(5, 40)``): SNR range of the noise in dB.
        gain_db (`tuple`, defaults to ``(-12, 12)``): Gain range in dB.
        highpass_hz (`tuple`, defaults to ``(20, 2400)``): High-pass cut-off range in Hz.
        highpass_rolloff_db (`tuple`, defaults to ``(12, 24)``): High-pass roll-off range in dB/octave (multiples of
            6).
        bandstop_center_hz (`tuple`, defaults to ``(200, 4000)``): Band-stop centre range in Hz.
        bandstop_bandwidth_fraction (`tuple`, defaults to ``(0.5, 1.99)``): Bandwidth / centre range, in (0, 2).
        bandstop_rolloff_db (`tuple`, defaults to ``(12, 24)``): Band-stop roll-off range in dB/octave.
        frequency_scale (`str`, defaults to ``"mel"``): ``"mel"`` or ``"linear"``: how cut-offs/centres are drawn.
        speed_range (`tuple`, defaults to ``(0.9, 1.1)``): Range of the speed factor.
        speed_quality (`str`, defaults to ``"HQ"``): soxr quality of the speed change (``"QQ"``, ``"LQ"``,
            ``"MQ"``, ``"HQ"``, ``"VHQ"``).
        subtract_mean (`bool`, defaults to `True`): Subtract each clip's mean at the end.
        sample_rate (`int`, defaults to 16000): Sampling rate of the audio in Hz.

    Example:

    ```python
    >>> aug = WaveformAugmentation.from_preset("original")
    >>> out = aug(torch.randn(4, 16000) * 0.1, generator=torch.Generator().manual_seed(0))
    >>> out.shape
    torch.Size([4, 16000])
    ```
    """

    def __init__(
        self,
        p_polarity: float = 0.5,
        p_noise: float = 0.5,
        snr_db: tuple[float, float] = (5.0, 40.0),
        p_gain: float = 0.3,
        gain_db: tuple[float, float] = (-12.0, 12.0),
        p_highpass: float = 0.3,
        highpass_hz: tuple[float, float] = (20.0, 2400.0),
        highpass_rolloff_db: tuple[int, int] = (12, 24),
        p_bandstop: float = 0.5,
        bandstop_center_hz: tuple[float, float] = (200.0, 4000.0),
        bandstop_bandwidth_fraction: tuple[float, float] = (0.5, 1.99),
        bandstop_rolloff_db: tuple[int, int] = (12, 24),
        frequency_scale: str = "mel",
        p_speed: float = 0.0,
        speed_range: tuple[float, float] = (0.9, 1.1),
        speed_quality: str = "HQ",
        subtract_mean: bool = True,
        sample_rate: int = 16000,
    ):
        if not (isinstance(sample_rate, (int, float, np.integer, np.floating)) and sample_rate > 0):
            raise ValueError(f"sample_rate must be a positive number, got {sample_rate!r}.")
        self.sample_rate = int(sample_rate) if float(sample_rate).is_integer() else float(sample_rate)
        nyquist = self.sample_rate / 2.0
        self.p_polarity = _check_probability("p_polarity", p_polarity)
        self.p_noise = _check_probability("p_noise", p_noise)
        self.snr_db = _check_range("snr_db", snr_db)
        self.p_gain = _check_probability("p_gain", p_gain)
        self.gain_db = _check_range("gain_db", gain_db)
        self.p_highpass = _check_probability("p_highpass", p_highpass)
        # Frequencies above Nyquist are allowed in the ranges (so the defaults work at any sampling rate); drawn
        # values are clipped to 0.9999 * Nyquist, as audiomentations does. The lower bounds must be below Nyquist.
        self.highpass_hz = _check_range("highpass_hz", highpass_hz, low=0.0, strict_low=True)
        if self.highpass_hz[0] >= nyquist:
            raise ValueError(f"highpass_hz must start below the Nyquist frequency {nyquist} Hz, got {highpass_hz!r}.")
        self.highpass_rolloff_db = _check_rolloff("highpass_rolloff_db", highpass_rolloff_db)
        self.p_bandstop = _check_probability("p_bandstop", p_bandstop)
        self.bandstop_center_hz = _check_range("bandstop_center_hz", bandstop_center_hz, low=0.0, strict_low=True)
        if self.bandstop_center_hz[0] >= nyquist:
            raise ValueError(
                f"bandstop_center_hz must start below the Nyquist frequency {nyquist} Hz, got {bandstop_center_hz!r}."
            )
        self.bandstop_bandwidth_fraction = _check_range(
            "bandstop_bandwidth_fraction", bandstop_bandwidth_fraction, low=0.0, high=2.0, strict_low=True,
            strict_high=True,
        )
        self.bandstop_rolloff_db = _check_rolloff("bandstop_rolloff_db", bandstop_rolloff_db)
        if frequency_scale not in ("mel", "linear"):
            raise ValueError(f"frequency_scale must be 'mel' or 'linear', got {frequency_scale!r}.")
        self.frequency_scale = frequency_scale
        self.p_speed = _check_probability("p_speed", p_speed)
        self.speed_range = _check_range("speed_range", speed_range, low=0.0, strict_low=True)
        if speed_quality not in ("QQ", "LQ", "MQ", "HQ", "VHQ"):
            raise ValueError(f"speed_quality must be one of QQ, LQ, MQ, HQ, VHQ, got {speed_quality!r}.")
        self.speed_quality = speed_quality
        self.subtract_mean = bool(subtract_mean)

    # -- construction / logging ---------------------------------------------------------------------------------------

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "WaveformAugmentation":
        """Builds a chain from :data:`AUGMENTATION_PRESETS` (``"none"``, ``"original"``, ``"original_speed"``,
        ``"light"``); keyword arguments override the preset."""
        key = str(name).lower()
        if key not in AUGMENTATION_PRESETS:
            raise ValueError(
                f"Unknown augmentation preset {name!r}; valid presets are: {', '.join(sorted(AUGMENTATION_PRESETS))}."
            )
        kwargs = dict(AUGMENTATION_PRESETS[key])
        kwargs.update(overrides)
        return cls(**kwargs)

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> "WaveformAugmentation":
        """Inverse of :meth:`to_dict`."""
        return cls(**config)

    def to_dict(self) -> dict[str, Any]:
        """All settings as a JSON-serialisable dict (ranges as lists); ``from_dict(to_dict())`` rebuilds the chain."""
        names = (
            "p_polarity", "p_noise", "snr_db", "p_gain", "gain_db", "p_highpass", "highpass_hz", "highpass_rolloff_db",
            "p_bandstop", "bandstop_center_hz", "bandstop_bandwidth_fraction", "bandstop_rolloff_db",
            "frequency_scale", "p_speed", "speed_range", "speed_quality", "subtract_mean", "sample_rate",
        )
        return {name: list(v) if isinstance(v := getattr(self, name), tuple) else v for name in names}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"{self.__class__.__name__}({args})"

    @property
    def is_identity(self) -> bool:
        """True if no random transform can be applied (only the mean removal, if enabled)."""
        return not any((self.p_polarity, self.p_noise, self.p_gain, self.p_highpass, self.p_bandstop, self.p_speed))

    # -- parameters -------------------------------------------------------------------------------------------------

    def _draw_frequency(self, n: int, bounds: tuple[float, float], generator) -> np.ndarray:
        u = torch.rand(n, dtype=torch.float64, generator=generator).numpy()
        if self.frequency_scale == "mel":
            lo, hi = _hz_to_mel(bounds[0]), _hz_to_mel(bounds[1])
            return _mel_to_hz(lo + (hi - lo) * u)
        return bounds[0] + (bounds[1] - bounds[0]) * u

    def _draw_order(self, n: int, rolloff: tuple[int, int], generator) -> torch.Tensor:
        lo, hi = rolloff[0] // 6, rolloff[1] // 6
        u = torch.rand(n, dtype=torch.float64, generator=generator)
        return torch.clamp(lo + (u * (hi - lo + 1)).floor().to(torch.long), max=hi)

    def sample_parameters(self, batch_size: int, generator: torch.Generator | int | None = None) -> dict[str, Any]:
        """Draws the random parameters of `batch_size` clips (vectorised; a fixed number of draws per clip).

        Returns:
            A dict of ``(batch_size,)`` tensors (``apply_*`` booleans and the values, drawn for every clip whether
            applied or not): ``apply_polarity``, ``apply_speed``, ``speed``, ``apply_noise``, ``snr_db``,
            ``apply_gain``, ``gain_db``, ``apply_highpass``, ``highpass_hz``, ``highpass_order``, ``apply_bandstop``,
            ``bandstop_low_hz``, ``bandstop_high_hz``, ``bandstop_order``; plus ``scale`` (the combined
            polarity x gain factor, float64).
        """
        generator = as_generator(generator)
        n = int(batch_size)
        if n < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        nyquist = self.sample_rate / 2.0
        params: dict[str, Any] = {}
        params["apply_polarity"] = bernoulli(n, self.p_polarity, generator)
        params["apply_speed"] = bernoulli(n, self.p_speed, generator)
        params["speed"] = uniform(n, *self.speed_range, generator)
        params["apply_noise"] = bernoulli(n, self.p_noise, generator)
        params["snr_db"] = uniform(n, *self.snr_db, generator)
        params["apply_gain"] = bernoulli(n, self.p_gain, generator)
        params["gain_db"] = uniform(n, *self.gain_db, generator)
        params["apply_highpass"] = bernoulli(n, self.p_highpass, generator)
        cutoff = self._draw_frequency(n, self.highpass_hz, generator)
        params["highpass_hz"] = torch.from_numpy(np.minimum(cutoff, 0.9999 * nyquist))
        params["highpass_order"] = self._draw_order(n, self.highpass_rolloff_db, generator)
        params["apply_bandstop"] = bernoulli(n, self.p_bandstop, generator)
        center = np.minimum(self._draw_frequency(n, self.bandstop_center_hz, generator), 0.9999 * nyquist)
        fraction = uniform(n, *self.bandstop_bandwidth_fraction, generator).numpy()
        low = center * (1.0 - fraction / 2.0)
        high = np.minimum(center * (1.0 + fraction / 2.0), 0.9999 * nyquist)
        params["bandstop_low_hz"] = torch.from_numpy(np.minimum(low, high * 0.9999))
        params["bandstop_high_hz"] = torch.from_numpy(high)
        params["bandstop_order"] = self._draw_order(n, self.bandstop_rolloff_db, generator)
        polarity = torch.where(params["apply_polarity"], -1.0, 1.0).to(torch.float64)
        one = torch.ones((), dtype=torch.float64)
        gain = torch.where(params["apply_gain"], 10.0 ** (params["gain_db"] / 20.0), one)
        params["scale"] = polarity * gain
        return params

    def _filter_bank(self, params: dict[str, Any]) -> list[np.ndarray | None]:
        """Per clip: the cascaded ``(sections, 6)`` SOS of the filters to apply, or None (designs are vectorised)."""
        n = params["apply_highpass"].numel()
        hp: list[np.ndarray | None] = [None] * n
        bs: list[np.ndarray | None] = [None] * n
        for order in params["highpass_order"].unique().tolist():
            idx = (params["apply_highpass"] & (params["highpass_order"] == order)).nonzero().flatten().numpy()
            if idx.size:
                sos = butterworth_highpass_sos(params["highpass_hz"].numpy()[idx], order, self.sample_rate)
                for j, i in enumerate(idx):
                    hp[i] = sos[j]
        for order in params["bandstop_order"].unique().tolist():
            idx = (params["apply_bandstop"] & (params["bandstop_order"] == order)).nonzero().flatten().numpy()
            if idx.size:
                sos = butterworth_bandstop_sos(
                    params["bandstop_low_hz"].numpy()[idx], params["bandstop_high_hz"].numpy()[idx], order,
                    self.sample_rate,
                )
                for j, i in enumerate(idx):
                    bs[i] = sos[j]
        out: list[np.ndarray | None] = []
        for a, b in zip(hp, bs):
            if a is None and b is None:
                out.append(None)
            else:
                out.append(np.concatenate([s for s in (a, b) if s is not None], axis=0))
        return out

    # -- application ------------------------------------------------------------------------------------------------

    def _apply_row(
        self,
        row: torch.Tensor,
        index: int,
        values: dict[str, list],
        sos: np.ndarray | None,
        generator: torch.Generator | None,
        noise_buffer: torch.Tensor,
        subtract_mean: bool,
    ) -> None:
        """Applies everything after the scaling (speed, noise, filters, mean) to one float32 row, in place."""
        length = row.shape[0]
        if values["apply_speed"][index]:
            import soxr  # noqa: PLC0415  (lazy: only needed for the optional speed change)

            factor = values["speed"][index]
            y = soxr.resample(row.numpy(), self.sample_rate, self.sample_rate / factor, quality=self.speed_quality)
            keep = min(length, y.shape[0])
            row[:keep] = torch.from_numpy(np.ascontiguousarray(y[:keep])).to(row.dtype)
            if keep < length:
                row[keep:] = 0.0
        if values["apply_noise"][index]:
            rms = float(torch.linalg.vector_norm(row)) / math.sqrt(length)
            std = rms * 10.0 ** (-values["snr_db"][index] / 20.0)
            if std > 0.0 and math.isfinite(std):
                noise = noise_buffer[:length]
                torch.randn(length, generator=generator, out=noise)
                row.add_(noise, alpha=std)
        if sos is not None:
            from scipy.signal import sosfilt  # noqa: PLC0415

            x = row.numpy()
            zi = sos_steady_state(sos) * float(x[0])
            y, _ = sosfilt(sos, x, zi=zi)
            if subtract_mean:
                y -= y.mean()
            x[:] = y
            return
        if subtract_mean:
            row.sub_(row.mean().item())

    def _row_values(self, params: dict[str, Any]) -> dict[str, list]:
        keys = ("apply_speed", "speed", "apply_noise", "snr_db")
        return {k: params[k].tolist() for k in keys}

    def __call__(
        self,
        waves: torch.Tensor | np.ndarray,
        generator: torch.Generator | int | None = None,
        *,
        lengths: Sequence[int] | torch.Tensor | None = None,
        return_params: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, Any]]:
        """Augments a batch of clips.

        Args:
            waves (`torch.Tensor` or `np.ndarray`): Float audio at `sample_rate`, shape ``(N,)`` or ``(batch, N)``.
            generator (`torch.Generator`, `int` or `None`): Source of randomness (``None``: torch's global
                generator).
            lengths (*optional*): Valid samples per clip ``(batch,)``; only ``waves[i, :lengths[i]]`` is augmented
                (RMS and mean are those of the valid part) and the rest of the output is 0.
            return_params (`bool`): Also return the drawn parameters (see :meth:`sample_parameters`).

        Returns:
            A new tensor with the shape of `waves` (float32, or float64 for float64 input; the input is not
            modified); with `return_params`, a tuple ``(output, params)``.

        Raises:
            TypeError: non-float input. ValueError: empty input, NaN/inf samples (naming the clip), bad `lengths`.
        """
        x, squeeze, lengths_t = prepare_batch(waves, lengths)
        generator = as_generator(generator)
        device, dtype = x.device, x.dtype
        work_dtype = dtype if dtype in (torch.float32, torch.float64) else torch.float32
        x = x.to("cpu", work_dtype)
        batch, num_samples = x.shape
        params = self.sample_parameters(batch, generator)
        out = torch.zeros(batch, num_samples, dtype=work_dtype) if lengths_t is not None else None
        if out is None:
            out = torch.empty(batch, num_samples, dtype=work_dtype)
        self._run(out, lengths_t.tolist() if lengths_t is not None else None, params, generator, source=x)
        out = out.to(device=device, dtype=dtype)
        out = out[0] if squeeze else out
        if return_params:
            return out, params
        return out

    def _run(
        self,
        rows: torch.Tensor,
        lengths: list[int] | None,
        params: dict[str, Any],
        generator: torch.Generator | None,
        source: torch.Tensor | None = None,
        scaled: bool = False,
        subtract_mean: bool | None = None,
    ) -> None:
        """Runs the chain row by row on ``rows[i, :lengths[i]]``.

        With `source`, the row is first set to ``source[i] * scale[i]`` (scaling fused into the copy); otherwise the
        row is scaled in place unless `scaled` says the caller already applied ``params["scale"]``.
        """
        scales = params["scale"].tolist()
        values = self._row_values(params)
        filters = self._filter_bank(params)
        noise_buffer = torch.empty(rows.shape[1], dtype=rows.dtype)
        subtract_mean = self.subtract_mean if subtract_mean is None else bool(subtract_mean)
        for i in range(rows.shape[0]):
            length = rows.shape[1] if lengths is None else int(lengths[i])
            row = rows[i, :length]
            if source is not None:
                torch.mul(source[i, :length], scales[i], out=row)
            elif not scaled and scales[i] != 1.0:
                row.mul_(scales[i])
            self._apply_row(row, i, values, filters[i], generator, noise_buffer, subtract_mean)

    def apply_inplace(
        self,
        rows: torch.Tensor,
        lengths: Sequence[int] | None = None,
        generator: torch.Generator | int | None = None,
        params: dict[str, Any] | None = None,
        scaled: bool = False,
        subtract_mean: bool | None = None,
    ) -> dict[str, Any]:
        """Augments a contiguous ``(batch, N)`` float32/float64 CPU tensor in place (no validation, no copy).

        For callers that already hold the waveforms in a work buffer (e.g. :class:`ContrastiveViewGenerator`).
        Only ``rows[i, :lengths[i]]`` is touched. `params` (from :meth:`sample_parameters`) are drawn if not given;
        ``scaled=True`` means the caller already multiplied each row by ``params["scale"]`` (polarity x gain).
        `subtract_mean` overrides ``self.subtract_mean``. Returns the parameters used.
        """
        generator = as_generator(generator)
        if params is None:
            params = self.sample_parameters(rows.shape[0], generator)
        lengths_list = None if lengths is None else [int(n) for n in lengths]
        self._run(rows, lengths_list, params, generator, scaled=scaled, subtract_mean=subtract_mean)
        return params
