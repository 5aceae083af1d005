"""Convert the original AudioMosaic (timm-based) checkpoints into transformers-native AudioMosaic folders.

The original classes subclass timm's ``VisionTransformer`` and use its key names (``blocks.{i}.attn.qkv.weight``, ...);
the low-level helpers here rename them (:func:`map_original_key`, :func:`convert_original_state_dict`), and
:func:`convert_original_checkpoint` turns a whole released folder or raw training checkpoint into a folder that loads
with ``AutoModel*.from_pretrained`` (by import, or with ``trust_remote_code=True`` from the copied code files).

Class mapping (original -> native, see the reference §4 and §11):

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

Torch files are only ever read with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

# (original regex, replacement) applied in order; the encoder part gets the base-model prefix.
ENCODER_KEY_PATTERNS: list[tuple[str, str]] = [
    (r"^cls_token$", "embeddings.cls_token"),
    (r"^pos_embed$", "embeddings.position_embeddings"),
    (r"^patch_embed\.proj\.(weight|bias)$", r"embeddings.patch_embeddings.projection.\1"),
    (r"^patch_embed\.norm\.(weight|bias)$", r"embeddings.patch_embeddings.norm.\1"),
    (r"^norm_pre\.(weight|bias)$", r"embeddings.pre_layernorm.\1"),
    (r"^blocks\.(\d+)\.norm1\.(weight|bias)$", r"layers.\1.layernorm_before.\2"),
    (r"^blocks\.(\d+)\.attn\.qkv\.(weight|bias)$", r"layers.\1.attention.qkv.\2"),
    (r"^blocks\.(\d+)\.attn\.proj\.(weight|bias)$", r"layers.\1.attention.proj.\2"),
    (r"^blocks\.(\d+)\.norm2\.(weight|bias)$", r"layers.\1.layernorm_after.\2"),
    (r"^blocks\.(\d+)\.mlp\.fc([12])\.(weight|bias)$", r"layers.\1.mlp.fc\2.\3"),
    (r"^norm\.(weight|bias)$", r"layernorm.\1"),  # final norm: LTU audio encoder only
    (r"^fc_norm\.(weight|bias)$", r"pooler.fc_norm.\1"),
]

# Head keys (no base-model prefix).
HEAD_KEY_PATTERNS: list[tuple[str, str]] = [
    (r"^head\.(weight|bias)$", r"classifier.dense.\1"),
    (r"^layer_weights$", "layer_sum.layer_weights"),
    (r"^attn_query$", "attentive_pooling.attn_query"),
    (r"^attn_(key|value)\.weight$", r"attentive_pooling.attn_\1.weight"),
    (r"^layer_norms\.(\d+)\.(weight|bias)$", r"attentive_pooling.layer_norms.\1.\2"),
    # pre-training: SimCLR projector (Linear, BN, ReLU, Linear, BN without bias) and the optional learnable tau
    (r"^projector\.([0-9]+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$", r"projector.\1.\2"),
    (r"^logit_scale$", "learnable_temperature.logit_scale"),
]

# torch.compile, DDP and peft wrappers; stripped in any order and repetition.
STRIP_PREFIXES = ("_orig_mod.", "module.", "base_model.model.model.")

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

#: released label sets by head width; the EnvSDD heads (2) get generic names (the reference does not name them)
LABEL_SETS_BY_WIDTH = {527: "audioset", 50: "esc50", 11: "speechcommands_v1", 35: "speechcommands_v2"}
#: constructor defaults of the original classes for values a release ``config.json`` may leave out: the release
#: loader builds ``cls(**config)``, so a missing key takes these (reference §4.1: ``pooling='cls'`` in the
#: ``AudioMosaicPretrain`` / ``AudioMosaicClassifier`` signatures; §5.1: mask ratios 0.8 / 0.8; §4.3: dropout 0)
ORIGINAL_CLASS_DEFAULTS: dict[str, Any] = {
    "pooling": "cls", "mask_ratio_time": 0.8, "mask_ratio_freq": 0.8, "classifier_drop_out": 0.0,
}
#: what every original training config sets (reference §9.3, §5.1); used for raw checkpoints, which carry no config
RECIPE_VALUES: dict[str, Any] = {
    "pooling": "avg", "mask_ratio_time": 0.6, "mask_ratio_freq": 0.4, "drop_path_rate": 0.1, "classifier_drop_out": 0.0,
}
#: feature-extractor preset by input length (frames), used when the release has no `audio_preprocessing`
PRESET_BY_FRAMES = {1024: "audioset", 512: "esc50", 128: "speechcommands"}
#: LTU normalised its encoder input as (fbank + 5.081) / 4.4849 (reference §2.6) = (x - mean) / (2 std) with these
LTU_NORMALIZATION = {"mean": -5.081, "std": 4.4849 / 2}
WEIGHT_FILES = ("model.safetensors", "extra_weights.bin", "model_state_dict.pt", "pytorch_model.bin")
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
STATE_DICT_ENTRIES = ("model", "state_dict", "model_state_dict")
LTU_ENCODER_MARKER = "audio_encoder."
LTU_PROJECTOR_MARKER = "audio_proj."
LTU_PROJECTOR_FILE = "audio_projector.safetensors"
LTU_PROJECTOR_NOTE = (
    "LTU audio projector (Linear 768 -> LLM hidden, applied after dividing the 32 pooled audio tokens by 50 and a "
    "LayerNorm without affine parameters). Not used by AudioMosaicModel: the audio-LLM connector consumes it."
)


# ------------------------------------------------------------------------------------------------- key renaming
def strip_wrapper_prefixes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove ``_orig_mod.`` (torch.compile), ``module.`` (DDP) and ``base_model.model.model.`` (peft) prefixes, in
    any order and repetition."""
    out = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in STRIP_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        out[key] = value
    return out


