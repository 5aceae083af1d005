"""Planning the conversion of an original AudioMosaic checkpoint: native class, config, key mapping, preprocessing.

:func:`plan_conversion` validates an original state dict (key names: :mod:`modeling_audiomosaic.conversion_keys`)
against its release ``config.json`` and works out everything needed to write a transformers-native folder, recording
where each config value came from. Writing the folder is
:func:`modeling_audiomosaic.convert_original_checkpoint.convert_original_checkpoint`.

Class mapping (original -> native):

* ``AudioMosaicPretrain`` -> [`AudioMosaicForPreTraining`]: ``projector.0/1/3/4`` with every BatchNorm buffer
  (``num_batches_tracked`` included); ``logit_scale`` -> ``learnable_temperature.logit_scale``; ``logit_bias`` and
  ``online_classifier.*`` have no native equivalent: a ``ValueError`` unless ``drop_extra_heads=True``, which leaves
  them out and lists them in the summary.
* ``AudioMosaicClassifier`` -> [`AudioMosaicForAudioClassification`] with ``classifier_head="linear"``.
* ``AudioMosaicLayerProbe`` -> the same with ``classifier_head="layer"`` and ``probe_layer`` (from the release's config
  kwargs or the ``probe_layer`` argument: its keys equal the classifier's, so it cannot be inferred from them).
* ``AudioMosaicWeightedSumProbe`` -> ``classifier_head="weighted_sum"`` (``layer_weights`` has ``depth + 1`` entries).
* ``AudioMosaicAttentiveProbe`` -> ``classifier_head="attentive"`` (number of heads from the ``attn_query`` shape).
* LTU (``AudioMosaicLlamaForCausalLM``): the ``audio_encoder.*`` keys of ``extra_weights.bin`` (an
  ``AudioMosaicTransformer`` with its final ``norm``) -> [`AudioMosaicModel`] with ``use_final_norm=True``;
  ``audio_proj.1.*`` -> ``audio_projector.safetensors`` for the audio-LLM connector; the LLM's LoRA keys are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from .conversion_keys import (
    LTU_ENCODER_MARKER,
    block_indices,
    check_key_sets,
    expected_original_keys,
    infer_original_class,
    map_original_key,
    native_tensor,
    split_ltu_state_dict,
    strip_wrapper_prefixes,
)
from .releases import INPUT_GEOMETRY, LTU_MEAN, LTU_STD, ReleaseInfo, problem_type_for_head, training_loss

# ------------------------------------------------------------------------------------------------- class tables
#: original class -> (native class, classifier_head or None)
ORIGINAL_CLASSES: dict[str, tuple[str, str | None]] = {
    "AudioMosaicPretrain": ("AudioMosaicForPreTraining", None),
    "AudioMosaicClassifier": ("AudioMosaicForAudioClassification", "linear"),
    "AudioMosaicLayerProbe": ("AudioMosaicForAudioClassification", "layer"),
    "AudioMosaicWeightedSumProbe": ("AudioMosaicForAudioClassification", "weighted_sum"),
    "AudioMosaicAttentiveProbe": ("AudioMosaicForAudioClassification", "attentive"),
    "AudioMosaicTransformer": ("AudioMosaicModel", None),  # bare encoder with final norm (LTU audio encoder)
}
#: `model_class` of the LTU release (its weights are `extra_weights.bin`); converted as `AudioMosaicTransformer`.
LTU_CLASSES = ("AudioMosaicLlamaForCausalLM", "LTULlamaForCausalLM")
UNSUPPORTED_CLASSES = {
    "AudioMosaicAASIST": "the EnvSDD AASIST back-end has no native implementation (and was not released)",
}
#: accepted spellings of `model_class` besides the original class names
MODEL_CLASS_ALIASES: dict[str, str] = {
    "AudioMosaicForPreTraining": "AudioMosaicPretrain",
    "AudioMosaicModel": "AudioMosaicTransformer",
    "pretrain": "AudioMosaicPretrain",
    "classifier": "AudioMosaicClassifier",
    "layer_probe": "AudioMosaicLayerProbe",
    "weighted_sum_probe": "AudioMosaicWeightedSumProbe",
    "attentive_probe": "AudioMosaicAttentiveProbe",
    "encoder": "AudioMosaicTransformer",
    "ltu": "AudioMosaicLlamaForCausalLM",
}
_CLASSIFIER_FAMILY = "AudioMosaicForAudioClassification"  # `model_class` value meaning "a classifier, head from keys"

#: released label sets by head width; the EnvSDD heads (2) get generic names (the original does not name them)
LABEL_SETS_BY_WIDTH = {527: "audioset", 50: "esc50", 11: "speechcommands_v1", 35: "speechcommands_v2"}
#: constructor defaults of the original classes for values a release ``config.json`` may leave out: the release
#: loader builds ``cls(**config)``, so a missing key takes these (original code, HanxunH/AudioMosaic @67a86a8:
#: ``pooling='cls'`` in the ``AudioMosaicPretrain`` / ``AudioMosaicClassifier`` signatures, mask ratios 0.8 / 0.8,
#: classifier dropout 0)
ORIGINAL_CLASS_DEFAULTS: dict[str, Any] = {
    "pooling": "cls", "mask_ratio_time": 0.8, "mask_ratio_freq": 0.8, "classifier_drop_out": 0.0,
}
#: what every original training config sets; used for raw checkpoints, which carry no config
RECIPE_VALUES: dict[str, Any] = {
    "pooling": "avg", "mask_ratio_time": 0.6, "mask_ratio_freq": 0.4, "drop_path_rate": 0.1, "classifier_drop_out": 0.0,
}
#: feature-extractor preset by input length (frames), used when the release has no `audio_preprocessing`
PRESET_BY_FRAMES: dict[int, str] = {geometry["frames"]: preset for preset, geometry in INPUT_GEOMETRY.items()}
#: LTU normalised its encoder input as (fbank + 5.081) / 4.4849 = (x - mean) / (2 std) with these
LTU_NORMALIZATION = {"mean": LTU_MEAN, "std": LTU_STD}
#: file of a converted LTU folder holding the audio projector (`audio_proj.1.*`)
LTU_PROJECTOR_FILE = "audio_projector.safetensors"


@dataclass
class ConversionPlan:
    """Everything needed to write a native folder (and what a dry run reports)."""

    original_class: str
    native_class: str
    classifier_head: str | None
    config_kwargs: dict[str, Any]
    mapping: list[tuple[str, str, tuple[int, ...]]]
    state_dict: dict[str, torch.Tensor]
    preprocessing: dict[str, Any]
    label_set: str | None = None
    extra_files: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: native config value -> where it came from (release config, original class default, checkpoint shapes, ...)
    config_sources: dict[str, str] = field(default_factory=dict)


def normalize_model_class(name: str) -> str:
    """Resolve an original / native / alias class name to an original class name (or the classifier family)."""
    if name in ORIGINAL_CLASSES or name in LTU_CLASSES or name == _CLASSIFIER_FAMILY:
        return name
    if name in UNSUPPORTED_CLASSES:
        raise ValueError(f"{name} cannot be converted: {UNSUPPORTED_CLASSES[name]}.")
    if name in MODEL_CLASS_ALIASES:
        return MODEL_CLASS_ALIASES[name]
    choices = sorted(ORIGINAL_CLASSES) + list(LTU_CLASSES) + sorted(MODEL_CLASS_ALIASES) + [_CLASSIFIER_FAMILY]
    raise ValueError(f"unknown model_class {name!r}; choose one of {choices}.")


def _release_kwarg(kwargs: Mapping[str, Any], *names: str) -> Any:
    """The first of `names` that the release's constructor kwargs set (not to ``None``), else ``None``."""
    return next((kwargs[n] for n in names if n in kwargs and kwargs[n] is not None), None)


