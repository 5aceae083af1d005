"""Catalogue of the 15 released AudioMosaic checkpoints: what each release is and how it maps onto this package.

This module imports only the standard library, so it can be loaded without torch/transformers. It holds facts only;
the model cards are rendered from them by :mod:`modeling_audiomosaic.model_cards`, and the converter
(:mod:`modeling_audiomosaic.convert_original_checkpoint`) recognises a release with :func:`release_for_path`::

    from modeling_audiomosaic.releases import RELEASES, release_for_path

    info = release_for_path("downloads/AudioMosaic-vit-b16-finetune-esc-split3")
    info.target_class, info.input_preset, info.num_labels  # ('AudioMosaicForAudioClassification', 'esc50', 50)

Facts (classes, input sizes, label sets, reported numbers, recipes and quirks) come from the original code
(HanxunH/AudioMosaic @67a86a8: `models/audiomosaic.py`, `configs/AudioMosaic/*.yaml`), its release scripts
(`scripts/test_hf_releases.py`, `scripts/add_preprocess_to_releases.py`) and the published results. Where the
original leaves something open (the weights' licence, the names of the two EnvSDD classes, the authors' first
names), the catalogue says so instead of guessing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, NamedTuple

OWNER = "hanxunh"
CODE_REPO = "HanxunH/AudioMosaic"
CODE_COMMIT = "67a86a8"
PAPER_TITLE = "Contrastive Masked Audio Representation Learning"
PAPER_AUTHORS = ("Huang", "Wang", "Ma", "Xie", "Leckie", "Erfani")  # surnames only: first names are not recorded
PAPER_VENUE = "International Conference on Machine Learning (ICML)"
PAPER_YEAR = 2026
ARXIV_ID = "2605.14231"

# Input presets: (frames, seconds covered, patch grid time x frequency, tokens incl. CLS, mean, std, original name).
INPUT_GEOMETRY: dict[str, dict[str, Any]] = {
    "audioset": {"frames": 1024, "seconds": 10.24, "grid": (64, 8), "tokens": 513, "mean": -4.2677393,
                 "std": 4.5689974, "original": "AUDIOSET"},
    "esc50": {"frames": 512, "seconds": 5.12, "grid": (32, 8), "tokens": 257, "mean": -6.6268077, "std": 5.358466,
              "original": "ESC"},
    "speechcommands": {"frames": 128, "seconds": 1.28, "grid": (8, 8), "tokens": 65, "mean": -6.845978,
                       "std": 5.5654526, "original": "SPC"},
}

# LTU normalises with CAV-MAE constants, (x + 5.081) / 4.4849, i.e. mean -5.081 and 2*std = 4.4849.
LTU_MEAN = -5.081
LTU_STD = 4.4849 / 2

# Number of EnvSDD samples the original keeps (first 64,600 samples at 16 kHz, about 4.04 s).
ENVSDD_MAX_SAMPLES = 64_600


class Metric(NamedTuple):
    """One reported number: ``(name, type, value, dataset)``; ``value`` in percent as published."""

    name: str
    type: str
    value: float
    dataset: str


# Evaluation sets named in `Metric.dataset` -> model-index `dataset` entries (type = a dataset id or plain name).
EVAL_DATASETS: dict[str, dict[str, str]] = {
    "AudioSet eval": {"type": "audioset", "split": "eval"},
    **{f"ESC-50 split {k}": {"type": "esc50", "split": f"split{k}"} for k in range(1, 6)},
    "Speech Commands v1 (11 classes)": {"type": "speech_commands", "config": "v0.01", "split": "test"},
    "Speech Commands v2 (35 classes)": {"type": "speech_commands", "config": "v0.02", "split": "test"},
    **{f"EnvSDD {track} test0{k}": {"type": "envsdd", "config": track.lower(), "split": f"test0{k}"}
       for track in ("ATA", "TTA") for k in range(1, 5)},
}


@dataclass(frozen=True)
class ReleaseInfo:
    """One released checkpoint of the ``hanxunh/audiomosaic`` collection and how it maps onto this package.

    Attributes:
        repo_id: ``"hanxunh/<name>"``.
        original_class: class name in the release's vendored ``modeling.py`` (``config.json["model_class"]``).
        target_class: the class of this package the converted weights load into.
        input_preset: ``"audioset"`` | ``"esc50"`` | ``"speechcommands"`` (config and feature-extractor preset).
        num_labels: outputs of the classification head (0 if none).
        label_set: a key of ``modeling_audiomosaic.labels.LABEL_FILES``, ``"envsdd"`` (no label file exists) or
            ``None``.
        classifier_head: ``AudioMosaicConfig.classifier_head`` (``"linear"``, ``"attentive"``) or ``None``.
        problem_type: ``AudioMosaicConfig.problem_type`` matching the original training loss, or ``None``.
        task: short description of what the checkpoint does.
        datasets: datasets used in pre-training / training (card metadata).
        metrics: reported results as published, empty when the release reports none.
        pipeline_tag: ``"audio-classification"`` or ``"feature-extraction"``.
        notes: release-specific remarks (rendered as bullets in the card).
        label_names: generic names when the label set has no file (EnvSDD), else empty.
        base_model: the checkpoint this one was initialised from, if any.
        use_final_norm: the encoder keeps timm's final LayerNorm (LTU audio encoder only).
    """

    repo_id: str
    original_class: str
    target_class: str
    input_preset: str
    num_labels: int
    label_set: str | None
    classifier_head: str | None
    problem_type: str | None
    task: str
    datasets: tuple[str, ...]
    metrics: tuple[Metric, ...]
    pipeline_tag: str
    notes: tuple[str, ...] = ()
    label_names: tuple[str, ...] = ()
    base_model: str | None = None
    use_final_norm: bool = False

    @property
    def name(self) -> str:
        """Repository name without the owner."""
        return self.repo_id.split("/", 1)[1]

    @property
    def is_classifier(self) -> bool:
        """Whether the release has a classification head."""
        return self.num_labels > 0

    @property
    def original_preprocessing(self) -> str:
        """The ``audio_preprocessing`` block the release's ``config.json`` names (AUDIOSET / ESC / SPC)."""
        return INPUT_GEOMETRY[self.input_preset]["original"]


