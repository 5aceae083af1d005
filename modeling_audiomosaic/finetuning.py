# Copyright 2026 The AudioMosaic for Transformers authors. Licensed under the Apache License, Version 2.0.
"""Fine-tuning building blocks for AudioMosaic: layer-wise lr decay, augmentation, and the Trainer.

* **Layer-wise lr decay** (BEiT style, [`layer_decay_param_groups`]): the model says which layer each parameter
  belongs to and which parameters get no weight decay (`model.get_layer_id(name, norm_pre)`,
  `model.no_weight_decay()`, declared by `AudioMosaicPreTrainedModel` and by `model.probe_head()`). With L blocks the
  stem (CLS token, position table, patch embedding) has layer id 0, block k has id k + 1, everything else (`fc_norm`,
  heads, probe modules) id L + 1; a group's lr is `lr * layer_decay ** (L + 1 - id)`. The original puts `norm_pre` in
  the "everything else" bucket, i.e. at the full lr (a quirk of its recipe) — this is the default (`norm_pre="head"`);
  `norm_pre="embeddings"` gives it the stem's id 0 instead. Models that declare no rule of their own (e.g.
  transformers' AST) get a generic rule on ViT parameter names ([`get_layer_id`], `NO_WEIGHT_DECAY_NAMES`).
* **Mixup** in the **waveform** domain, as the original ([`mixup_waveforms`]): with probability `p` per clip, a
  partner is drawn from the same batch, both are mean-subtracted, the partner is zero-padded / cut to the clip's
  length, `λ ~ Beta(10, 10)`, `x = λ·x1 + (1 − λ)·x2` (mean-subtracted again), targets `λ·y1 + (1 − λ)·y2` (one-hot
  rows for single-label tasks → soft-target cross-entropy, which equals `λ·CE(y1) + (1 − λ)·CE(y2)`; multi-hot rows
  for multi-label → BCE on soft targets). The original draws the partner from the whole dataset; drawing it from the
  batch is the usual equivalent for a shuffled loader.
* **SpecAugment** on normalised features ([`SpecAugment`]): one frequency mask and one time mask per clip with
  torchaudio's `mask_along_axis` distribution (width `⌊U·F⌋`, start `⌊U·(size − U·F)⌋`), filled with the value a raw
  log-mel 0 takes after normalisation, `(0 − mean) / (2·std)` (≈ 0.467 for AudioSet), exactly like the original which
  masks before normalising. Plus the Speech Commands noise/shift ([`add_noise_and_shift`]).
* **Token dropping** lives in the model (`config.token_drop_time/freq`, training mode only).
* **Probing** (freezing, cached probe inputs, logistic-regression probes) lives in `modeling_audiomosaic.probing`.
* [`AudioClassificationTrainer`]: LLRD optimizer, one loss for hard and soft targets (the model's
  `classification_loss`, a per-batch mean, `loss_is_scaled_for_ga = False`), augmentation only in training
  (`eval_data_collator` for evaluation/prediction).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import Trainer
from transformers.utils import logging

from .feature_extraction.feature_extraction_audiomosaic import normalized_padding_value
from .feature_extraction.random_draws import as_generator, sample_beta  # one generator coercion, one Beta sampler
from .modeling_audiomosaic import classification_loss

logger = logging.get_logger(__name__)

# The generic rule for models that do not declare `get_layer_id` / `no_weight_decay` (ViT-like names, e.g. AST)
NO_WEIGHT_DECAY_NAMES: tuple[str, ...] = ("cls_token", "position_embeddings", "pos_embed", "dist_token", "mask_token")
NORM_PRE_NAMES: tuple[str, ...] = ("pre_layernorm", "norm_pre")
STEM_NAMES: tuple[str, ...] = (
    "cls_token", "position_embeddings", "patch_embeddings", "pos_embed", "patch_embed", "dist_token", "mask_token",
    "distillation_token",
)
_BLOCK_PATTERN = re.compile(r"(?:^|\.)(?:layers|layer|blocks)\.(\d+)\.")


# ----------------------------------------------------------------------------------------------------------------------
# Layer-wise learning-rate decay
# ----------------------------------------------------------------------------------------------------------------------
def _num_layers(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "num_hidden_layers", None):
        return int(config.num_hidden_layers)
    if getattr(model, "num_hidden_layers", None):
        return int(model.num_hidden_layers)
    ids = [int(m.group(1)) for name, _ in model.named_parameters() if (m := _BLOCK_PATTERN.search(name))]
    return max(ids) + 1 if ids else 0


def get_layer_id(name: str, num_layers: int, norm_pre: str = "head") -> int:
    """Generic layer id of a ViT parameter for layer-wise lr decay (BEiT / MAE `get_layer_id_for_vit` on HF names), for
    models that do not declare `get_layer_id` themselves (AudioMosaic models do: `model.get_layer_id`).

    Args:
        name: parameter name, e.g. `audio_spectrogram_transformer.encoder.layer.3.attention.attention.query.weight`
            (any prefix; blocks named `layers.k` / `layer.k` / `blocks.k`, a stem holding `cls_token`,
            `position_embeddings`, `patch_embeddings`...).
        num_layers: number of transformer blocks L.
        norm_pre: `"head"` (default: the original's quirk, `norm_pre` trains at the full lr, id L + 1) or
            `"embeddings"` (id 0, with the stem).

    Returns:
        0 for the stem, k + 1 for block k, L + 1 for everything else.
    """
    if norm_pre not in ("head", "embeddings"):
        raise ValueError(f'norm_pre must be "head" or "embeddings", got {norm_pre!r}')
    match = _BLOCK_PATTERN.search(name)
    if match:
        return int(match.group(1)) + 1
    parts = name.split(".")
    if any(part in NORM_PRE_NAMES for part in parts):
        return num_layers + 1 if norm_pre == "head" else 0
    if any(part in STEM_NAMES for part in parts):
        return 0
    return num_layers + 1


def no_weight_decay_parameters(model: nn.Module) -> set[int]:
    """`id()`s of the parameters that `model.no_weight_decay()` names.

    Matched by identity, not by name, so that a wrapper that forwards the call to the model it wraps (FSDP1) and
    reports other names still gets the model's answer. Raises `TypeError` when the model declares no such method.
    """
    method = getattr(model, "no_weight_decay", None)
    if not callable(method):
        raise TypeError(
            f"{type(model).__name__} does not declare no_weight_decay(): pass an AudioMosaic model (every "
            "AudioMosaicPreTrainedModel lists the parameters it trains without weight decay) or use the generic rule "
            "of layer_decay_param_groups."
        )
    owner = getattr(method, "__self__", model)
    excluded = set(method())
    return {id(param) for name, param in owner.named_parameters() if name in excluded}


def parameter_rules(
    model: nn.Module, norm_pre: str = "head", num_layers: int | None = None
) -> tuple[Callable[[str], int], Callable[[str, nn.Parameter], bool]]:
    """`(layer_id(name), no_weight_decay(name, param))` for the parameters of `model`.

    A model that declares them (`get_layer_id(name, norm_pre)` and `no_weight_decay()`, as every AudioMosaic model and
    `model.probe_head()` do) is asked; any other model gets the generic ViT rule ([`get_layer_id`]; no decay for 1-D
    tensors and `NO_WEIGHT_DECAY_NAMES`).
    """
    if callable(getattr(model, "get_layer_id", None)) and callable(getattr(model, "no_weight_decay", None)):
        excluded = no_weight_decay_parameters(model)
        return (lambda name: model.get_layer_id(name, norm_pre)), (lambda name, param: id(param) in excluded)
    num_layers = _num_layers(model) if num_layers is None else num_layers
    return (
        lambda name: get_layer_id(name, num_layers, norm_pre),
        lambda name, param: param.ndim <= 1 or any(part in NO_WEIGHT_DECAY_NAMES for part in name.split(".")),
    )


def layer_decay_param_groups(
    model: nn.Module,
    weight_decay: float = 0.0,
    layer_decay: float = 1.0,
    *,
    base_lr: float | None = None,
    norm_pre: str = "head",
    num_layers: int | None = None,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups with layer-wise lr decay and the model's weight-decay exclusions
    ([`parameter_rules`]).

    Only parameters with `requires_grad` are included (frozen encoders are skipped). Each group has `params`,
    `param_names`, `weight_decay`, `lr_scale = layer_decay ** (L + 1 - layer_id)`, `layer_id` and, when `base_lr`
    is given, `lr = base_lr * lr_scale`. Groups are ordered from the head (scale 1) down to the stem, so the first
    group's lr is the base lr (what `Trainer` logs).
    """
    num_layers = _num_layers(model) if num_layers is None else num_layers
    layer_id_of, no_decay_of = parameter_rules(model, norm_pre, num_layers)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = no_decay_of(name, param)
        layer_id = layer_id_of(name)
        key = (layer_id, no_decay)
        if key not in groups:
            scale = float(layer_decay ** (num_layers + 1 - layer_id))
            groups[key] = {
                "params": [],
                "param_names": [],
                "weight_decay": 0.0 if no_decay else float(weight_decay),
                "lr_scale": scale,
                "layer_id": layer_id,
            }
            if base_lr is not None:
                groups[key]["lr"] = base_lr * scale
        groups[key]["params"].append(param)
        groups[key]["param_names"].append(name)
    return [groups[key] for key in sorted(groups, key=lambda k: (-k[0], k[1]))]


# ----------------------------------------------------------------------------------------------------------------------
# Augmentations
# ----------------------------------------------------------------------------------------------------------------------
def mixup_waveforms(
    waves: Sequence[np.ndarray],
    targets: np.ndarray,
    probability: float,
    alpha: float = 10.0,
    beta: float = 10.0,
    generator: torch.Generator | int | None = None,
    return_params: bool = False,
):
    """Waveform mixup of the original fine-tuning recipe (see the module docstring).

    Args:
        waves: 1-D float clips (lengths may differ).
        targets: `(B, C)` float rows (one-hot for single-label tasks, multi-hot for multi-label ones).
        probability: chance that a clip is mixed (original: 0.8 for AudioSet and Speech Commands, 0 for ESC-50).
        alpha, beta: `λ ~ Beta(alpha, beta)` (original 10, 10).
        generator: torch generator or seed (`None`: torch's global generator).

    Returns:
        `(mixed_waves, mixed_targets)` (new arrays; unmixed clips are returned unchanged) and, with `return_params`,
        `{"mixed": bool (B,), "partner": long (B,), "lam": float64 (B,)}` (λ = 1 for unmixed clips).
    """
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"mixup probability must be in [0, 1], got {probability}")
    generator = as_generator(generator)
    targets = np.asarray(targets, dtype=np.float32)
    n = len(waves)
    if targets.ndim != 2 or targets.shape[0] != n:
        raise ValueError(f"targets must be (batch={n}, classes), got {targets.shape}")
    draws = torch.rand(n, dtype=torch.float64, generator=generator)
    partner = torch.randint(0, max(n - 1, 1), (n,), generator=generator)
    partner = partner + (partner >= torch.arange(n)).long()  # uniform over the other clips
    lam = sample_beta(n, alpha, beta, generator)
    mixed = (draws < probability) if n > 1 else torch.zeros(n, dtype=torch.bool)
    out_waves: list[np.ndarray] = []
    out_targets = targets.copy()
    for i in range(n):
        wave = np.asarray(waves[i], dtype=np.float32)
        if not bool(mixed[i]):
            out_waves.append(wave)
            continue
        j, weight = int(partner[i]), float(lam[i])
        first = wave - wave.mean()
        second = np.asarray(waves[j], dtype=np.float32)
        second = second - second.mean()
        if second.shape[0] < first.shape[0]:
            second = np.pad(second, (0, first.shape[0] - second.shape[0]))
        else:
            second = second[: first.shape[0]]
        mix = weight * first + (1.0 - weight) * second
        out_waves.append((mix - mix.mean()).astype(np.float32))
        out_targets[i] = weight * targets[i] + (1.0 - weight) * targets[j]
    lam = torch.where(mixed, lam, torch.ones_like(lam))
    if return_params:
        return out_waves, out_targets, {"mixed": mixed, "partner": partner, "lam": lam}
    return out_waves, out_targets