def read_size(value: Any, name: str, *, square: bool = False) -> tuple[int, int]:
    """A size argument of the original classes (``spec_size``, ``patch_size``, ``patch_stride``) as a pair.

    An int ``n`` means ``(n, n)`` (timm's convention); a list / tuple of two positive ints is taken as is (the original
    authors write ``"patch_size": [16, 16]`` as well as ``16``). With ``square=True`` (patch sizes, strides) both
    entries must be equal.

    Raises:
        ValueError: anything else (a string, a float, a bool, a 3-tuple, a non-positive entry, a non-square patch).
    """
    items = list(value) if isinstance(value, (list, tuple)) else [value, value]
    if len(items) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in items):
        raise ValueError(
            f"{name}={value!r} is not a size: expected a positive int or a pair of two positive ints "
            f"(e.g. 16 or [16, 16]); fix the release config.json."
        )
    if square and items[0] != items[1]:
        raise ValueError(
            f"{name}={value!r} is not square: only square, non-overlapping patches are supported (the original "
            f"uses 16 x 16 with stride 16); fix the release config.json."
        )
    return int(items[0]), int(items[1])


def _default_value(name: str, has_config: bool, original_class: str, sources: dict[str, str]) -> Any:
    """A value the release config does not set: the original class default (with a config) or the training recipe's
    (raw checkpoint); records where it came from in `sources`."""
    if has_config and name in ORIGINAL_CLASS_DEFAULTS:
        value = ORIGINAL_CLASS_DEFAULTS[name]
        assumed = " (recorded for AudioMosaicPretrain / AudioMosaicClassifier; assumed the same for the probes)" if (
            name == "pooling" and "Probe" in original_class) else ""
        sources[name] = (f"original class default {value!r}: the release config has no {name!r} and the release "
                         f"loader builds {original_class}(**config){assumed}")
    elif has_config:  # no recorded class default: the recipes' value
        value = RECIPE_VALUES[name]
        sources[name] = (f"training recipe {value!r}: the release config has no {name!r} (the original class default "
                         "is not recorded)")
    else:
        value = RECIPE_VALUES[name]
        sources[name] = f"training recipe {value!r}: no release config (every original training config sets it)"
    return value