_PRETRAINED = f"{OWNER}/AudioMosaic-vit-b16-pretrained"


def _release(name: str, **fields: Any) -> tuple[str, ReleaseInfo]:
    return name, ReleaseInfo(repo_id=f"{OWNER}/{name}", **fields)


def _spc_release(version: int, classes: int, description: str, accuracy: float, epochs: int,
                 eval_clips: str) -> tuple[str, ReleaseInfo]:
    return _release(
        f"AudioMosaic-vit-b16-finetune-spc{version}",
        original_class="AudioMosaicClassifier",
        target_class="AudioMosaicForAudioClassification",
        input_preset="speechcommands",
        num_labels=classes,
        label_set=f"speechcommands_v{version}",
        classifier_head="linear",
        problem_type="multi_label_classification",
        task=f"Keyword spotting, Speech Commands v{version} ({description})",
        datasets=("audioset", "speech_commands"),
        metrics=(Metric("Accuracy", "accuracy", accuracy, f"Speech Commands v{version} ({classes} classes)"),),
        pipeline_tag="audio-classification",
        base_model=_PRETRAINED,
        notes=(
            "Trained with BCE on one-hot targets (hence `problem_type=\"multi_label_classification\"` and sigmoid "
            "scores in the pipeline); the reported accuracy is the argmax accuracy. The eval manifest has "
            f"{eval_clips} clips.",
            f"Recipe: {epochs} epochs, batch 64, blr 1e-3, warmup 5, layer decay 0.75, token drop 0.2 / 0.2, mixup "
            "0.8, SpecAugment 48 / 48, additive noise + time roll.",
        ),
    )


def _esc_release(k: int, accuracy: float) -> tuple[str, ReleaseInfo]:
    return _release(
        f"AudioMosaic-vit-b16-finetune-esc-split{k}",
        original_class="AudioMosaicClassifier",
        target_class="AudioMosaicForAudioClassification",
        input_preset="esc50",
        num_labels=50,
        label_set="esc50",
        classifier_head="linear",
        problem_type="single_label_classification",
        task=f"Environmental sound classification, ESC-50 (50 classes), fine-tuned on split {k}",
        datasets=("audioset", "esc50"),
        metrics=(Metric("Accuracy", "accuracy", accuracy, f"ESC-50 split {k}"),),
        pipeline_tag="audio-classification",
        base_model=_PRETRAINED,
        notes=(
            "One of five ESC-50 fine-tunes (splits 1-5: 97.25 / 98.75 / 97.00 / 98.50 / 95.75 %, mean 97.45 %). "
            "Each is evaluated on its own split only; compare against the five-split mean.",
            "The split manifests (`esc_{train,eval}_data_k.json`) are external to the original repository, so which "
            f"fold is held out in split {k} is not recorded (the usual 5-fold protocol holds out fold {k}).",
            "Recipe: 60 epochs, batch 16, blr 5e-4, warmup 5, layer decay 0.75, token drop 0.2 / 0.2, SpecAugment "
            "freq 24 / time 96, roll + gain, cross-entropy.",
        ),
    )


