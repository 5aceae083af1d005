"""Catalogue of the 15 released AudioMosaic checkpoints and their model cards.

This module imports only the standard library, so it can be loaded without torch/transformers (e.g. by
``run_scripts/make_model_cards.py`` via ``importlib``)::

    from modeling_audiomosaic.releases import RELEASES, release_for_path, render_model_card

    info = release_for_path("downloads/AudioMosaic-vit-b16-finetune-esc-split3")
    info.target_class, info.input_preset, info.num_labels  # ('AudioMosaicForAudioClassification', 'esc50', 50)
    text = render_model_card(info.name)

Facts (classes, input sizes, label sets, reported numbers, recipes and quirks) come from the reference notes on the
original code (HanxunH/AudioMosaic @67a86a8) and its release scripts. Where the original leaves something open
(the weights' licence, the names of the two EnvSDD classes, the authors' first names), the cards say so instead of
guessing.
"""

from __future__ import annotations

import json
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

TASK_NAMES: dict[str, str] = {
    "audio-classification": "Audio Classification",
    "feature-extraction": "Feature Extraction",
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
        metrics: reported results (§10 of the reference), empty when the release reports none.
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
_BEST_ON_TEST = (
    "The original evaluates every epoch on the test split and keeps the best epoch; the released weights and the "
    "reported number are therefore probably best-on-test (not stated), an optimistic protocol."
)
_LR_SCALING = (
    "The fine-tuning learning rate is `blr x batch x GPUs / 256` and the GPU count is not recorded, so the absolute "
    "learning rate of this run is unknown."
)


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
            f"scores in the pipeline); the reported accuracy is the argmax accuracy. The eval manifest has {eval_clips} "
            "clips.",
            f"Recipe: {epochs} epochs, batch 64, blr 1e-3, warmup 5, layer decay 0.75, token drop 0.2 / 0.2, mixup 0.8, "
            "SpecAugment 48 / 48, additive noise + time roll.",
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


# -- model card rendering --------------------------------------------------------------------------------------------

_PLAIN_SCALAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
_YAML_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if _PLAIN_SCALAR.match(text) and text.lower() not in _YAML_RESERVED:
        return text
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid YAML double-quoted scalar


def _yaml_lines(value: Any, indent: int = 0) -> list[str]:
    """Block-style YAML for nested dicts / lists / scalars (enough for model-card metadata)."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:")
                lines.extend(_yaml_lines(item, indent + (0 if isinstance(item, list) else 2)))
            elif isinstance(item, (dict, list)):
                lines.append(f"{pad}{key}: {'{}' if isinstance(item, dict) else '[]'}")
            else:
                lines.append(f"{pad}{key}: {_yaml_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item:
                sub = _yaml_lines(item, indent + 2)
                lines.append(f"{pad}- {sub[0].lstrip()}")
                lines.extend(sub[1:])
            elif isinstance(item, list):
                raise TypeError("nested lists are not supported")
            else:
                lines.append(f"{pad}- {_yaml_scalar(item)}")
    else:
        lines.append(f"{pad}{_yaml_scalar(value)}")
    return lines


def model_index(info: ReleaseInfo) -> list[dict[str, Any]]:
    """The ``model-index`` metadata (one result per evaluation set) of a release."""
    results: list[dict[str, Any]] = []
    by_dataset: dict[str, list[Metric]] = {}
    for metric in info.metrics:
        by_dataset.setdefault(metric.dataset, []).append(metric)
    task_name = TASK_NAMES[info.pipeline_tag]
    if info.label_set == "envsdd":
        task_name = "Environmental Sound Deepfake Detection"
    for dataset, metrics in by_dataset.items():
        entry = {"type": EVAL_DATASETS[dataset]["type"], "name": dataset}
        for key in ("config", "split"):
            if key in EVAL_DATASETS[dataset]:
                entry[key] = EVAL_DATASETS[dataset][key]
        results.append(
            {
                "task": {"type": info.pipeline_tag, "name": task_name},
                "dataset": entry,
                "metrics": [{"type": m.type, "value": m.value, "name": m.name} for m in metrics],
            }
        )
    return [{"name": info.name, "results": results}]


def card_metadata(info: ReleaseInfo, converted: bool = True) -> dict[str, Any]:
    """Front-matter fields of the model card."""
    tags = ["audio", "audiomosaic", "audio-spectrogram-transformer", "vit", "self-supervised-learning"]
    if info.is_classifier:
        tags.append("audio-classification")
    if info.name.endswith("ltu-stage4"):
        tags += ["audio-language-model", "ltu"]
    if info.label_set == "envsdd":
        tags.append("deepfake-detection")
    if converted:
        tags.append("custom_code")
    meta: dict[str, Any] = {
        "license": "other",
        "license_name": "unspecified-weights-license",
        "library_name": "transformers" if converted else "pytorch",
        "pipeline_tag": info.pipeline_tag,
        "tags": tags,
        "datasets": list(info.datasets),
    }
    if info.base_model:
        meta["base_model"] = info.base_model
    meta["model-index"] = model_index(info)
    return meta


def _fmt(value: float) -> str:
    return f"{value:.2f}"


def headline_metric(info: ReleaseInfo) -> str:
    """One-line summary of the reported result (``"-"`` if none)."""
    if not info.metrics:
        return "-"
    if len(info.metrics) == 1:
        metric = info.metrics[0]
        unit = "" if metric.type == "map" else " %"
        return f"{metric.name} {_fmt(metric.value)}{unit} on {metric.dataset}"
    values = " / ".join(_fmt(m.value) for m in info.metrics)
    return f"{info.metrics[0].name} {values} % on {info.metrics[0].dataset.rsplit(' ', 1)[0]} test01-04"


def _labels_text(info: ReleaseInfo) -> str:
    if info.label_set is None:
        return "none (no classification head)"
    if info.label_set == "envsdd":
        return (f"{info.num_labels} outputs named {', '.join(f'`{n}`' for n in info.label_names)} - the original class "
                "names are not recorded; index 1 is the positive class of the original EER/AUC scoring")
    return f"{info.num_labels} classes, `modeling_audiomosaic.load_label_file(\"{info.label_set}\")`"


def _output_text(info: ReleaseInfo) -> str:
    if info.target_class == "AudioMosaicForPreTraining":
        return ("`z` (projector output, 128-d) of each view; `AutoModel` gives the encoder: `last_hidden_state` "
                "(513 x 768 tokens) and `pooler_output` = `fc_norm(mean of all tokens incl. CLS)` (768-d)")
    if info.target_class == "AudioMosaicModel":
        return "`last_hidden_state` (513 x 768 tokens, after the final LayerNorm)"
    return f"`logits` of shape `(batch, {info.num_labels})`"


def _section_model(info: ReleaseInfo) -> list[str]:
    geo = INPUT_GEOMETRY[info.input_preset]
    t, f = geo["grid"]
    cls_text = f"`{info.target_class}`"
    if info.classifier_head:
        cls_text += f" (`classifier_head=\"{info.classifier_head}\"`, `problem_type=\"{info.problem_type}\"`)"
    if info.use_final_norm:
        cls_text += " with `use_final_norm=True`"
    rows = [
        ("original release", f"`{info.repo_id}` (original class `{info.original_class}`)"),
        ("class in this package", cls_text),
        ("task", info.task),
        ("encoder", "ViT-B/16: 12 blocks, width 768, 12 heads, MLP 3072, 16 x 16 patches, LayerNorm eps 1e-6; "
                    + ("a final per-token LayerNorm, no pooling (about 86 M parameters)" if info.use_final_norm else
                       "mean over all tokens (CLS included) then `fc_norm` (about 86 M parameters)")),
        ("input", f"{geo['frames']} frames x 128 mel bins ({geo['seconds']} s at 16 kHz, 10 ms hop); "
                  f"{t} x {f} patches (time-major) + CLS = {geo['tokens']} tokens"),
        ("labels", _labels_text(info)),
        ("output", _output_text(info)),
    ]
    if info.base_model:
        rows.append(("initialised from", f"`{info.base_model}`"))
    lines = ["## Model", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in rows]
    return lines


def _fe_call(info: ReleaseInfo) -> str:
    if info.use_final_norm:
        return (f"AudioMosaicFeatureExtractor.from_preset(\"audioset\", mean={LTU_MEAN}, std={LTU_STD})"
                "  # LTU: (x + 5.081) / 4.4849")
    return f"AudioMosaicFeatureExtractor.from_preset(\"{info.input_preset}\")"


def _wave_line(info: ReleaseInfo) -> list[str]:
    seconds = {"audioset": 10, "esc50": 5, "speechcommands": 1}[info.input_preset]
    lines = [f"wave = np.random.randn(16000 * {seconds}).astype(\"float32\")  # 16 kHz mono, {seconds} s"]
    if info.label_set == "envsdd":
        lines.append(f"wave = wave[:{ENVSDD_MAX_SAMPLES}]  # EnvSDD models saw only the first {ENVSDD_MAX_SAMPLES:,} "
                     "samples")
    return lines


def _section_usage(info: ReleaseInfo, converted: bool) -> list[str]:
    lines = ["## Usage", ""]
    if converted:
        lines.append("`model_dir` is a folder written by the converter (see *Conversion*) or a Hub repository you "
                     "pushed it to.")
    else:
        lines.append("This repository holds the original format (vendored `modeling.py` + `model.safetensors`). "
                     "Convert it first (see *Conversion*); `model_dir` below is the converted folder.")
    lines += ["", "```python", "import numpy as np", "import modeling_audiomosaic  # registers \"audiomosaic\" with "
              "the Auto classes", "from feature_extraction import AudioMosaicFeatureExtractor"]
    if info.is_classifier:
        score = "sigmoid()" if info.problem_type == "multi_label_classification" else "softmax(-1)"
        lines += [
            "from transformers import AutoModelForAudioClassification, pipeline",
            "",
            "model_dir = \"converted\"",
            f"model = AutoModelForAudioClassification.from_pretrained(model_dir).eval()  # {info.target_class}",
            f"fe = {_fe_call(info)}",
            "",
            *_wave_line(info),
            "inputs = fe(wave, sampling_rate=16000, return_tensors=\"pt\")",
            f"scores = model(**inputs).logits.{score}  # (1, {info.num_labels})",
            "print(model.config.id2label[int(scores.argmax())])",
            "",
            "clf = pipeline(\"audio-classification\", model=model, feature_extractor=fe)",
            "print(clf(wave, top_k=5))",
            "```",
        ]
        auto = "AutoModelForAudioClassification"
    elif info.target_class == "AudioMosaicForPreTraining":
        lines += [
            "from transformers import AutoModel, AutoModelForPreTraining",
            "",
            "model_dir = \"converted\"",
            "# AudioMosaicModel (encoder + fc_norm); the load report lists the projector keys as unused, as expected",
            "encoder = AutoModel.from_pretrained(model_dir).eval()",
            f"fe = {_fe_call(info)}",
            "",
            *_wave_line(info),
            "inputs = fe(wave, sampling_rate=16000, return_tensors=\"pt\")",
            "out = encoder(**inputs)",
            "embedding = out.pooler_output  # (1, 768) = fc_norm(mean over all 513 tokens)",
            "tokens = out.last_hidden_state  # (1, 513, 768), CLS first, then patches in time-major order t*8 + f",
            "",
            "# the full pre-training model (encoder + projector + NT-Xent), e.g. to continue pre-training",
            "pretrainer = AutoModelForPreTraining.from_pretrained(model_dir)  # AudioMosaicForPreTraining",
            "```",
            "",
            "For clips of any length, `modeling_audiomosaic.embeddings.AudioMosaicEmbedder` averages model-sized "
            "windows; `modeling_audiomosaic.hear` wraps the encoder as a HEAR module. To fine-tune, load the folder "
            "with `AutoModelForAudioClassification.from_pretrained(model_dir, num_labels=...)` or use "
            "`run_scripts/run_audio_classification.py --model_name_or_path <model_dir>`.",
        ]
        auto = "AutoModel"
    else:  # LTU audio encoder
        lines.insert(lines.index("import numpy as np") + 1, "import torch")
        lines += [
            "from transformers import AutoModel",
            "",
            "model_dir = \"converted\"",
            "encoder = AutoModel.from_pretrained(model_dir).eval()  # AudioMosaicModel, use_final_norm=True",
            f"fe = {_fe_call(info)}",
            "",
            *_wave_line(info),
            "inputs = fe(wave, sampling_rate=16000, return_tensors=\"pt\")",
            "tokens = encoder(**inputs).last_hidden_state  # (1, 513, 768), after the final LayerNorm",
            "",
            "# LTU's 32 audio tokens, exactly as the original pools them (NOT a time sequence, see Limitations):",
            "x = tokens[:, 1:].reshape(1, 8, 64, 768).mean(1)  # (1, 64, 768)",
            "x = x.reshape(1, 32, 2, 768).mean(2) / 50  # pairwise average, then the 'hard norm' 1/50",
            "x = torch.nn.functional.layer_norm(x, (768,))  # audio_proj.0: LayerNorm without affine (eps 1e-5)",
            "# audio_proj.1 (Linear 768 -> 4096) maps x to the LLM width; its weights come from extra_weights.bin",
            "```",
        ]
        auto = "AutoModel"
    lines += [
        "",
        "Without this package installed, the converted folder carries its own code (`auto_map`):",
        "",
        "```python",
        f"from transformers import {auto}",
        f"model = {auto}.from_pretrained(model_dir, trust_remote_code=True)",
        "```",
    ]
    return lines


def _section_preprocessing(info: ReleaseInfo) -> list[str]:
    geo = INPUT_GEOMETRY[info.input_preset]
    fill = -geo["mean"] / (2 * geo["std"])
    lines = [
        "## Preprocessing",
        "",
        "`AudioMosaicFeatureExtractor` (package `feature_extraction`) reproduces the training features:",
        "",
        "1. 16 kHz mono (resample and average channels first; `resample=True` does it for you);",
        "2. Kaldi fbank: 128 mel bins, 25 ms Hann window (400 samples), 10 ms hop (160 samples), pre-emphasis 0.97, "
        "per-frame DC removal, no dither, no energy, `snip_edges` (a 10 s clip gives 998 frames);",
        f"3. zero-pad at the end (raw log-mel domain) or crop to **{geo['frames']} frames** "
        "(AudioSet / EnvSDD / probes / LTU 1024, ESC-50 512, Speech Commands 128);",
    ]
    if info.use_final_norm:
        lines.append(f"4. LTU normalisation `(x + 5.081) / 4.4849`, i.e. `from_preset(\"audioset\", mean={LTU_MEAN}, "
                     f"std={LTU_STD})`. The encoder's pre-training used the AudioSet statistics "
                     "`(x + 4.2677393) / (2 * 4.5689974)`; LTU retrained the encoder with its own constants.")
    else:
        lines.append(f"4. normalise **`(x - mean) / (2 * std)`** with the `{info.input_preset}` preset: mean "
                     f"{geo['mean']}, std {geo['std']}. Padded cells therefore hold {fill:.3f}, as in training.")
    if info.label_set == "envsdd":
        lines.append(f"5. EnvSDD: keep only the first {ENVSDD_MAX_SAMPLES:,} samples of the 16 kHz waveform before "
                     "step 2 (as in the usage example).")
    note = (
        "**Note on the release's own `preprocess()`.** The `modeling.py` / `load_model.py` shipped in the original "
        f"repositories (config block `audio_preprocessing: {geo['original']}`) normalise with `(x - mean) / std` - the "
        "factor 2 used in training is missing - and zero-pad clips shorter than one second (counted at the input "
        "sample rate) before resampling" + ("" if info.use_final_norm else ", which training never did") + ". "
    )
    if info.use_final_norm:
        ltu_fill = -LTU_MEAN / (2 * LTU_STD)
        note += (
            "For this LTU release that block even names the AudioSet statistics, so it computes "
            f"`(x + 4.2677393) / 4.5689974` (padded cells {2 * fill:.3f}) while LTU trained and ran with "
            f"`(x + 5.081) / 4.4849` (padded cells {ltu_fill:.3f}). Use the LTU constants as above."
        )
    else:
        note += (
            "Its features deviate from the mean twice as much as the model saw in training (padded cells at about "
            f"{2 * fill:.3f} instead of {fill:.3f}), so scores computed with it do not correspond to the reported "
            "results. `AudioMosaicFeatureExtractor` uses the training convention `(x - mean) / (2 * std)` and does "
            "not pad short clips to 1 s."
        )
    return lines + ["", note]


def _section_conversion(info: ReleaseInfo) -> list[str]:
    auto = "AutoModelForAudioClassification" if info.is_classifier else "AutoModel"
    lines = [
        "## Conversion",
        "",
        "With access to the Hub, download the original release, convert it and check that it loads:",
        "",
        "```bash",
        f"hf download {info.repo_id} --local-dir orig && "
        "python run_scripts/convert_original_checkpoint.py orig converted && "
        f"python -c \"import modeling_audiomosaic; from transformers import {auto}; "
        f"{auto}.from_pretrained('converted')\"",
        "```",
        "",
        "Publish the converted folder:",
        "",
        "```python",
        "import modeling_audiomosaic",
        "from feature_extraction import AudioMosaicFeatureExtractor",
        f"from transformers import {auto}",
        "",
        f"model = {auto}.from_pretrained(\"converted\")",
        f"model.push_to_hub(\"<your-namespace>/{info.name}-hf\")  # also uploads the modelling code (auto_map)",
        f"{_fe_call(info).split('  #')[0]}.push_to_hub(\"<your-namespace>/{info.name}-hf\")",
        "```",
    ]
    if info.use_final_norm:
        lines += [
            "",
            "For this LTU release the conversion covers the audio encoder (154 tensors -> `AudioMosaicModel` with "
            "`use_final_norm=True`) and the projector (`audio_proj.1`, Linear 768 -> 4096). The LLaMA/Vicuna-7B "
            "weights (about 9.3 GB) and the 128 LoRA tensors are separate and are not converted; the LLM side "
            "(prompting, LoRA, generation) is outside this package.",
        ]
    return lines


def _section_results(info: ReleaseInfo) -> list[str]:
    lines = ["## Reported results", ""]
    if not info.metrics:
        if info.use_final_norm:
            lines.append("None: the original repository reports no numbers for the LTU model.")
        else:
            lines.append("None for this checkpoint itself; it is the starting point of the fine-tuned and probed "
                         "releases (AudioSet-20K 42.53 mAP, AudioSet-2M 50.19 mAP, ESC-50 97.45 % mean over 5 "
                         "splits, Speech Commands v1 99.03 % / v2 98.34 %, AudioSet-20K linear probe 29.40 mAP, "
                         "attentive probe 33.55 mAP).")
        return lines
    lines += ["| dataset | metric | value |", "|---|---|---|"]
    for metric in info.metrics:
        unit = "" if metric.type == "map" else " %"
        lines.append(f"| {metric.dataset} | {metric.name} | {_fmt(metric.value)}{unit} |")
    lines += [
        "",
        "Numbers as published with the original weights and the original pipeline; they were not re-measured with "
        "the converted weights here (the conversion is checked for numerical parity of the forward pass instead).",
    ]
    return lines


def _section_notes(info: ReleaseInfo) -> list[str]:
    return ["## Training and release notes", ""] + [f"- {note}" for note in info.notes]


def _section_limitations(info: ReleaseInfo) -> list[str]:
    bullets = [
        "Pre-trained on AudioSet-2M (YouTube clips with weak, noisy, class-imbalanced labels); behaviour on audio far "
        "from that distribution (e.g. clinical, underwater, very long recordings) is untested.",
        f"Fixed input length: at most {INPUT_GEOMETRY[info.input_preset]['frames']} frames "
        f"({INPUT_GEOMETRY[info.input_preset]['seconds']} s); longer audio must be chunked (see "
        "`AudioMosaicEmbedder`).",
    ]
    if info.metrics:
        bullets.append(_BEST_ON_TEST)
        bullets.append(_LR_SCALING)
    if info.use_final_norm:
        bullets.append(
            "LTU's 32 audio tokens are built with pooling code written for a frequency-major token order; with "
            "AudioMosaic's time-major order each token averages 16 patches from time steps spread over the whole clip "
            "(token j: time patches t = j // 4 mod 8, all 8 chunks, 2 frequency groups), so the LLM receives no real "
            "temporal order. During LTU training the tokens were additionally permuted at random.")
        bullets.append(
            "The prompt template (`templates/alpaca_short.json`) and the captioning evaluation code are missing from "
            "the original repository.")
    return ["## Limitations", ""] + [f"- {b}" for b in bullets]


def bibtex() -> str:
    """Minimal BibTeX with the facts the reference records (surnames only; no invented fields)."""
    return "\n".join(
        [
            "@inproceedings{huang2026audiomosaic,",
            f"  title         = {{{PAPER_TITLE}}},",
            f"  author        = {{{' and '.join(PAPER_AUTHORS)}}},",
            f"  booktitle     = {{{PAPER_VENUE}}},",
            f"  year          = {{{PAPER_YEAR}}},",
            f"  eprint        = {{{ARXIV_ID}}},",
            "  archivePrefix = {arXiv}",
            "}",
        ]
    )


def _section_citation() -> list[str]:
    return [
        "## Citation",
        "",
        "```bibtex",
        bibtex(),
        "```",
        "",
        "Only the surnames of the authors are recorded here; take the full entry from the paper / the original "
        f"repository's `CITATION.cff` ({CODE_REPO}).",
    ]


def _section_license(converted: bool) -> list[str]:
    lines = [
        "## Licence",
        "",
        f"The original code ({CODE_REPO} @{CODE_COMMIT}) is MIT-licensed. The released weights carry no separately "
        "stated licence, hence `license: other` above; ask the authors before relying on a particular licence for "
        "the weights. The training data (AudioSet and the downstream datasets) have their own terms.",
    ]
    if converted:
        lines.append("")
        lines.append("This transformers port of the code is Apache-2.0; the conversion does not change the terms of "
                     "the weights.")
    return lines


def render_model_card(name: str, converted: bool = True) -> str:
    """Model card (YAML front matter + Markdown) of the release ``name``.

    Args:
        name: a release name (``RELEASES`` key), a repo id or a folder path (see [`release_for_path`]).
        converted: card for the transformers-native converted folder (default) or for the original-format release.
    """
    info = RELEASES.get(name) or release_for_path(name)
    if info is None:
        raise KeyError(f"Unknown release {name!r}; known: {sorted(RELEASES)}")
    meta = card_metadata(info, converted)
    intro = (
        f"AudioMosaic ViT-B/16 - {info.task}. AudioMosaic pre-trains an audio "
        "spectrogram transformer contrastively (NT-Xent) between a time-masked and a frequency-masked view of the "
        "same clip, with the masked patches dropped before the encoder "
        f"({', '.join(PAPER_AUTHORS)}, ICML {PAPER_YEAR}, arXiv {ARXIV_ID})."
    )
    if converted:
        intro += (f" This card describes the `{info.repo_id}` weights converted to the transformers-native "
                  f"`{info.target_class}` of the `modeling_audiomosaic` package.")
    else:
        intro += f" This card describes the original-format release `{info.repo_id}` (class `{info.original_class}`)."
    parts = [
        ["---", *_yaml_lines(meta), "---", "", f"# {info.name}", "", intro],
        _section_model(info),
        _section_usage(info, converted),
        _section_preprocessing(info),
        _section_conversion(info),
        _section_notes(info),
        _section_results(info),
        _section_limitations(info),
        _section_license(converted),
        _section_citation(),
    ]
    return "\n\n".join("\n".join(part) for part in parts).rstrip() + "\n"


def render_index() -> str:
    """``model_cards/README.md``: one table row per release."""
    lines = [
        "# Model cards of the released AudioMosaic checkpoints",
        "",
        "Generated by `python run_scripts/make_model_cards.py` from `modeling_audiomosaic/releases.py`; "
        "`--check` verifies that this folder is up to date. Each card describes the converted transformers-native "
        "model (`run_scripts/convert_original_checkpoint.py`).",
        "",
        "| release | original class | class here | task | headline result |",
        "|---|---|---|---|---|",
    ]
    for name, info in RELEASES.items():
        lines.append(f"| [{name}]({name}.md) | `{info.original_class}` | `{info.target_class}` | {info.task} | "
                     f"{headline_metric(info)} |")
    return "\n".join(lines) + "\n"


__all__ = [
    "EVAL_DATASETS",
    "INPUT_GEOMETRY",
    "Metric",
    "RELEASES",
    "ReleaseInfo",
    "bibtex",
    "card_metadata",
    "headline_metric",
    "model_index",
    "problem_type_for_head",
    "release_for_path",
    "render_index",
    "render_model_card",
    "training_loss",
]
