"""Collators and dataset wrappers for pre-training.

* `EpochTaggedDataset` adds ``epoch``, ``index`` and ``num_skipped`` (bad items skipped while producing this example,
  counted in whichever DataLoader worker decoded it) to every example, and forwards ``set_epoch`` (Trainer calls it
  every epoch). Streams carry ``num_skipped`` from the data layer itself.
* `PretrainingViewsCollator` turns a list of examples into ``{"input_values": (B, num_views, frames, mel)}`` with a
  `ContrastiveViewGenerator`. Its randomness is a pure function of ``(seed, epoch, example ids)``, so a resumed run
  produces exactly the views of the uninterrupted one, whichever worker builds the batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def _skip_total(dataset: Any) -> int:
    counter = getattr(dataset, "skip_counter", None)
    return int(counter.num_skipped) if counter is not None else 0


class EpochTaggedDataset(torch.utils.data.Dataset):
    """Map-style wrapper adding ``epoch``, ``index`` and ``num_skipped`` to each example of ``dataset``."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        before = _skip_total(self.dataset)
        example = dict(self.dataset[index])
        example.update(epoch=self.epoch, index=int(index), num_skipped=_skip_total(self.dataset) - before)
        return example

    @property
    def skip_counter(self):
        return getattr(self.dataset, "skip_counter", None)


def _is_unlabelled(labels: Any) -> bool:
    if labels is None:
        return True
    if isinstance(labels, str):
        return labels.strip() == ""
    if isinstance(labels, (int, np.integer)):
        return False
    return len(labels) == 0


def batch_seed(seed: int, epoch: int, ids: Sequence[Any]) -> int:
    """A 63-bit seed that depends only on ``seed``, ``epoch`` and the examples' ids (stable across processes)."""
    text = f"{seed}|{epoch}|" + "|".join(str(i) for i in ids)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") & ((1 << 63) - 1)


class PretrainingViewsCollator:
    """Build the views of a batch: ``{"input_values": (B, V, frames, mel), "num_skipped": int}`` (+ ``labels`` with a
    ``label_vocabulary``, + ``teacher_inputs`` with a ``teacher_feature_extractor``).

    Clips longer than ``crop_samples`` (default: the samples the spectrogram length needs,
    ``view_generator.num_samples``) are first cut to a random window of that length, drawn from the same generator.

    Args:
        view_generator: a `feature_extraction.ContrastiveViewGenerator` (augmentation + fbank of every view).
        seed: base seed; the batch's generator is seeded from ``(seed, epoch, ids)``.
        audio_key: field holding the 1-D float32 waveform.
        crop_samples: random-window length for long clips (``None``: ``view_generator.num_samples``; ``0``: no crop).
        label_vocabulary: a `feature_extraction.data.LabelVocabulary` for the supervised (SupMAM) branch: ``labels``
            become class ids (single-label) or multi-hot rows (multi-label); clips without labels get -100 (ignored).
        teacher_feature_extractor: features of a distillation teacher that cannot read the student's spectrogram (e.g.
            ``ClapFeatureExtractor``): it gets the same cropped waveforms, resampled to its ``sampling_rate``, and its
            output goes under ``teacher_inputs``.
    """

    def __init__(self, view_generator: Any, seed: int = 0, audio_key: str = "audio",
                 crop_samples: int | None = None, label_vocabulary: Any = None,
                 teacher_feature_extractor: Any = None) -> None:
        self.view_generator = view_generator
        self.seed = int(seed)
        self.audio_key = audio_key
        self.label_vocabulary = label_vocabulary
        self.teacher_feature_extractor = teacher_feature_extractor
        self.crop_samples = getattr(view_generator, "num_samples", 0) if crop_samples is None else int(crop_samples)
        self.epoch = 0  # used when examples carry no "epoch" (streams); set by `EpochCallback`

    def _crop(self, waves: list[np.ndarray], generator: torch.Generator) -> list[np.ndarray]:
        if not self.crop_samples:
            return waves
        out = []
        for wave in waves:
            extra = len(wave) - self.crop_samples
            if extra > 0:
                start = int(torch.randint(0, extra + 1, (1,), generator=generator))
                wave = wave[start : start + self.crop_samples]
            out.append(wave)
        return out

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        if not examples:
            raise ValueError("PretrainingViewsCollator got an empty batch.")
        waves = [np.asarray(example[self.audio_key], dtype=np.float32) for example in examples]
        ids = [example.get("id", example.get("index", i)) for i, example in enumerate(examples)]
        epoch = int(examples[0].get("epoch", self.epoch))
        generator = torch.Generator().manual_seed(batch_seed(self.seed, epoch, ids))
        waves = self._crop(waves, generator)
        views = self.view_generator(waves, generator=generator)
        batch = {
            "input_values": views,
            "num_skipped": int(sum(int(example.get("num_skipped", 0)) for example in examples)),
        }
        if self.label_vocabulary is not None:
            batch["labels"] = self._labels(examples)
        if self.teacher_feature_extractor is not None:
            batch["teacher_inputs"] = self._teacher_inputs(waves)
        return batch

    def _labels(self, examples: list[dict[str, Any]]) -> torch.Tensor:
        vocab = self.label_vocabulary
        rows = []
        for example in examples:
            labels = example.get("labels")
            if _is_unlabelled(labels):
                rows.append(np.full(vocab.num_labels, -100.0, np.float32) if vocab.multi_label else -100)
                continue
            try:
                rows.append(vocab.encode(labels))
            except (KeyError, ValueError) as err:
                raise type(err)(f"example {example.get('id', example.get('index'))!r}: {err}") from err
        if vocab.multi_label:
            return torch.from_numpy(np.stack(rows).astype(np.float32))
        return torch.tensor(rows, dtype=torch.long)

    def _teacher_inputs(self, waves: list[np.ndarray]) -> dict[str, torch.Tensor]:
        from .data import TARGET_SAMPLING_RATE, resample_audio

        extractor = self.teacher_feature_extractor
        rate = int(getattr(extractor, "sampling_rate", TARGET_SAMPLING_RATE))
        if rate != TARGET_SAMPLING_RATE:
            waves = [resample_audio(wave, TARGET_SAMPLING_RATE, rate) for wave in waves]
        features = extractor(waves, sampling_rate=rate, return_tensors="pt")
        return {key: value for key, value in features.items() if isinstance(value, torch.Tensor)}


class CollatorEpochCallback:
    """`TrainerCallback`-compatible hook that tells the collator the epoch (for streamed examples without one)."""

    def __init__(self, collator: PretrainingViewsCollator) -> None:
        self.collator = collator

    def __getattr__(self, name):  # every other TrainerCallback event is a no-op
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.epoch = int(round(state.epoch)) if state.epoch is not None else 0