def _envsdd_release(track: str, eers: tuple[float, float, float, float]) -> tuple[str, ReleaseInfo]:
    return _release(
        f"AudioMosaic-vit-b16-finetune-envsdd-{track.lower()}",
        original_class="AudioMosaicClassifier",
        target_class="AudioMosaicForAudioClassification",
        input_preset="audioset",
        num_labels=2,
        label_set="envsdd",
        label_names=("LABEL_0", "LABEL_1"),
        classifier_head="linear",
        problem_type="single_label_classification",
        task=f"Environmental sound deepfake detection (EnvSDD, {track} track), 2 classes",
        datasets=("audioset", "envsdd"),
        metrics=tuple(Metric("EER", "eer", eer, f"EnvSDD {track} test0{k}") for k, eer in enumerate(eers, 1)),
        pipeline_tag="audio-classification",
        base_model=_PRETRAINED,
        notes=(
            "The class names are not recorded (no EnvSDD label file in the original repository); the outputs are "
            "named `LABEL_0` / `LABEL_1`. The original scores EER and AUC with `softmax(logits)[:, 1]` as the "
            "positive class and trains with class weights [0.1, 0.9].",
            f"Only the first {ENVSDD_MAX_SAMPLES:,} samples (about 4.04 s at 16 kHz) of each clip were used; the "
            "fbank is then zero-padded to 1024 frames. Truncate the waveform the same way before feature extraction.",
            "The release is most likely the plain classifier (mean pooling + linear head), not the AASIST back-end "
            "variant of the original code (which was not released).",
            "Recipe: 20 epochs, batch 128, blr 1e-3, warmup 1, layer decay 0.75, no token drop, SpecAugment freq 48 "
            "/ time 192, cross-entropy; best epoch selected by test01 EER.",
            f"{track} is the track name used by the original configs (`finetune_envsdd_{track.lower()}`).",
        ),
    )