def map_original_key(key: str, base_prefix: str = "audiomosaic.") -> str | None:
    """Return the transformers-native name of an original key, or ``None`` if it is not an encoder/head key."""
    for pattern, replacement in ENCODER_KEY_PATTERNS:
        if re.match(pattern, key):
            return base_prefix + re.sub(pattern, replacement, key)
    for pattern, replacement in HEAD_KEY_PATTERNS:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key)
    return None


def convert_original_state_dict(
    state_dict: Mapping[str, torch.Tensor], base_prefix: str = "audiomosaic.", strict: bool = True
) -> dict[str, torch.Tensor]:
    """Rename an original state dict to transformers-native keys.

    Args:
        state_dict: the original keys (``module.``/``_orig_mod.``/``base_model.model.model.`` prefixes are stripped
            first).
        base_prefix: ``"audiomosaic."`` for head models, ``""`` for a bare [`AudioMosaicModel`].
        strict: raise a ``KeyError`` listing every key that has no mapping (otherwise such keys are left out).
    """
    converted, unknown = {}, []
    for key, value in strip_wrapper_prefixes(state_dict).items():
        new_key = map_original_key(key, base_prefix)
        if new_key is None:
            unknown.append(key)
        else:
            converted[new_key] = value
    if unknown and strict:
        raise KeyError(f"{len(unknown)} key(s) of the original checkpoint have no mapping: {sorted(unknown)}")
    return converted


# ------------------------------------------------------------------------------------------------- loading
@dataclass
class OriginalCheckpoint:
    """An original checkpoint in memory: its tensors, the release config (if any) and where it came from."""

    state_dict: dict[str, torch.Tensor]
    release_config: dict[str, Any] | None
    source_format: str  # "release_folder" | "raw_checkpoint"
    weights_file: Path


def load_torch_file(path: str | Path) -> Any:
    """``torch.load`` a checkpoint on CPU with ``weights_only=True`` (never unpickles arbitrary objects)."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # the safe unpickler refuses custom objects (optimizer wrappers, configs, ...)
        raise ValueError(
            f"could not load {path} with torch.load(weights_only=True): {err}\nOnly tensors and plain containers are "
            "read; re-save the checkpoint's state dict alone (e.g. torch.save(ckpt['model'], 'model_state_dict.pt')) "
            "in a trusted environment."
        ) from err


def unwrap_state_dict(obj: Any, where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Return the flat ``{name: tensor}`` state dict of a loaded checkpoint.

    A dict holding a ``model`` / ``state_dict`` / ``model_state_dict`` entry (training checkpoints with epoch,
    optimizer, ...) is unwrapped, repeatedly; otherwise every value must be a tensor.
    """
    while isinstance(obj, Mapping) and not all(torch.is_tensor(v) for v in obj.values()):
        entry = next((name for name in STATE_DICT_ENTRIES if isinstance(obj.get(name), Mapping)), None)
        if entry is None:
            bad = sorted(str(k) for k, v in obj.items() if not torch.is_tensor(v))
            raise ValueError(
                f"{where} is not a state dict: non-tensor entries {bad} and no {'/'.join(STATE_DICT_ENTRIES)} entry."
            )
        obj = obj[entry]
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{where} does not contain a (non-empty) state dict, got {type(obj).__name__}.")
    return {str(k): v for k, v in obj.items()}