def resolve_problem_type(num_labels: int, release: ReleaseInfo | None = None) -> tuple[str, str]:
    """``problem_type`` of a converted ``num_labels``-way head and where it came from, from how it was trained.

    A recognised release gives its own training loss (the catalogue ``modeling_audiomosaic.releases`` records
    ``problem_type`` per release: BCE -> multi-label, cross-entropy -> single-label). Otherwise the catalogue's
    released heads of the same width decide (11 / 35: Speech Commands, BCE on one-hot targets -> multi-label; 50:
    ESC-50 and 2: EnvSDD, cross-entropy -> single-label; 527: AudioSet, BCE). A width no release has -> single-label.
    """
    if release is not None and release.problem_type:
        return release.problem_type, (f"release catalogue: {release.name} was trained with "
                                      f"{training_loss(release.problem_type)}")
    problem, matches = problem_type_for_head(num_labels)
    names = ", ".join(info.name for info in matches)
    if problem:
        return problem, (f"release catalogue: the released {num_labels}-way head(s) ({names}) were trained with "
                         f"{training_loss(problem)}")
    if matches:
        return "single_label_classification", (f"default single-label: the released {num_labels}-way heads ({names}) "
                                               "were trained with different losses; set config.problem_type")
    return "single_label_classification", (f"default single-label: no released head has {num_labels} outputs; set "
                                           "config.problem_type to multi_label_classification if trained with BCE")