RELEASES: dict[str, ReleaseInfo] = dict(
    [
        _release(
            "AudioMosaic-vit-b16-pretrained",
            original_class="AudioMosaicPretrain",
            target_class="AudioMosaicForPreTraining",
            input_preset="audioset",
            num_labels=0,
            label_set=None,
            classifier_head=None,
            problem_type=None,
            task="Self-supervised audio encoder (masked-view NT-Xent on AudioSet-2M) with its contrastive projector",
            datasets=("audioset",),
            metrics=(),
            pipeline_tag="feature-extraction",
            notes=(
                "Pre-training: AudioSet-2M, 400 epochs, AdamW lr 6e-4 (absolute), wd 0.05, 1 warmup epoch + cosine, "
                "bf16, 512 clips per process (global batch probably 6144), NT-Xent temperature 0.1 with negatives "
                "gathered across processes; view 0 time-masked (0.6), view 1 frequency-masked (0.4), masked patches "
                "dropped before the encoder.",
                "The released code lays its masks out on a swapped (8, T/16) patch grid, so its 'time' view keeps 3 "
                "of 8 chunks of 8 consecutive time patches (193 tokens) and its 'freq' view 38 of 64 (time-phase, "
                "band) columns (305 tokens), not whole time steps / bands. This matters only for continued "
                "pre-training (`AudioMosaicConfig.mask_grid=\"original\"` reproduces it).",
                "The original output `f` is the pooled mean *before* `fc_norm`; here `pooler_output` is after "
                "`fc_norm` (the input of the projector and of the fine-tuned heads).",
            ),
        ),
        _release(
            "AudioMosaic-vit-b16-finetune-as20k",
            original_class="AudioMosaicClassifier",
            target_class="AudioMosaicForAudioClassification",
            input_preset="audioset",
            num_labels=527,
            label_set="audioset",
            classifier_head="linear",
            problem_type="multi_label_classification",
            task="AudioSet tagging (527 classes, multi-label), fine-tuned on AudioSet-20K (balanced, 20,699 clips)",
            datasets=("audioset",),
            metrics=(Metric("mAP", "map", 42.53, "AudioSet eval"),),
            pipeline_tag="audio-classification",
            base_model=_PRETRAINED,
            notes=(
                "Recipe: 60 epochs, batch 64, blr 5e-4, warmup 4, layer decay 0.65, token drop 0.2 / 0.2, mixup 0.8, "
                "SpecAugment freq 48 / time 192, roll + gain, BCE. Evaluated on the AudioSet eval set (19,012 clips).",
            ),
        ),
        _release(
            "AudioMosaic-vit-b16-finetune-as2m",
            original_class="AudioMosaicClassifier",
            target_class="AudioMosaicForAudioClassification",
            input_preset="audioset",
            num_labels=527,
            label_set="audioset",
            classifier_head="linear",
            problem_type="multi_label_classification",
            task="AudioSet tagging (527 classes, multi-label), fine-tuned on AudioSet-2M",
            datasets=("audioset",),
            metrics=(Metric("mAP", "map", 50.19, "AudioSet eval"),),
            pipeline_tag="audio-classification",
            base_model=_PRETRAINED,
            notes=(
                "Recipe: 100 epochs of 200,000 weighted samples each, batch 256, blr 2e-4, warmup 10, layer decay "
                "0.75, token drop 0.2 / 0.2, mixup 0.8, BCE.",
                "The shipped `finetune_as2m.yaml` names an unregistered model (`mst_classifier`) and the class-balance "
                "weights file is missing from the public snapshot, so this run cannot be reproduced from the public "
                "code as is.",
            ),
        ),
        _spc_release(1, 11, "10 words + `_unknown_`, 11 classes", 99.03, 100, "6,835"),
        _spc_release(2, 35, "35 classes", 98.34, 200, "11,005"),
        _esc_release(1, 97.25),
        _esc_release(2, 98.75),
        _esc_release(3, 97.00),
        _esc_release(4, 98.50),
        _esc_release(5, 95.75),
        _envsdd_release("ATA", (0.00, 0.00, 0.30, 0.30)),
        _envsdd_release("TTA", (0.00, 0.06, 0.37, 4.50)),
        _release(
            "AudioMosaic-vit-b16-linear-prob-as20k",
            original_class="AudioMosaicClassifier",
            target_class="AudioMosaicForAudioClassification",
            input_preset="audioset",
            num_labels=527,
            label_set="audioset",
            classifier_head="linear",
            problem_type="multi_label_classification",
            task="Linear probe (frozen encoder; `fc_norm` + linear head trained) for AudioSet tagging on AudioSet-20K",
            datasets=("audioset",),
            metrics=(Metric("mAP", "map", 29.40, "AudioSet eval"),),
            pipeline_tag="audio-classification",
            base_model=_PRETRAINED,
            notes=(
                "Only `fc_norm` and the head were trained; the encoder ran in eval mode (no token drop, no "
                "drop-path) while mixup / SpecAugment / roll stayed on. Recipe: 60 epochs, batch 16, blr 1e-3, "
                "warmup 4, BCE.",
            ),
        ),
        _release(
            "AudioMosaic-vit-b16-linear-prob-as20k-attentive",
            original_class="AudioMosaicAttentiveProbe",
            target_class="AudioMosaicForAudioClassification",
            input_preset="audioset",
            num_labels=527,
            label_set="audioset",
            classifier_head="attentive",
            problem_type="multi_label_classification",
            task="Attentive probe over the 12 block outputs (frozen encoder) for AudioSet tagging on AudioSet-20K",
            datasets=("audioset",),
            metrics=(Metric("mAP", "map", 33.55, "AudioSet eval"),),
            pipeline_tag="audio-classification",
            base_model=_PRETRAINED,
            notes=(
                "Head: a single learned query (1 head) attends over 13 per-layer vectors (mean over all tokens of "
                "each block output after its own LayerNorm; the last block counted twice), then `fc_norm` and a "
                "linear layer (`classifier_head=\"attentive\"`, `attentive_probe_heads=1`). Recipe: 60 epochs, batch "
                "64, blr 5e-4, warmup 4, BCE.",
            ),
        ),
        _release(
            "AudioMosaic-vit-b16-ltu-stage4",
            original_class="AudioMosaicLlamaForCausalLM",
            target_class="AudioMosaicModel",
            input_preset="audioset",
            num_labels=0,
            label_set=None,
            classifier_head=None,
            problem_type=None,
            task="Audio encoder of an LTU-style audio-language model (stage 4 of 4, OpenAQA-5.6M)",
            datasets=("audioset", "openaqa"),
            metrics=(),
            pipeline_tag="feature-extraction",
            base_model=_PRETRAINED,
            use_final_norm=True,
            notes=(
                "The release is a LLaMA-7B (Vicuna, LTU's `vicuna_ltu`) causal LM with the AudioMosaic encoder, a "
                "projector and LoRA adapters. Its `extra_weights.bin` holds 154 encoder tensors, 2 projector tensors "
                "(`audio_proj.1`: Linear 768 -> 4096) and 128 LoRA tensors (r 8, alpha 16 on `q_proj` / `v_proj`); "
                "the LLaMA weights (about 9.3 GB) are separate.",
                "The encoder keeps a final per-token LayerNorm (initialised from the pre-trained `fc_norm`), hence "
                "`use_final_norm=True`.",
                "LTU normalises features as `(x + 5.081) / 4.4849`, not with the AudioSet statistics its release "
                "config names.",
                "Training: 4 stages on OpenAQA (classification -> closed QA -> 5.6M mixed QA), global batch 256, bf16.",
            ),
        ),
    ]
)