def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a ``.safetensors`` file, or a torch file (``.pt/.pth/.bin/.ckpt``) with ``weights_only=True``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    if path.suffix in TORCH_SUFFIXES:
        return unwrap_state_dict(load_torch_file(path), str(path))
    raise ValueError(f"unsupported checkpoint file {path}: expected .safetensors or one of {TORCH_SUFFIXES}.")


def load_original_checkpoint(src: str | Path) -> OriginalCheckpoint:
    """Read a released folder (``config.json`` with ``model_class`` + ``model.safetensors``, or the LTU folder's
    ``extra_weights.bin``) or a raw checkpoint file."""
    src = Path(src)
    if src.is_file():
        return OriginalCheckpoint(load_weights_file(src), None, "raw_checkpoint", src)
    if not src.is_dir():
        raise FileNotFoundError(f"{src} is neither a checkpoint file nor a folder.")
    release_config = None
    config_path = src / "config.json"
    if config_path.is_file():
        release_config = json.loads(config_path.read_text())
        if release_config.get("model_type") == "audiomosaic":
            raise ValueError(f"{src} is already a transformers-native AudioMosaic folder (model_type 'audiomosaic').")
    is_ltu = (release_config or {}).get("model_class") in LTU_CLASSES
    if is_ltu and not (src / "extra_weights.bin").is_file():
        raise FileNotFoundError(f"{src} is an LTU release but has no extra_weights.bin (the audio encoder's weights).")
    names = ("extra_weights.bin",) if is_ltu else WEIGHT_FILES
    weights = next((src / name for name in names if (src / name).is_file()), None)
    if weights is None:
        candidates = sorted(p for p in src.iterdir() if p.suffix in (".safetensors",) + TORCH_SUFFIXES)
        if len(candidates) != 1:
            raise FileNotFoundError(
                f"{src} has no {' / '.join(WEIGHT_FILES)} and {len(candidates)} other weight files "
                f"({[p.name for p in candidates]}); pass the weights file itself."
            )
        weights = candidates[0]
    return OriginalCheckpoint(
        load_weights_file(weights), release_config, "release_folder" if release_config else "raw_checkpoint", weights
    )


# ------------------------------------------------------------------------------------------------- planning
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


def split_ltu_state_dict(
    state_dict: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[str]]:
    """Split an LTU ``extra_weights.bin`` into encoder keys, audio-projector keys and skipped LoRA keys.

    Keys are matched by substring (``audio_encoder.`` / ``audio_proj.``), whatever wrapper prefix they carry. Any other
    key raises a ``KeyError`` listing them all.
    """
    encoder, projector, lora, unknown = {}, {}, [], []
    for key, value in state_dict.items():
        if LTU_ENCODER_MARKER in key:
            encoder[key[key.rindex(LTU_ENCODER_MARKER) + len(LTU_ENCODER_MARKER) :]] = value
        elif LTU_PROJECTOR_MARKER in key:
            projector[key[key.rindex(LTU_PROJECTOR_MARKER) :]] = value
        elif "lora_" in key:
            lora.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(
            f"{len(unknown)} key(s) of the LTU checkpoint are neither audio_encoder, audio_proj nor LoRA keys: "
            f"{sorted(unknown)}"
        )
    expected_projector = {"audio_proj.1.weight", "audio_proj.1.bias"}
    if set(projector) != expected_projector:
        raise KeyError(
            f"the LTU checkpoint's audio projector keys are {sorted(projector)}; expected {sorted(expected_projector)} "
            f"(missing: {sorted(expected_projector - set(projector))}, unknown: "
            f"{sorted(set(projector) - expected_projector)})."
        )
    return encoder, projector, sorted(lora)