def _resolve_preprocessing(frames: int, num_mel_bins: int, audio_preprocessing: Mapping[str, Any] | None,
                           is_ltu: bool, notes: list[str]) -> dict[str, Any]:
    """Feature-extractor settings: frames from the position table, mean/std from the release (else by frame count)."""
    from .feature_extraction.feature_extraction_audiomosaic import FEATURE_EXTRACTOR_PRESETS

    preset = PRESET_BY_FRAMES.get(frames)
    out: dict[str, Any] = {"max_length": frames, "num_mel_bins": num_mel_bins, "sampling_rate": 16000}
    if audio_preprocessing:
        target = audio_preprocessing.get("target_length")
        if target is not None and int(target) != frames:
            raise ValueError(
                f"audio_preprocessing.target_length={target} but the position table covers {frames} frames."
            )
        if float(audio_preprocessing.get("frame_shift", 10.0)) != 10.0:
            raise ValueError(f"only a 10 ms frame shift is supported, got {audio_preprocessing['frame_shift']}.")
        if int(audio_preprocessing.get("num_mel_bins", num_mel_bins)) != num_mel_bins:
            raise ValueError(
                f"audio_preprocessing.num_mel_bins={audio_preprocessing['num_mel_bins']} but the model has "
                f"{num_mel_bins} mel bins."
            )
        out["sampling_rate"] = int(audio_preprocessing.get("sample_rate", 16000))
    if is_ltu:
        out.update(LTU_NORMALIZATION, source="LTU normalisation (fbank + 5.081) / 4.4849")
        notes.append(
            "LTU: the release labels its audio_preprocessing AUDIOSET, but LTU trained and ran its encoder on "
            "(fbank + 5.081) / 4.4849 (LTU's own training code); the preprocessor uses mean -5.081, std 2.24245 so "
            "that (x - mean) / (2 std) reproduces it."
        )
    elif audio_preprocessing and "norm_mean" in audio_preprocessing and "norm_std" in audio_preprocessing:
        out.update(mean=float(audio_preprocessing["norm_mean"]), std=float(audio_preprocessing["norm_std"]),
                   source="release audio_preprocessing")
    elif preset is not None:
        values = FEATURE_EXTRACTOR_PRESETS[preset]
        out.update(mean=values["mean"], std=values["std"], source=f"{preset} preset (by frame count)")
    else:
        values = FEATURE_EXTRACTOR_PRESETS["audioset"]
        out.update(mean=values["mean"], std=values["std"], source="audioset statistics (unknown input length)")
        notes.append(f"no normalisation statistics are known for {frames} frames; the AudioSet ones are used.")
    out["preset"] = preset
    return out


def _resolve_labels(num_labels: int) -> tuple[dict[int, str], str | None]:
    """``id2label`` and the label-set name for a head of `num_labels` outputs."""
    from .labels import load_label_file

    label_set = LABEL_SETS_BY_WIDTH.get(num_labels)
    if label_set is not None:
        id2label = load_label_file(label_set)
        if len(id2label) != num_labels:  # pragma: no cover - guards the shipped files
            raise ValueError(f"label file {label_set} has {len(id2label)} entries for a {num_labels}-way head.")
    else:
        id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
    return id2label, label_set