# -- lookup --------------------------------------------------------------------------------------------------------

_HUB_CACHE_PREFIX = re.compile(r"^models--[^/]+?--", re.IGNORECASE)
_BY_LOWER_NAME = {name.lower(): name for name in RELEASES}


def _match_component(component: str) -> str | None:
    text = component.strip().lower()
    text = _HUB_CACHE_PREFIX.sub("", text)  # Hub cache folders: models--hanxunh--<name>
    return _BY_LOWER_NAME.get(text)


def release_for_path(path_or_name: str | PurePath) -> ReleaseInfo | None:
    """Recognise a release from a repo id, a bare name or a folder path; ``None`` if it names no release.

    Accepted: ``"hanxunh/<name>"``, ``"<name>"`` (case-insensitive), any path whose last component is ``<name>``
    (e.g. ``"downloads/AudioMosaic-vit-b16-finetune-esc-split3/"``) and Hub cache paths
    (``".../models--hanxunh--<name>/snapshots/<hash>"``).
    """
    text = str(path_or_name).strip().replace("\\", "/").rstrip("/")
    if not text:
        return None
    parts = [part for part in text.split("/") if part]
    if not parts:
        return None
    name = _match_component(parts[-1])
    if name is None and len(parts) >= 3 and parts[-2] == "snapshots":  # Hub cache snapshot folder
        name = _match_component(parts[-3])
    return RELEASES[name] if name else None


def training_loss(problem_type: str | None) -> str | None:
    """The original training loss behind a ``problem_type`` (``"BCE"`` or ``"cross-entropy"``), ``None`` if none."""
    return {"multi_label_classification": "BCE", "single_label_classification": "cross-entropy"}.get(
        problem_type or "")


def problem_type_for_head(num_labels: int) -> tuple[str | None, tuple[ReleaseInfo, ...]]:
    """How the released classifiers with a ``num_labels``-way head were trained.

    Returns ``(problem_type, releases)``: the ``problem_type`` shared by every released classifier of that width (BCE ->
    ``"multi_label_classification"``, cross-entropy -> ``"single_label_classification"``) and those releases; ``(None,
    releases)`` when no release has that width or the releases disagree. E.g. 11 -> multi-label (Speech Commands v1,
    trained with BCE on one-hot targets), 50 -> single-label (ESC-50, cross-entropy).
    """
    matches = tuple(info for info in RELEASES.values() if info.is_classifier and info.num_labels == num_labels)
    kinds = {info.problem_type for info in matches}
    return (kinds.pop() if len(kinds) == 1 else None), matches


__all__ = [
    "ARXIV_ID",
    "CODE_COMMIT",
    "CODE_REPO",
    "ENVSDD_MAX_SAMPLES",
    "EVAL_DATASETS",
    "INPUT_GEOMETRY",
    "LTU_MEAN",
    "LTU_STD",
    "Metric",
    "OWNER",
    "PAPER_AUTHORS",
    "PAPER_TITLE",
    "PAPER_VENUE",
    "PAPER_YEAR",
    "RELEASES",
    "ReleaseInfo",
    "problem_type_for_head",
    "release_for_path",
    "training_loss",
]