def infer_original_class(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Guess the original class from the keys (projector -> pre-training, attn_query -> attentive probe,
    layer_weights -> weighted-sum probe, head -> classifier, final norm without head -> bare encoder)."""
    keys = set(state_dict)
    if any(k.startswith("projector.") for k in keys):
        return "AudioMosaicPretrain"
    if "attn_query" in keys:
        return "AudioMosaicAttentiveProbe"
    if "layer_weights" in keys:
        return "AudioMosaicWeightedSumProbe"
    if "head.weight" in keys:
        return "AudioMosaicClassifier"
    if "norm.weight" in keys:
        return "AudioMosaicTransformer"
    raise ValueError(
        "cannot infer the model class from the keys (no projector.*, attn_query, layer_weights, head.* or norm.* "
        "key); pass model_class."
    )


def _block_indices(keys: set[str]) -> list[int]:
    """Sorted indices `i` of the `blocks.{i}.*` keys."""
    return sorted({int(m.group(1)) for k in keys if (m := re.match(r"^blocks\.(\d+)\.", k))})


def expected_original_keys(
    original_class: str, depth: int, *, qkv_bias: bool = True, proj_bias: bool = True, final_norm: bool = False,
    fc_norm: bool = True, logit_scale: bool = False,
) -> list[str]:
    """The exact state-dict keys of an original class (reference §11.3-11.4), e.g. 166 for ``AudioMosaicPretrain``."""
    keys = ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "patch_embed.norm.weight",
            "patch_embed.norm.bias", "norm_pre.weight", "norm_pre.bias"]
    for i in range(depth):
        b = f"blocks.{i}."
        keys += [b + "norm1.weight", b + "norm1.bias", b + "attn.qkv.weight"]
        keys += [b + "attn.qkv.bias"] if qkv_bias else []
        keys += [b + "attn.proj.weight"] + ([b + "attn.proj.bias"] if proj_bias else [])
        keys += [b + "norm2.weight", b + "norm2.bias"]
        for fc in ("fc1", "fc2"):
            keys += [b + f"mlp.{fc}.weight"] + ([b + f"mlp.{fc}.bias"] if proj_bias else [])
    if final_norm:
        keys += ["norm.weight", "norm.bias"]
    if fc_norm:
        keys += ["fc_norm.weight", "fc_norm.bias"]
    if original_class == "AudioMosaicPretrain":
        bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
        keys += ["projector.0.weight"] + [f"projector.1.{n}" for n in bn]
        keys += ["projector.3.weight"] + [f"projector.4.{n}" for n in bn]
        keys += ["logit_scale"] if logit_scale else []
    elif original_class in ("AudioMosaicClassifier", "AudioMosaicLayerProbe", "AudioMosaicWeightedSumProbe",
                            "AudioMosaicAttentiveProbe"):
        keys += ["head.weight", "head.bias"]
        if original_class == "AudioMosaicWeightedSumProbe":
            keys += ["layer_weights"]
        if original_class == "AudioMosaicAttentiveProbe":
            keys += ["attn_query", "attn_key.weight", "attn_value.weight"]
            for i in range(depth + 1):
                keys += [f"layer_norms.{i}.weight", f"layer_norms.{i}.bias"]
    return keys


def _check_key_sets(present: set[str], expected: list[str], original_class: str) -> None:
    """Raise a ``KeyError`` listing every missing and every unknown key."""
    missing = sorted(set(expected) - present)
    unknown = sorted(present - set(expected))
    if missing or unknown:
        raise KeyError(
            f"the checkpoint does not match {original_class}: {len(missing)} missing key(s) {missing}; "
            f"{len(unknown)} unknown key(s) {unknown}."
        )


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


def resolve_problem_type(num_labels: int, release: Any = None) -> tuple[str, str]:
    """``problem_type`` of a converted ``num_labels``-way head and where it came from, from how it was trained.

    A recognised release gives its own training loss (the catalogue ``modeling_audiomosaic.releases`` records
    ``problem_type`` per release: BCE -> multi-label, cross-entropy -> single-label). Otherwise the catalogue's
    released heads of the same width decide (11 / 35: Speech Commands, BCE on one-hot targets -> multi-label; 50:
    ESC-50 and 2: EnvSDD, cross-entropy -> single-label; 527: AudioSet, BCE). A width no release has -> single-label.
    """
    name = _release_field(release, "name") if release is not None else None
    problem = _release_field(release, "problem_type") if release is not None else None
    try:
        from .releases import problem_type_for_head, training_loss
    except Exception:  # the catalogue is unavailable: the transformers default
        if problem:
            return problem, f"release {name!r}: recorded problem type"
        return "single_label_classification", ("default single-label: the release catalogue "
                                               "(modeling_audiomosaic.releases) is unavailable")
    if problem:
        return problem, f"release catalogue: {name} was trained with {training_loss(problem)}"
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
    from feature_extraction.feature_extraction_audiomosaic import FEATURE_EXTRACTOR_PRESETS

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
            "(fbank + 5.081) / 4.4849 (reference §2.6); the preprocessor uses mean -5.081, std 2.24245 so that "
            "(x - mean) / (2 std) reproduces it."
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
    release: Any = None,
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
            blocks = _block_indices(set(raw))
            expected = expected_original_keys(original_class, max(blocks) + 1 if blocks else 12,
                                              final_norm=original_class == "AudioMosaicTransformer",
                                              fc_norm=original_class != "AudioMosaicTransformer")
            _check_key_sets(set(raw), expected, original_class)
    keys = set(raw)
    has_config = release_config is not None and not is_ltu
    sources: dict[str, str] = {}  # native config value -> where it came from (reported in the summary)
    hidden = int(raw["cls_token"].shape[-1])
    kernel = tuple(int(n) for n in raw["patch_embed.proj.weight"].shape[-2:])
    if kernel[0] != kernel[1]:
        raise ValueError(f"patch_embed.proj.weight has a non-square {kernel[0]} x {kernel[1]} kernel: only square "
                         "patches have a native equivalent.")
    patch = kernel[0]
    depth = max(_block_indices(keys)) + 1
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
    _check_key_sets(keys, expected, original_class)

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
        native_state[new_key] = value.contiguous()
        mapping.append((key, new_key, tuple(value.shape)))
    _check_native_shapes(native_class, config_kwargs, native_state)
    preprocessing = _resolve_preprocessing(frames, num_mel_bins, audio_preprocessing, is_ltu, notes)
    return ConversionPlan(
        original_class="AudioMosaicLlamaForCausalLM (LTU audio encoder)" if is_ltu else original_class,
        native_class=native_class, classifier_head=head, config_kwargs=config_kwargs, mapping=mapping,
        state_dict=native_state, preprocessing=preprocessing, label_set=label_set, extra_files=extra_files,
        skipped=skipped, notes=notes, config_sources=sources,
    )


def _native_class(name: str) -> type:
    """The native class object named `name`."""
    from . import modeling_audiomosaic, modeling_pretraining

    return getattr(modeling_pretraining if name == "AudioMosaicForPreTraining" else modeling_audiomosaic, name)


def _build_meta_model(native_class: str, config_kwargs: Mapping[str, Any]) -> torch.nn.Module:
    """The native model on the meta device (no memory, no initialisation cost)."""
    from .configuration_audiomosaic import AudioMosaicConfig

    with torch.device("meta"):
        return _native_class(native_class)(AudioMosaicConfig(**config_kwargs))


def _check_native_shapes(
    native_class: str, config_kwargs: Mapping[str, Any], state: Mapping[str, torch.Tensor]
) -> None:
    """Raise a ``ValueError`` listing every key / shape on which `state` and the native module disagree."""
    expected = {k: tuple(v.shape) for k, v in _build_meta_model(native_class, config_kwargs).state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(f"{k}: {tuple(state[k].shape)} != {expected[k]}" for k in set(state) & set(expected)
                   if tuple(state[k].shape) != expected[k])
    if missing or unexpected or wrong:
        raise ValueError(
            f"the converted weights do not fit {native_class}: missing {missing}; unexpected {unexpected}; "
            f"shape mismatches {wrong}."
        )


# ------------------------------------------------------------------------------------------------- model card
def lookup_release(release_name: str | None, src: Path) -> Any:
    """The `modeling_audiomosaic.releases` entry named by `release_name` (else recognised from `src`), or ``None``
    (also when that module is unavailable)."""
    try:
        from . import releases
    except Exception:
        return None
    queries = [release_name] if release_name else [str(src)] + ([str(src.parent)] if src.is_file() else [])
    for query in queries:
        try:
            release = releases.release_for_path(query)
        except Exception:
            release = None
        if release is not None:
            return release
    return None


def _release_field(release: Any, name: str) -> Any:
    """A field of a release-table entry (dataclass or mapping)."""
    return release.get(name) if isinstance(release, Mapping) else getattr(release, name, None)


def release_mismatches(release: Any, plan: ConversionPlan) -> list[str]:
    """Where a recognised release's table entry disagrees with the converted checkpoint (empty if consistent)."""
    found = {
        "original_class": plan.original_class.split(" ")[0],
        "target_class": plan.native_class,
        "classifier_head": plan.classifier_head,
        "num_labels": len(plan.config_kwargs.get("id2label") or {}),
        "frames": plan.preprocessing["max_length"],
        "pooling": plan.config_kwargs.get("pooling"),
    }
    expected = {name: _release_field(release, name) for name in found}
    expected["pooling"] = expected["pooling"] or "mean"  # every released model (and its card) pools the mean
    preset = _release_field(release, "input_preset")
    try:
        from .releases import INPUT_GEOMETRY

        expected["frames"] = INPUT_GEOMETRY[preset]["frames"]
    except Exception:
        expected["frames"] = None
    return [f"{name}: release {expected[name]!r}, checkpoint {found[name]!r}" for name in found
            if expected[name] is not None and expected[name] != found[name]]


def release_model_card(release: Any) -> tuple[str | None, str | None]:
    """(release name, rendered card) via `releases.render_model_card`; (name, None) if rendering fails."""
    name = release if isinstance(release, str) else _release_field(release, "name")
    try:
        from .releases import render_model_card

        card = render_model_card(name)
    except Exception:
        return name, None
    return name, card if isinstance(card, str) and card.strip() else None


def _extra_files_section(extra_files: Mapping[str, Any]) -> str:
    """Model-card section describing the extra files (the LTU audio projector)."""
    lines = ["## Extra files", ""] + [f"- `{name}`: {LTU_PROJECTOR_NOTE}" for name in extra_files]
    return "\n".join(lines) + "\n"


def render_generic_model_card(summary: Mapping[str, Any]) -> str:
    """A model card for a converted checkpoint that is not a recognised release: source, classes, preprocessing."""
    native = summary["native_class"]
    pre = summary["preprocessing"]
    labels = summary.get("labels") or {}
    auto = {"AudioMosaicForPreTraining": "AutoModelForPreTraining", "AudioMosaicModel": "AutoModel"}.get(
        native, "AutoModelForAudioClassification")
    pipeline_tag = "audio-classification" if native == _CLASSIFIER_FAMILY else "feature-extraction"
    lines = [
        "---", "library_name: transformers", f"pipeline_tag: {pipeline_tag}", "tags:", "- audio", "- audiomosaic",
        "---", "", f"# AudioMosaic ({summary['original_class']} -> {native})", "",
        f"Converted with `modeling_audiomosaic.convert_original_checkpoint` from `{summary['source']}` "
        f"({summary['source_format'].replace('_', ' ')}, weights file `{Path(summary['weights_file']).name}`).",
        "The weights are copied unchanged; only the parameter names differ from the original timm-based classes.",
        "",
        "## Model", "",
        f"- native class: `{native}`" + (f" (`classifier_head=\"{summary['classifier_head']}\"`)"
                                        if summary.get("classifier_head") else ""),
        f"- encoder: ViT, {summary['config']['num_hidden_layers']} blocks x {summary['config']['hidden_size']}, "
        f"{summary['config']['num_attention_heads']} heads, {summary['config']['patch_size']}x"
        f"{summary['config']['patch_size']} patches, time-major tokens, "
        + ("CLS-token pooling" if summary["config"].get("pooling") == "cls" else
           "mean pooling over all tokens including CLS")
        + (", final LayerNorm" if summary["config"].get("use_final_norm") else ""),
    ]
    if labels:
        lines.append(f"- labels: {labels['num_labels']} ({labels.get('label_set') or 'generic names'}), "
                     f"problem type `{labels['problem_type']}`"
                     + (f" ({labels['problem_type_source']})" if labels.get("problem_type_source") else ""))
    lines += [
        "", "## Preprocessing", "",
        f"16 kHz mono audio -> Kaldi log-mel filter bank (128 bins, 25 ms Hanning window, 10 ms hop) -> zero-pad or "
        f"crop to **{pre['max_length']} frames** -> `(x - mean) / (2 * std)` with mean {pre['mean']} and std "
        f"{pre['std']} ({pre['source']}). `preprocessor_config.json` holds these settings.",
        "", "## Usage", "", "```python", "import modeling_audiomosaic  # or pass trust_remote_code=True",
        f"from transformers import AutoFeatureExtractor, {auto}", "",
        "fe = AutoFeatureExtractor.from_pretrained(path)", f"model = {auto}.from_pretrained(path).eval()",
        "inputs = fe(waveform, sampling_rate=16000, return_tensors=\"pt\")", "outputs = model(**inputs)", "```", "",
    ]
    if summary.get("extra_files"):
        lines += [_extra_files_section(summary["extra_files"])]
    if summary.get("notes"):
        lines += ["## Conversion notes", ""] + [f"- {note}" for note in summary["notes"]] + [""]
    lines += ["## Licence", "",
              "The original code is MIT-licensed; the original release does not state separate terms for the weights.",
              ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- conversion
def _print_mapping(mapping: list[tuple[str, str, tuple[int, ...]]], extra_files: Mapping[str, Mapping]) -> None:
    """Print one `original -> native  [shape]` line per tensor."""
    width = max((len(o) for o, _, _ in mapping), default=10)
    for original, native, shape in mapping:
        print(f"{original:<{width}} -> {native}  {list(shape)}")
    for name, tensors in extra_files.items():
        for key, value in tensors.items():
            print(f"{key:<{width}} -> {name}:{key}  {list(value.shape)}")


def convert_original_checkpoint(
    src: str | Path,
    dst: str | Path | None,
    *,
    model_class: str | None = None,
    dry_run: bool = False,
    release_name: str | None = None,
    probe_layer: int | None = None,
    drop_extra_heads: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Convert an original AudioMosaic checkpoint into a transformers-native folder.

    Args:
        src: a released folder (``config.json`` with ``model_class`` + kwargs + ``audio_preprocessing``, and
            ``model.safetensors``; the LTU folder's ``extra_weights.bin``) or a raw checkpoint file (``.safetensors``,
            or ``.pt/.pth/.bin`` read with ``torch.load(weights_only=True)``; ``model`` / ``state_dict`` /
            ``model_state_dict`` entries are unwrapped; ``module.``, ``_orig_mod.``, ``base_model.model.model.``
            prefixes are stripped).
        dst: output folder (may be ``None`` with ``dry_run``).
        model_class: original class (``AudioMosaicPretrain``, ``AudioMosaicClassifier``, ``AudioMosaicLayerProbe``,
            ``AudioMosaicWeightedSumProbe``, ``AudioMosaicAttentiveProbe``, ``AudioMosaicTransformer``,
            ``AudioMosaicLlamaForCausalLM``), a native class name or an alias; default: the release's, else inferred.
        dry_run: validate and print the key mapping (original -> native, shapes) without writing anything.
        release_name: name of the release (e.g. ``AudioMosaic-vit-b16-finetune-as20k``) for its model card; default:
            recognised from `src` when possible, else a generic card is written.
        probe_layer: block read by a layer probe when the release config does not give it.
        drop_extra_heads: leave out a pre-training checkpoint's ``logit_bias`` / ``online_classifier.*``.
        overwrite: allow writing into a non-empty `dst`.

    Returns:
        A summary: classes, native config, ``config_sources`` (where each config value came from: release config,
        original class default, checkpoint shapes, release catalogue, ...), key mapping (``[{"original", "native",
        "shape"}]``), skipped keys, preprocessing, labels (with ``problem_type_source``), written files and notes.

    Raises:
        KeyError: unknown or missing keys (all listed). ValueError: inconsistent or unsupported checkpoints.
    """
    src = Path(src)
    checkpoint = load_original_checkpoint(src)
    plan = plan_conversion(checkpoint.state_dict, checkpoint.release_config, model_class, probe_layer=probe_layer,
                           drop_extra_heads=drop_extra_heads)
    release, card = None, None
    entry = lookup_release(release_name, src)
    if entry is None and release_name:
        plan.notes.append(f"release {release_name!r} is not recognised: a generic model card is written.")
    elif entry is not None:
        mismatches = release_mismatches(entry, plan)
        release, card = release_model_card(entry)
        if mismatches:
            plan.notes.append(f"the checkpoint does not match release {release!r} ({'; '.join(mismatches)}): a "
                              "generic model card is written.")
            release, card = None, None
        else:
            if "problem_type" in plan.config_kwargs:  # the recognised release's own training loss
                problem_type, source = resolve_problem_type(len(plan.config_kwargs["id2label"]), entry)
                plan.config_kwargs["problem_type"], plan.config_sources["problem_type"] = problem_type, source
            if card is not None and plan.extra_files:
                card = card.rstrip("\n") + "\n\n" + _extra_files_section(plan.extra_files)
    summary: dict[str, Any] = {
        "source": str(src), "source_format": checkpoint.source_format, "weights_file": str(checkpoint.weights_file),
        "original_class": plan.original_class, "native_class": plan.native_class,
        "classifier_head": plan.classifier_head, "release": release,
        "num_original_keys": len(checkpoint.state_dict), "num_native_keys": len(plan.state_dict),
        "mapping": [{"original": o, "native": n, "shape": list(s)} for o, n, s in plan.mapping],
        "skipped": plan.skipped, "notes": plan.notes, "preprocessing": plan.preprocessing,
        "config": {k: v for k, v in plan.config_kwargs.items() if k not in ("id2label", "label2id")},
        "config_sources": dict(plan.config_sources),
        "labels": None, "extra_files": {name: sorted(t) for name, t in plan.extra_files.items()},
        "dst": str(dst) if dst is not None else None, "dry_run": dry_run, "files": [],
    }
    if "id2label" in plan.config_kwargs:
        summary["labels"] = {"num_labels": len(plan.config_kwargs["id2label"]), "label_set": plan.label_set,
                             "problem_type": plan.config_kwargs["problem_type"],
                             "problem_type_source": plan.config_sources.get("problem_type")}
    if dry_run:
        _print_mapping(plan.mapping, plan.extra_files)
        return summary
    if dst is None:
        raise ValueError("dst is required unless dry_run=True.")
    dst = Path(dst)
    if dst.exists() and any(dst.iterdir()) and not overwrite:
        raise FileExistsError(f"{dst} is not empty; pass overwrite=True (CLI --overwrite) to write into it.")
    dst.mkdir(parents=True, exist_ok=True)
    _write_native_folder(plan, dst, card or render_generic_model_card(summary))
    summary["files"] = sorted(p.name for p in dst.iterdir())
    return summary


def _write_native_folder(plan: ConversionPlan, dst: Path, card: str) -> None:
    """Save model (+ code files and full auto_map), feature extractor, extra tensors and the model card."""
    from safetensors.torch import save_file

    from feature_extraction.feature_extraction_audiomosaic import AudioMosaicFeatureExtractor

    model = _build_meta_model(plan.native_class, plan.config_kwargs)
    model.load_state_dict(plan.state_dict, strict=True, assign=True)
    model.eval()
    model.save_pretrained(dst)
    pre = plan.preprocessing
    settings = dict(feature_size=pre["num_mel_bins"], num_mel_bins=pre["num_mel_bins"],
                    sampling_rate=pre["sampling_rate"], max_length=pre["max_length"], mean=pre["mean"], std=pre["std"])
    if pre["preset"] is not None:
        fe = AudioMosaicFeatureExtractor.from_preset(pre["preset"], **settings)
    else:
        fe = AudioMosaicFeatureExtractor(**settings)
    fe.save_pretrained(dst)
    for name, tensors in plan.extra_files.items():
        save_file(dict(tensors), str(dst / name), metadata={"format": "pt", "note": LTU_PROJECTOR_NOTE})
    (dst / "README.md").write_text(card)