def plan_conversion(
    state_dict: Mapping[str, torch.Tensor],
    release_config: Mapping[str, Any] | None = None,
    model_class: str | None = None,
    *,
    probe_layer: int | None = None,
    drop_extra_heads: bool = False,
    release: ReleaseInfo | None = None,
) -> ConversionPlan:
    """Validate an original state dict and work out the native class, config, key mapping and preprocessing.

    Architecture values come from the weights' shapes and keys where they can; the others from the release config.
    A value the release config leaves out takes the original class's constructor default (``pooling='cls'``, mask
    ratios 0.8 / 0.8), because the release loader builds ``cls(**config)``; without any release config (a raw training
    checkpoint) the value every original training config sets is used (``pooling: avg``, mask ratios 0.6 / 0.4).
    ``plan.config_sources`` records where each value came from. ``problem_type`` follows how the head was trained
    (see :func:`resolve_problem_type`).

    Args:
        state_dict: original keys (wrapper prefixes are stripped here).
        release_config: the release's ``config.json`` (``model_class`` + constructor kwargs + ``audio_preprocessing``).
            Sizes (``spec_size``, ``patch_size``, ``patch_stride``) may be an int or a pair (see :func:`read_size`).
        model_class: force the class (original, native or alias name); else the release's, else inferred from keys.
        probe_layer: block read by ``AudioMosaicLayerProbe`` when the release config does not say.
        drop_extra_heads: leave out ``logit_bias`` / ``online_classifier.*`` of a pre-training checkpoint (no native
            equivalent) instead of raising.
        release: the ``modeling_audiomosaic.releases`` entry of this checkpoint, if known: its recorded training loss
            sets ``problem_type`` (otherwise the catalogue's heads of the same width decide).

    Raises:
        KeyError: unknown or missing keys (all listed).
        ValueError: inconsistent shapes / config, unsupported classes.
    """
    kwargs = dict(release_config or {})
    audio_preprocessing = kwargs.pop("audio_preprocessing", None)
    release_class = kwargs.pop("model_class", None)
    notes: list[str] = []
    if model_class is not None:
        requested = normalize_model_class(model_class)
        if release_class and normalize_model_class(release_class) != requested:
            notes.append(f"model_class {model_class!r} overrides the release's {release_class!r}.")
    elif release_class is not None:
        requested = normalize_model_class(release_class)
    else:
        requested = None

    raw = strip_wrapper_prefixes(state_dict)
    extra_files: dict[str, dict[str, torch.Tensor]] = {}
    skipped: list[str] = []
    has_ltu_keys = any(LTU_ENCODER_MARKER in k for k in raw)
    is_ltu = requested in LTU_CLASSES or (requested in (None, "AudioMosaicTransformer") and has_ltu_keys)
    if is_ltu:
        raw, projector, lora = split_ltu_state_dict(raw)
        extra_files[LTU_PROJECTOR_FILE] = {k: v.contiguous() for k, v in projector.items()}
        skipped += lora
        if lora:
            notes.append(f"{len(lora)} LoRA key(s) of the LLM were skipped (not part of the audio encoder).")
        notes.append(f"audio_proj.1.* saved to {LTU_PROJECTOR_FILE} for the audio-LLM connector.")
        requested = "AudioMosaicTransformer"
        kwargs = {}  # the LTU config.json describes the LLM; the encoder's architecture comes from the shapes

    original_class = requested if requested not in (None, _CLASSIFIER_FAMILY) else infer_original_class(raw)
    if requested == _CLASSIFIER_FAMILY and ORIGINAL_CLASSES[original_class][0] != _CLASSIFIER_FAMILY:
        raise ValueError(f"model_class {_CLASSIFIER_FAMILY} given but the keys look like {original_class}.")
    native_class, head = ORIGINAL_CLASSES[original_class]

    # ---- pre-training extras without a native equivalent
    unsupported = sorted(k for k in raw if k == "logit_bias" or k.startswith("online_classifier."))
    if unsupported and original_class == "AudioMosaicPretrain":
        if not drop_extra_heads:
            raise ValueError(
                f"{unsupported} have no native equivalent: the SigLIP-style logit_bias is not implemented and the "
                "online classifier (a monitoring head on the detached pre-fc_norm features, trained on all-zero "
                "labels in the original) differs from the native supervised head. Pass drop_extra_heads=True "
                "(CLI --drop_extra_heads) to leave them out."
            )
        raw = {k: v for k, v in raw.items() if k not in unsupported}
        skipped += unsupported
        notes.append(f"dropped {unsupported} (no native equivalent; drop_extra_heads=True).")

    # ---- architecture from shapes (release kwargs must agree)
    for needed in ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight",
                   "blocks.0.mlp.fc1.weight"):
        if needed not in raw:  # list everything that is missing (depth from the blocks present, else 12)
            blocks = block_indices(set(raw))
            expected = expected_original_keys(original_class, max(blocks) + 1 if blocks else 12,
                                              final_norm=original_class == "AudioMosaicTransformer",
                                              fc_norm=original_class != "AudioMosaicTransformer")
            check_key_sets(set(raw), expected, original_class)
    keys = set(raw)
    has_config = release_config is not None and not is_ltu
    sources: dict[str, str] = {}  # native config value -> where it came from (reported in the summary)
    hidden = int(raw["cls_token"].shape[-1])
    kernel = tuple(int(n) for n in raw["patch_embed.proj.weight"].shape[-2:])
    if kernel[0] != kernel[1]:
        raise ValueError(f"patch_embed.proj.weight has a non-square {kernel[0]} x {kernel[1]} kernel: only square "
                         "patches have a native equivalent.")
    patch = kernel[0]
    depth = max(block_indices(keys)) + 1
    sources.update(hidden_size="checkpoint shapes (cls_token)", patch_size="checkpoint shapes (patch_embed.proj)")
    spec_value = _release_kwarg(kwargs, "spec_size", "img_size")
    spec_size = read_size(spec_value, "spec_size") if spec_value is not None else None
    if spec_size:
        num_mel_bins, sources["num_mel_bins"] = spec_size[1], f"release config (spec_size={spec_value!r})"
    elif audio_preprocessing and "num_mel_bins" in audio_preprocessing:
        num_mel_bins = int(audio_preprocessing["num_mel_bins"])
        sources["num_mel_bins"] = "release config (audio_preprocessing.num_mel_bins)"
    else:
        num_mel_bins, sources["num_mel_bins"] = 128, "default 128 (every original model uses 128 mel bins)"
    if num_mel_bins % patch:
        raise ValueError(f"{num_mel_bins} mel bins are not a multiple of the {patch}-wide patches.")
    freq_patches = num_mel_bins // patch
    num_tokens = int(raw["pos_embed"].shape[1])
    if (num_tokens - 1) % freq_patches:
        raise ValueError(f"pos_embed has {num_tokens} rows, not 1 + a multiple of {freq_patches} frequency patches.")
    frames = (num_tokens - 1) // freq_patches * patch
    sources["max_length"] = "checkpoint shapes (pos_embed rows)"
    patch_value = _release_kwarg(kwargs, "patch_size")
    checks = {
        "spec_size[0]": (spec_size[0] if spec_size else None, frames),
        "embed_dim": (_release_kwarg(kwargs, "embed_dim"), hidden),
        "patch_size": (read_size(patch_value, "patch_size", square=True)[0] if patch_value is not None else None,
                       patch),
    }
    for name, (given, found) in checks.items():
        if given is not None and int(given) != found:
            raise ValueError(f"the release config says {name}={given} but the checkpoint's shapes give {found}.")
    stride_value = _release_kwarg(kwargs, "patch_stride")
    if stride_value is not None and read_size(stride_value, "patch_stride", square=True)[0] != patch:
        notes.append(f"patch_stride={stride_value!r} ignored: the original ignores it too (swallowed by **kwargs) "
                     f"and always uses stride = patch size ({patch}).")
    release_depth = _release_kwarg(kwargs, "depth")
    if release_depth is not None:
        if int(release_depth) < depth:
            raise ValueError(f"the release config says depth={release_depth} but the checkpoint has {depth} blocks.")
        depth = int(release_depth)  # blocks missing from the checkpoint are reported (all keys) below
    sources["num_hidden_layers"] = ("release config (depth)" if release_depth is not None
                                    else "checkpoint keys (blocks.*)")
    num_heads = _release_kwarg(kwargs, "num_heads")
    if num_heads is None:
        num_heads = max(hidden // 64, 1)
        sources["num_attention_heads"] = f"assumed {num_heads} (head size 64; not stored in the weights)"
        notes.append(f"num_heads is not stored in the weights; assumed {num_heads} (head size 64).")
    else:
        sources["num_attention_heads"] = "release config (num_heads)"
    intermediate = int(raw["blocks.0.mlp.fc1.weight"].shape[0])
    qkv_bias = any(re.match(r"^blocks\.\d+\.attn\.qkv\.bias$", k) for k in keys)
    proj_bias = any(re.match(r"^blocks\.\d+\.(attn\.proj|mlp\.fc[12])\.bias$", k) for k in keys)
    final_norm = original_class == "AudioMosaicTransformer"
    fc_norm = original_class != "AudioMosaicTransformer"
    for name, value in (("qkv_bias", qkv_bias), ("proj_bias", proj_bias)):
        given = _release_kwarg(kwargs, name)
        if given is not None and bool(given) != value:
            raise ValueError(f"the release config says {name}={given} but the checkpoint's keys give {value}.")
        sources[name] = "checkpoint keys" + (" (the release config agrees)" if given is not None else "")
    sources["intermediate_size"] = "checkpoint shapes (mlp.fc1)"
    expected = expected_original_keys(
        original_class, depth, qkv_bias=qkv_bias, proj_bias=proj_bias, final_norm=final_norm, fc_norm=fc_norm,
        logit_scale="logit_scale" in keys,
    )
    check_key_sets(keys, expected, original_class)

    # ---- native config
    original_pooling = _release_kwarg(kwargs, "pooling")
    if is_ltu:
        original_pooling = "avg"
        sources["pooling"] = "LTU audio encoder: the original never pools it (LTU pools the tokens itself); mean"
    elif original_pooling is not None:
        sources["pooling"] = f"release config (pooling={original_pooling!r})"
    else:
        original_pooling = _default_value("pooling", has_config, original_class, sources)
        if has_config:
            notes.append(f"the release config has no 'pooling': the original class default {original_pooling!r} is "
                         "used (CLS token, not the mean every training config sets), as the release's own loader "
                         "would; check the source of this checkpoint.")
    pooling = {"avg": "mean", "mean": "mean", "cls": "cls"}.get(str(original_pooling))
    if pooling is None:
        raise ValueError(f"pooling={original_pooling!r} is not supported (only 'avg' and 'cls').")
    drop_path = _release_kwarg(kwargs, "drop_path_rate")
    if drop_path is not None:
        sources["drop_path_rate"] = "release config"
    elif final_norm:
        drop_path, sources["drop_path_rate"] = 0.0, "LTU recipe 0.0 (the encoder with a final norm is LTU's)"
    else:
        drop_path = _default_value("drop_path_rate", has_config, original_class, sources)
    config_kwargs: dict[str, Any] = dict(
        hidden_size=hidden, num_hidden_layers=depth, num_attention_heads=int(num_heads),
        intermediate_size=intermediate, max_length=frames, num_mel_bins=num_mel_bins, patch_size=patch,
        qkv_bias=qkv_bias, proj_bias=proj_bias, layer_norm_eps=1e-6, hidden_act="gelu",
        use_final_norm=final_norm, use_fc_norm=fc_norm, pooling=pooling, drop_path_rate=float(drop_path),
    )
    label_set = None
    if original_class == "AudioMosaicPretrain":
        config_kwargs.update(
            projection_hidden_size=int(raw["projector.0.weight"].shape[0]),
            projection_dim=int(raw["projector.3.weight"].shape[0]),
            learnable_temperature="logit_scale" in keys, objective="contrastive", mask_grid="original",
        )
        for name in ("mask_ratio_time", "mask_ratio_freq"):
            given = _release_kwarg(kwargs, name)
            if given is not None:
                sources[name] = "release config"
            else:
                given = _default_value(name, has_config, original_class, sources)
            config_kwargs[name] = float(given)
        notes.append('mask_grid="original": training-mode masks reproduce the released (swapped-grid) code.')
    elif native_class == _CLASSIFIER_FAMILY:
        if raw["head.weight"].shape[1] != hidden:
            raise ValueError(
                f"head.weight has shape {tuple(raw['head.weight'].shape)}: the 'fusion' pooling head (CLS + mean, "
                f"{2 * hidden} inputs) has no native equivalent."
            )
        num_labels = int(raw["head.weight"].shape[0])
        given = _release_kwarg(kwargs, "num_classes")
        if given is not None and int(given) != num_labels:
            raise ValueError(f"the release config says num_classes={given} but head.weight has {num_labels} rows.")
        id2label, label_set = _resolve_labels(num_labels)
        problem_type, sources["problem_type"] = resolve_problem_type(num_labels, release)
        dropout = _release_kwarg(kwargs, "classifier_drop_out", "classifier_dropout")
        if dropout is not None:
            sources["classifier_dropout"] = "release config"
        else:
            dropout = _default_value("classifier_drop_out", has_config, original_class, sources)
            sources["classifier_dropout"] = sources.pop("classifier_drop_out")
        config_kwargs.update(
            classifier_head=head, id2label=id2label, label2id={v: k for k, v in id2label.items()},
            problem_type=problem_type, classifier_dropout=float(dropout),
        )
        if label_set is None:
            notes.append(
                f"{num_labels}-way head: no released label file; generic names LABEL_0..LABEL_{num_labels - 1}."
            )
        if head == "layer":
            layer = probe_layer if probe_layer is not None else _release_kwarg(kwargs, "probe_layer")
            if layer is None:
                raise ValueError("AudioMosaicLayerProbe needs probe_layer (not in the release config): pass it.")
            config_kwargs["probe_layer"] = int(layer)
            sources["probe_layer"] = "probe_layer argument" if probe_layer is not None else "release config"
        if head == "weighted_sum" and raw["layer_weights"].shape != (depth + 1,):
            raise ValueError(f"layer_weights has shape {tuple(raw['layer_weights'].shape)}; expected ({depth + 1},).")
        if head == "attentive":
            heads = int(raw["attn_query"].shape[1])
            given = _release_kwarg(kwargs, "num_attn_heads")
            if given is not None and int(given) != heads:
                raise ValueError(f"the release config says num_attn_heads={given} but attn_query has {heads} heads.")
            config_kwargs["attentive_probe_heads"] = heads
            sources["attentive_probe_heads"] = "checkpoint shapes (attn_query)"
    if probe_layer is not None and head != "layer":
        notes.append(f"probe_layer={probe_layer} ignored ({original_class} is not a layer probe).")

    # ---- rename and check against the native module's keys and shapes
    base_prefix = "" if native_class == "AudioMosaicModel" else "audiomosaic."
    native_state, mapping = {}, []
    for key, value in raw.items():
        new_key = map_original_key(key, base_prefix)
        if new_key is None:  # pragma: no cover - the key-set check above rules this out
            raise KeyError(f"no mapping for {key!r}")
        native_state[new_key] = native_tensor(new_key, value).contiguous()
        mapping.append((key, new_key, tuple(value.shape)))
    _check_native_shapes(native_class, config_kwargs, native_state)
    preprocessing = _resolve_preprocessing(frames, num_mel_bins, audio_preprocessing, is_ltu, notes)
    return ConversionPlan(
        original_class="AudioMosaicLlamaForCausalLM (LTU audio encoder)" if is_ltu else original_class,
        native_class=native_class, classifier_head=head, config_kwargs=config_kwargs, mapping=mapping,
        state_dict=native_state, preprocessing=preprocessing, label_set=label_set, extra_files=extra_files,
        skipped=skipped, notes=notes, config_sources=sources,
    )


def native_class_object(name: str) -> type:
    """The native class object named `name`."""
    from . import modeling_audiomosaic, modeling_pretraining

    return getattr(modeling_pretraining if name == "AudioMosaicForPreTraining" else modeling_audiomosaic, name)


def build_meta_model(native_class: str, config_kwargs: Mapping[str, Any]) -> torch.nn.Module:
    """The native model on the meta device (no memory, no initialisation cost); the writer loads the weights into it
    with ``load_state_dict(..., assign=True)``."""
    from .configuration_audiomosaic import AudioMosaicConfig

    with torch.device("meta"):
        return native_class_object(native_class)(AudioMosaicConfig(**config_kwargs))


def _check_native_shapes(
    native_class: str, config_kwargs: Mapping[str, Any], state: Mapping[str, torch.Tensor]
) -> None:
    """Raise a ``ValueError`` listing every key / shape on which `state` and the native module disagree."""
    expected = {k: tuple(v.shape) for k, v in build_meta_model(native_class, config_kwargs).state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(f"{k}: {tuple(state[k].shape)} != {expected[k]}" for k in set(state) & set(expected)
                   if tuple(state[k].shape) != expected[k])
    if missing or unexpected or wrong:
        raise ValueError(
            f"the converted weights do not fit {native_class}: missing {missing}; unexpected {unexpected}; "
            f"shape mismatches {wrong}."
        )


__all__ = [
    "LABEL_SETS_BY_WIDTH",
    "LTU_CLASSES",
    "LTU_NORMALIZATION",
    "LTU_PROJECTOR_FILE",
    "MODEL_CLASS_ALIASES",
    "ORIGINAL_CLASSES",
    "ORIGINAL_CLASS_DEFAULTS",
    "PRESET_BY_FRAMES",
    "RECIPE_VALUES",
    "UNSUPPORTED_CLASSES",
    "ConversionPlan",
    "build_meta_model",
    "native_class_object",
    "normalize_model_class",
    "plan_conversion",
    "read_size",
    "resolve_problem_type",
]