def normalized_fill_value(feature_extractor: Any, raw_value: float = 0.0) -> float:
    """The value a raw log-mel `raw_value` takes after the extractor's normalisation, `(raw − mean) / (2·std)`
    (the feature extractor's own `normalized_padding_value`, so padding and masking use one rule)."""
    return float(normalized_padding_value(raw_value, feature_extractor.mean, feature_extractor.std,
                                          getattr(feature_extractor, "do_normalize", True)))


class SpecAugment:
    """Frequency and time masking of normalised `(B, T, F)` features (or one `(T, F)` clip), per clip.

    Each of the `num_freq_masks` / `num_time_masks` masks follows torchaudio's `FrequencyMasking(F)` /
    `TimeMasking(T)` with `iid_masks=False` on one clip (what the original applies per clip): width
    `⌊u1·param⌋`, start `⌊u2·(size − u1·param)⌋`, `u1, u2 ~ U(0, 1)`, so the width is at most `param − 1`. Masked cells
    get `fill_value` (use [`SpecAugment.from_feature_extractor`] for the normalised raw-0 value of the original).

    Args:
        freq_mask_param: maximum frequency-mask width (bins), 0 = off (original: 48 AudioSet/SPC, 24 ESC-50).
        time_mask_param: maximum time-mask width (frames), 0 = off (original: 192 AudioSet, 96 ESC-50, 48 SPC).
        fill_value: value written into masked cells.
        num_freq_masks, num_time_masks: masks per clip (original: 1 each).
    """

    def __init__(
        self,
        freq_mask_param: int = 0,
        time_mask_param: int = 0,
        fill_value: float = 0.0,
        num_freq_masks: int = 1,
        num_time_masks: int = 1,
    ) -> None:
        if freq_mask_param < 0 or time_mask_param < 0:
            raise ValueError("mask parameters must be >= 0")
        self.freq_mask_param = int(freq_mask_param)
        self.time_mask_param = int(time_mask_param)
        self.fill_value = float(fill_value)
        self.num_freq_masks = int(num_freq_masks)
        self.num_time_masks = int(num_time_masks)

    @classmethod
    def from_feature_extractor(cls, feature_extractor: Any, freq_mask_param: int = 0, time_mask_param: int = 0,
                               **kwargs: Any) -> SpecAugment:
        """SpecAugment filling the normalised raw-0 value of `feature_extractor` (the original's behaviour)."""
        return cls(freq_mask_param, time_mask_param, fill_value=normalized_fill_value(feature_extractor), **kwargs)

    @property
    def is_identity(self) -> bool:
        return (self.freq_mask_param == 0 or self.num_freq_masks == 0) and (
            self.time_mask_param == 0 or self.num_time_masks == 0
        )

    def __repr__(self) -> str:
        return (f"SpecAugment(freq_mask_param={self.freq_mask_param}, time_mask_param={self.time_mask_param}, "
                f"fill_value={self.fill_value:.5f}, masks={self.num_freq_masks}/{self.num_time_masks})")

    @staticmethod
    def _draw(n: int, param: int, size: int, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        value = torch.rand(n, dtype=torch.float64, generator=generator) * param
        start = (torch.rand(n, dtype=torch.float64, generator=generator) * (size - value)).long()
        return start, start + value.long()

    def sample_masks(self, batch: int, frames: int, bins: int, generator: torch.Generator | int | None = None):
        """`(freq_mask (B, F) bool, time_mask (B, T) bool)` — True where the cell is masked."""
        generator = as_generator(generator)
        freq = torch.zeros(batch, bins, dtype=torch.bool)
        time = torch.zeros(batch, frames, dtype=torch.bool)
        bin_index = torch.arange(bins)
        frame_index = torch.arange(frames)
        for _ in range(self.num_freq_masks if self.freq_mask_param > 0 else 0):
            start, end = self._draw(batch, self.freq_mask_param, bins, generator)
            freq |= (bin_index[None] >= start[:, None]) & (bin_index[None] < end[:, None])
        for _ in range(self.num_time_masks if self.time_mask_param > 0 else 0):
            start, end = self._draw(batch, self.time_mask_param, frames, generator)
            time |= (frame_index[None] >= start[:, None]) & (frame_index[None] < end[:, None])
        return freq, time

    def __call__(self, features: torch.Tensor, generator: torch.Generator | int | None = None,
                 return_masks: bool = False):
        """A masked copy of `features` (`(B, T, F)` or `(T, F)`); the input is not modified."""
        squeeze = features.ndim == 2
        x = features.unsqueeze(0) if squeeze else features
        if x.ndim != 3:
            raise ValueError(f"features must be (batch, frames, bins) or (frames, bins), got {tuple(features.shape)}")
        freq, time = self.sample_masks(x.shape[0], x.shape[1], x.shape[2], generator)
        mask = (time[:, :, None] | freq[:, None, :]).to(x.device)
        out = x.masked_fill(mask, self.fill_value)
        out = out[0] if squeeze else out
        return (out, freq, time) if return_masks else out


def add_noise_and_shift(features: torch.Tensor, generator: torch.Generator | int | None = None,
                        max_shift: int = 10) -> torch.Tensor:
    """Speech Commands fine-tuning noise of the original, after normalisation: per clip
    `x + U(0,1)^{T×F} · U(0,1) / 10`, then a circular shift along time by `randint(−max_shift, max_shift)` frames
    (upper bound excluded, as `np.random.randint`)."""
    generator = as_generator(generator)
    squeeze = features.ndim == 2
    x = features.unsqueeze(0) if squeeze else features
    batch = x.shape[0]
    noise = torch.rand(x.shape, generator=generator, dtype=torch.float32).to(x.device, x.dtype)
    scale = torch.rand(batch, 1, 1, generator=generator, dtype=torch.float32).to(x.device, x.dtype)
    x = x + noise * scale / 10
    shifts = torch.randint(-max_shift, max_shift, (batch,), generator=generator)
    x = torch.stack([torch.roll(x[i], int(shifts[i]), dims=0) for i in range(batch)])
    return x[0] if squeeze else x


class AudioClassificationTrainCollator:
    """Training collator: waveforms → [roll + gain] → [waveform mixup] → features → [SpecAugment] → [noise].

    The order is the original's (`AudiosetDataset.__getitem__`). With no augmentation enabled it returns exactly what
    `modeling_audiomosaic.feature_extraction.collators.AudioClassificationCollator` returns. Labels: `int64` class ids
    (single-label) or `float32` multi-hot rows; with `mixup > 0` always `float32` `(B, C)` rows (one-hot / soft for
    single-label tasks, handled by [`classification_loss`]).

    Randomness: one seed per batch is drawn from torch's global generator (seeded by `Trainer` and, in DataLoader
    workers, per worker), and everything else comes from a generator seeded with it.

    Args:
        feature_extractor: e.g. `AudioMosaicFeatureExtractor` (pads/crops to its `max_length`).
        vocabulary: a `modeling_audiomosaic.feature_extraction.labels.LabelVocabulary`.
        mixup, mixup_alpha, mixup_beta: see [`mixup_waveforms`].
        roll_and_gain: the original `roll_mag_aug` (random circular roll + gain `Beta(10, 10) + 0.5`).
        spec_augment: a [`SpecAugment`] (or `None`).
        noise: the Speech Commands noise + time shift ([`add_noise_and_shift`]).
        sampling_rate: rate of the waveforms (16 kHz).
    """

    def __init__(
        self,
        feature_extractor: Callable[..., Any],
        vocabulary: Any,
        *,
        mixup: float = 0.0,
        mixup_alpha: float = 10.0,
        mixup_beta: float = 10.0,
        roll_and_gain: bool = False,
        spec_augment: SpecAugment | None = None,
        noise: bool = False,
        sampling_rate: int = 16000,
        extractor_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.feature_extractor = feature_extractor
        self.vocabulary = vocabulary
        self.mixup = float(mixup)
        self.mixup_alpha = mixup_alpha
        self.mixup_beta = mixup_beta
        self.roll_and_gain = bool(roll_and_gain)
        self.spec_augment = spec_augment if spec_augment is not None and not spec_augment.is_identity else None
        self.noise = bool(noise)
        self.sampling_rate = sampling_rate
        self.extractor_kwargs = dict(extractor_kwargs or {})
        if self.mixup > 0 and vocabulary is None:
            raise ValueError("mixup needs a label vocabulary")

    @property
    def is_identity(self) -> bool:
        """True when no augmentation is enabled."""
        return self.mixup == 0 and not self.roll_and_gain and self.spec_augment is None and not self.noise

    def describe(self) -> dict[str, Any]:
        return {"mixup": self.mixup, "mixup_beta": [self.mixup_alpha, self.mixup_beta],
                "roll_and_gain": self.roll_and_gain, "spec_augment": repr(self.spec_augment), "noise": self.noise}

    def _targets(self, examples: Sequence[Mapping[str, Any]], soft: bool) -> np.ndarray:
        vocab = self.vocabulary
        encoded = []
        for ex in examples:
            try:
                encoded.append(vocab.encode(ex.get("labels")))
            except (KeyError, ValueError) as err:
                raise type(err)(f"example {ex.get('id')!r}: {err}") from err
        if vocab.multi_label:
            return np.stack(encoded).astype(np.float32)
        ids = np.asarray(encoded, dtype=np.int64)
        if not soft:
            return ids
        one_hot = np.zeros((len(ids), vocab.num_labels), dtype=np.float32)
        one_hot[np.arange(len(ids)), ids] = 1.0
        return one_hot

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> Any:
        if not examples:
            raise ValueError("cannot collate an empty list of examples")
        waves = [np.asarray(ex["audio"], dtype=np.float32) for ex in examples]
        generator = None
        if not self.is_identity:
            generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
        targets = self._targets(examples, soft=self.mixup > 0) if self.vocabulary is not None else None
        if self.roll_and_gain:
            from .feature_extraction.augmentation import roll_and_gain

            waves = [roll_and_gain(torch.from_numpy(w), generator).numpy() for w in waves]
        if self.mixup > 0:
            waves, targets = mixup_waveforms(waves, targets, self.mixup, self.mixup_alpha, self.mixup_beta, generator)
        batch = self.feature_extractor(
            waves, sampling_rate=self.sampling_rate, return_tensors="pt", **self.extractor_kwargs
        )
        if self.spec_augment is not None:
            batch["input_values"] = self.spec_augment(batch["input_values"], generator)
        if self.noise:
            batch["input_values"] = add_noise_and_shift(batch["input_values"], generator)
        if targets is not None:
            batch["labels"] = torch.from_numpy(np.ascontiguousarray(targets))
        return batch


# ----------------------------------------------------------------------------------------------------------------------
# Trainer
# ----------------------------------------------------------------------------------------------------------------------
class AudioClassificationTrainer(Trainer):
    """`Trainer` for audio classification fine-tuning and probing.

    * optimizer: [`layer_decay_param_groups`] (layer-wise lr decay `layer_decay`, `norm_pre` handling; layer ids and
      weight-decay exclusions from the model, see [`parameter_rules`]) with the optimizer class/kwargs chosen by
      `TrainingArguments.optim`;
    * loss: [`classification_loss`] (hard or soft targets) — a per-batch mean, hence `loss_is_scaled_for_ga = False`
      (Trainer divides it by the gradient-accumulation steps);
    * `eval_data_collator`: used for evaluation and prediction (training batches use `data_collator`, which may
      augment).

    Args (besides `Trainer`'s):
        layer_decay: lr decay per layer (1.0 = none; the original uses 0.65 / 0.75).
        norm_pre: `"head"` (original quirk: full lr) or `"embeddings"` (stem lr), see `encoder_layer_id`.
        problem_type: overrides the model config's `problem_type` for the loss.
        eval_data_collator: collator for evaluation/prediction dataloaders.
    """

    loss_is_scaled_for_ga = False

    def __init__(self, *args: Any, layer_decay: float = 1.0, norm_pre: str = "head", problem_type: str | None = None,
                 eval_data_collator: Callable | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.layer_decay = float(layer_decay)
        self.norm_pre = norm_pre
        self.problem_type = problem_type
        self.eval_data_collator = eval_data_collator
        self.param_group_summary: list[dict[str, Any]] = []

    # -- optimizer -------------------------------------------------------------------------------------------------
    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        opt_model = self.model if model is None else model
        if self.optimizer is None:
            groups = layer_decay_param_groups(
                opt_model,
                weight_decay=self.args.weight_decay,
                layer_decay=self.layer_decay,
                base_lr=self.args.learning_rate,
                norm_pre=self.norm_pre,
            )
            if self.optimizer_cls_and_kwargs is not None:
                optimizer_cls, optimizer_kwargs = self.optimizer_cls_and_kwargs
            else:
                optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            optimizer_kwargs = {k: v for k, v in optimizer_kwargs.items() if k not in ("params", "model")}
            self.param_group_summary = [
                {"layer_id": g["layer_id"], "lr_scale": g["lr_scale"], "lr": g["lr"], "weight_decay": g["weight_decay"],
                 "num_tensors": len(g["params"]), "first_param": g["param_names"][0]}
                for g in groups
            ]
            for group in groups:  # torch keeps unknown keys; drop ours that optimizers might not expect
                group.pop("param_names", None)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
            scales = sorted({(g["layer_id"], g["lr_scale"]) for g in groups})
            logger.info("optimizer: %d groups, lr scale per layer id: %s", len(groups),
                        ", ".join(f"{i}: {s:.4g}" for i, s in scales))
        return self.optimizer

    # -- loss --------------------------------------------------------------------------------------------------------
    def _problem_type(self, model: nn.Module) -> str | None:
        if self.problem_type is not None:
            return self.problem_type
        unwrapped = self.accelerator.unwrap_model(model)
        config = getattr(unwrapped, "config", None)
        return getattr(config, "problem_type", None) or getattr(unwrapped, "problem_type", None)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs.pop("labels", None)
        outputs = model(**inputs)
        if labels is None:
            loss = outputs["loss"] if isinstance(outputs, Mapping) and outputs.get("loss") is not None else None
            if loss is None:
                raise ValueError("the batch has no labels")
        else:
            logits = outputs["logits"] if isinstance(outputs, Mapping) else outputs[0]
            loss = classification_loss(logits, labels, self._problem_type(model))
        return (loss, outputs) if return_outputs else loss

    # -- evaluation dataloaders without augmentation ----------------------------------------------------------------
    def _with_eval_collator(self, build: Callable, *args: Any, **kwargs: Any):
        if self.eval_data_collator is None:
            return build(*args, **kwargs)
        saved = self.data_collator
        self.data_collator = self.eval_data_collator
        try:
            return build(*args, **kwargs)
        finally:
            self.data_collator = saved

    def get_eval_dataloader(self, eval_dataset=None):
        return self._with_eval_collator(super().get_eval_dataloader, eval_dataset)

    def get_test_dataloader(self, test_dataset):
        return self._with_eval_collator(super().get_test_dataloader, test_dataset)


def logits_only(logits: Any, labels: Any = None) -> torch.Tensor:
    """`preprocess_logits_for_metrics`: keep only the logits of tuple outputs (drops pooled/hidden states)."""
    return logits[0] if isinstance(logits, (tuple, list)) else logits


__all__ = [
    "AudioClassificationTrainCollator",
    "AudioClassificationTrainer",
    "SpecAugment",
    "add_noise_and_shift",
    "get_layer_id",
    "layer_decay_param_groups",
    "logits_only",
    "mixup_waveforms",
    "no_weight_decay_parameters",
    "normalized_fill_value",
    "parameter_rules",
    "sample_beta",
]
