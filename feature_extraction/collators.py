"""Collators (pre-training views, classification batches) and the epoch-tagging dataset wrapper.

* `AudioClassificationCollator` batches decoded examples for classification: the feature extractor's output plus
  ``labels`` encoded with a `LabelVocabulary`.
* `EpochTaggedDataset` adds ``epoch``, ``index``, ``num_skipped`` and ``skipped_ids`` (the bad items skipped while
  producing this example, counted in whichever DataLoader worker decoded it) to every example, and takes
  ``set_epoch``. Streams carry ``num_skipped`` / ``skipped_ids`` from the data layer itself.
* `PretrainingViewsCollator` turns a list of examples into ``{"input_values": (B, num_views, frames, mel)}`` with a
  `ContrastiveViewGenerator`. Its randomness is a pure function of ``(seed, epoch, example ids)``, so a resumed run
  produces exactly the views of the uninterrupted one, whichever worker builds the batch.

The epoch both hold lives in shared memory (`SharedEpoch`): ``set_epoch`` in the main process also reaches DataLoader
workers that already run (``dataloader_persistent_workers``). `AudioMosaicPretrainingTrainer` calls ``set_epoch`` on
the training dataset and the collator at the start of every epoch, resumed ones included.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .audio_io import TARGET_SAMPLING_RATE, resample_audio
from .augmentation_device import HostTensors, padded_rows
from .clap_device import ClapFeaturesOnDevice, is_clap_feature_extractor
from .labels import LabelVocabulary
from .stream_rows import SharedEpoch, worker_index


def _skip_counter(dataset: Any) -> Any:
    return getattr(dataset, "skip_counter", None)


class EpochTaggedDataset(torch.utils.data.Dataset):
    """Map-style wrapper adding ``epoch``, ``index``, ``num_skipped`` and ``skipped_ids`` to each example of
    ``dataset``.

    ``num_skipped`` / ``skipped_ids``: the bad items passed over while producing this example, e.g. a corrupt file
    replaced by the next good one (with an `AudioDataset`, every pass, also over an item already known to be bad;
    otherwise the skips the wrapped dataset's ``skip_counter`` counted). They are measured in the process that decodes
    (a DataLoader worker), so they reach the training loop through the batches.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self._epoch = SharedEpoch(0)

    @property
    def epoch(self) -> int:
        return self._epoch.get()

    def set_epoch(self, epoch: int) -> None:
        self._epoch.set(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if hasattr(self.dataset, "get_with_skips"):  # `AudioDataset`: every pass over a bad item, known ones too
            example, ids = self.dataset.get_with_skips(index)
            example = dict(example)
        else:  # any dataset with a `skip_counter`: the skips it counted while producing the example
            counter = _skip_counter(self.dataset)
            before = int(counter.num_skipped) if counter is not None else 0
            example = dict(self.dataset[index])
            skipped = (int(counter.num_skipped) - before) if counter is not None else 0
            ids = list(counter.recent_ids)[-skipped:] if skipped > 0 and hasattr(counter, "recent_ids") else []
        example.update(epoch=self.epoch, index=int(index), num_skipped=len(ids), skipped_ids=list(ids))
        return example

    @property
    def skip_counter(self):
        return _skip_counter(self.dataset)


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
    ``label_vocabulary``, + ``teacher_inputs`` with a ``teacher_feature_extractor``; + ``stream_rows``, ``[worker, raw
    records of its pass up to the batch's last]``, for examples of a stream: see `.stream_rows`).

    Clips longer than ``crop_samples`` (default: the samples the spectrogram length needs,
    ``view_generator.num_samples``) are first cut to a random window of that length, drawn from the same generator.

    Args:
        view_generator: a `ContrastiveViewGenerator` (`.augmentation`; augmentation + fbank of every view).
        seed: base seed; the batch's generator is seeded from ``(seed, epoch, ids)``.
        audio_key: field holding the 1-D float32 waveform.
        crop_samples: random-window length for long clips (``None``: ``view_generator.num_samples``; ``0``: no crop).
        label_vocabulary: a `.labels.LabelVocabulary` for the supervised (SupMAM) branch: ``labels`` become
            class ids (single-label) or multi-hot rows (multi-label); clips without labels get -100 (ignored).
        teacher_feature_extractor: features of a distillation teacher that cannot read the student's spectrogram (e.g.
            ``ClapFeatureExtractor``): it gets the same cropped waveforms, resampled to its ``sampling_rate``, and its
            output goes under ``teacher_inputs``. Its random choices (e.g. CLAP's windows of clips longer than its 10
            s) come from a seed of ``(seed, epoch, ids)`` of their own. With ``views_on_device`` a
            ``ClapFeatureExtractor``'s spectrogram runs on the device too: the batch carries ``teacher_plan``
            instead (`.clap_device.ClapFeaturesOnDevice`, equal features where there is sound), from which and the
            views' ``waveforms`` `AudioMosaicPretrainingTrainer` makes ``teacher_inputs`` in the training step (the
            teacher's waveforms are resampled there; ``teacher_waveforms`` travel only where the resampler is no
            fixed filter).
        views_on_device: return the cropped waveforms and the views' random parameters instead of the views:
            ``{"waveforms": (B, max samples) float32 (zero after each clip), "waveform_lengths": (B,),
            "view_parameters": HostTensors({..., "lengths"})}`` (drawn from the same generator, in the same order, as
            the host views; kept on the host through pinning and device placement), for
            `AudioMosaicPretrainingTrainer` to compute the views on the model's device
            (`ContrastiveViewGenerator.views_from_parameters`). The workers then only decode and crop.
    """

    def __init__(self, view_generator: Any, seed: int = 0, audio_key: str = "audio",
                 crop_samples: int | None = None, label_vocabulary: Any = None,
                 teacher_feature_extractor: Any = None, views_on_device: bool = False) -> None:
        self.view_generator = view_generator
        self.views_on_device = bool(views_on_device)
        if self.views_on_device and not hasattr(view_generator, "sample_view_parameters"):
            raise TypeError(
                f"views_on_device=True needs a ContrastiveViewGenerator, got {type(view_generator).__name__}."
            )
        self.seed = int(seed)
        self.audio_key = audio_key
        self.label_vocabulary = label_vocabulary
        self.teacher_feature_extractor = teacher_feature_extractor
        # a CLAP teacher's spectrogram on the device, with the views (None: its features are computed here)
        self.teacher_on_device = (
            ClapFeaturesOnDevice(teacher_feature_extractor)
            if self.views_on_device and is_clap_feature_extractor(teacher_feature_extractor) else None
        )
        # the teacher's waveforms made on the device from the views' crops (not resampled here and sent)
        self.teacher_resampled_on_device = (
            self.teacher_on_device is not None
            and self.teacher_on_device.resampling_kernel(TARGET_SAMPLING_RATE) is not None
        )
        self.crop_samples = getattr(view_generator, "num_samples", 0) if crop_samples is None else int(crop_samples)
        self._epoch = SharedEpoch(0)  # used when examples carry no "epoch" (streams); see `set_epoch`

    @property
    def epoch(self) -> int:
        return self._epoch.get()

    @epoch.setter
    def epoch(self, epoch: int) -> None:
        self._epoch.set(epoch)

    def set_epoch(self, epoch: int) -> None:
        """The epoch used for examples without an ``epoch`` field (streams); the Trainer calls it every epoch."""
        self._epoch.set(epoch)

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
        if self.views_on_device:
            batch = self._device_view_inputs(waves, generator)
        else:
            batch = {"input_values": self.view_generator(waves, generator=generator)}
        batch.update({
            # bad items skipped while producing these examples (in the worker that decoded them), and their ids
            "num_skipped": int(sum(int(example.get("num_skipped", 0)) for example in examples)),
            "skipped_ids": [str(i) for example in examples for i in (example.get("skipped_ids") or ())],
        })
        rows = [example["stream_row"] for example in examples if example.get("stream_row") is not None]
        if rows:  # a stream: where in this worker's raw records the batch ends (`stream_rows.py`)
            batch["stream_rows"] = [worker_index(), int(max(rows)) + 1]
        if self.label_vocabulary is not None:
            batch["labels"] = self._labels(examples)
        if self.teacher_feature_extractor is not None:
            # the teacher's randomness is a stream of its own: the device views do not draw their noise from
            # `generator` here, so its state after the views differs between the two paths
            teacher_seed = batch_seed(self.seed, epoch, ["teacher", *ids]) % 2**32
            if self.teacher_on_device is not None:
                batch.update(self.teacher_on_device.plan(waves, np.random.RandomState(teacher_seed),
                                                         waveforms=not self.teacher_resampled_on_device))
            else:
                batch["teacher_inputs"] = self._teacher_inputs(waves, teacher_seed)
        return batch

    def _device_view_inputs(self, waves: list[np.ndarray], generator: torch.Generator) -> dict[str, Any]:
        """The cropped clips as one zero-padded tensor, their lengths and the views' random parameters."""
        clips = self.view_generator._clips(waves)  # the host path's validation: 1-D, finite, at least one frame
        padded, lengths = padded_rows(clips)
        parameters = self.view_generator.sample_view_parameters(lengths, generator)
        # the parameters and a copy of the lengths stay on the host through pinning and device placement: the views'
        # control flow reads them there (`HostTensors`)
        return {"waveforms": padded, "waveform_lengths": lengths,
                "view_parameters": HostTensors({**parameters, "lengths": lengths.clone()})}

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

    def _teacher_inputs(self, waves: list[np.ndarray], seed: int) -> dict[str, torch.Tensor]:
        """The teacher's features of the cropped clips, with any randomness of its extractor drawn from numpy's
        generator seeded with `seed` (from the batch's ids): ``ClapFeatureExtractor`` picks random windows of clips
        longer than its 10 s (the student's crop of 10.24 s is) from numpy's global generator, which DataLoader
        workers seed from the loader's own random seed, so a resumed run would have distilled towards other
        targets."""
        extractor = self.teacher_feature_extractor
        rate = int(getattr(extractor, "sampling_rate", TARGET_SAMPLING_RATE))
        if rate != TARGET_SAMPLING_RATE:
            waves = [resample_audio(wave, TARGET_SAMPLING_RATE, rate) for wave in waves]
        saved = np.random.get_state()
        np.random.seed(seed)
        try:
            features = extractor(waves, sampling_rate=rate, return_tensors="pt")
        finally:
            np.random.set_state(saved)  # the worker's own numpy stream goes on as if untouched
        return {key: value for key, value in features.items() if isinstance(value, torch.Tensor)}


class AudioClassificationCollator:
    """Batch examples for classification: ``feature_extractor(waves, sampling_rate=..., return_tensors=...)`` plus
    ``labels`` encoded with a [`LabelVocabulary`].

    ``feature_extractor`` is any callable with that signature (e.g. ``AudioMosaicFeatureExtractor``); extra keyword
    arguments go in ``extractor_kwargs`` (e.g. ``{"padding": "longest"}``). Labels: ``int64`` class ids for a
    single-label vocabulary, ``float32`` multi-hot rows for a multi-label one; no ``labels`` key without a
    vocabulary. ``return_ids=True`` adds the example ids (a list) under ``"ids"`` -- not for ``Trainer``, whose
    model call would receive it. Picklable (DataLoader workers).
    """

    def __init__(
        self,
        feature_extractor: Callable[..., Any],
        vocabulary: LabelVocabulary | None = None,
        *,
        sampling_rate: int = TARGET_SAMPLING_RATE,
        return_tensors: str = "pt",
        extractor_kwargs: Mapping[str, Any] | None = None,
        unknown_labels: str = "error",
        return_ids: bool = False,
    ):
        self.feature_extractor = feature_extractor
        self.vocabulary = vocabulary
        self.sampling_rate = sampling_rate
        self.return_tensors = return_tensors
        self.extractor_kwargs = dict(extractor_kwargs or {})
        self.unknown_labels = unknown_labels
        self.return_ids = return_ids

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> Any:
        if not examples:
            raise ValueError("cannot collate an empty list of examples")
        waves = [np.asarray(ex["audio"], dtype=np.float32) for ex in examples]
        batch = self.feature_extractor(
            waves, sampling_rate=self.sampling_rate, return_tensors=self.return_tensors, **self.extractor_kwargs
        )
        if self.vocabulary is not None:
            encoded = []
            for ex in examples:
                try:
                    encoded.append(self.vocabulary.encode(ex.get("labels"), unknown=self.unknown_labels))
                except (KeyError, ValueError) as err:
                    raise type(err)(f"example {ex.get('id')!r}: {err}") from err
            if self.vocabulary.multi_label:
                labels = np.stack(encoded).astype(np.float32)
            else:
                labels = np.asarray(encoded, dtype=np.int64)
            if self.return_tensors == "pt":
                labels = torch.from_numpy(labels)
            batch["labels"] = labels
        if self.return_ids:
            batch["ids"] = [ex.get("id") for ex in examples]
        return batch


def collate_for_classification(
    examples: Sequence[Mapping[str, Any]],
    feature_extractor: Callable[..., Any],
    vocabulary: LabelVocabulary | None = None,
    **kwargs: Any,
) -> Any:
    """Functional form of [`AudioClassificationCollator`] (same keyword arguments)."""
    return AudioClassificationCollator(feature_extractor, vocabulary, **kwargs)(examples)
