"""Key names of the original AudioMosaic checkpoints and their transformers-native names.

The original classes subclass timm's ``VisionTransformer`` and use its key names (``blocks.{i}.attn.qkv.weight``,
...). This module renames them (:func:`map_original_key`, :func:`convert_original_state_dict`), lists the exact key set
of each original class (:func:`expected_original_keys`), infers the class from the keys and splits the LTU release's
``extra_weights.bin`` into encoder, projector and LoRA keys. Planning a whole conversion (config, shapes,
preprocessing) is :mod:`modeling_audiomosaic.conversion_plan`; the entry point is
:func:`modeling_audiomosaic.convert_original_checkpoint.convert_original_checkpoint`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

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

# The LTU release's `extra_weights.bin` keys: the audio encoder and its projector carry these (after any prefix).
LTU_ENCODER_MARKER = "audio_encoder."
LTU_PROJECTOR_MARKER = "audio_proj."


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


def native_tensor(native_key: str, value: torch.Tensor) -> torch.Tensor:
    """An original tensor in the native module's shape: the original 0-dim ``logit_scale`` becomes the ``(1,)``
    ``learnable_temperature.logit_scale`` (FSDP2 cannot shard a 0-dim parameter); everything else as it is."""
    if native_key.endswith("learnable_temperature.logit_scale") and value.dim() == 0:
        return value.reshape(1)
    return value


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
            converted[new_key] = native_tensor(new_key, value)
    if unknown and strict:
        raise KeyError(f"{len(unknown)} key(s) of the original checkpoint have no mapping: {sorted(unknown)}")
    return converted


# ------------------------------------------------------------------------------------------------- key sets
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


def block_indices(keys: set[str]) -> list[int]:
    """Sorted indices `i` of the `blocks.{i}.*` keys."""
    return sorted({int(m.group(1)) for k in keys if (m := re.match(r"^blocks\.(\d+)\.", k))})


def expected_original_keys(
    original_class: str, depth: int, *, qkv_bias: bool = True, proj_bias: bool = True, final_norm: bool = False,
    fc_norm: bool = True, logit_scale: bool = False,
) -> list[str]:
    """The exact state-dict keys of an original class (as in the released ``model.safetensors`` files), e.g. 166 for
    ``AudioMosaicPretrain``."""
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


def check_key_sets(present: set[str], expected: list[str], original_class: str) -> None:
    """Raise a ``KeyError`` listing every missing and every unknown key."""
    missing = sorted(set(expected) - present)
    unknown = sorted(present - set(expected))
    if missing or unknown:
        raise KeyError(
            f"the checkpoint does not match {original_class}: {len(missing)} missing key(s) {missing}; "
            f"{len(unknown)} unknown key(s) {unknown}."
        )


__all__ = [
    "ENCODER_KEY_PATTERNS",
    "HEAD_KEY_PATTERNS",
    "LTU_ENCODER_MARKER",
    "LTU_PROJECTOR_MARKER",
    "STRIP_PREFIXES",
    "block_indices",
    "check_key_sets",
    "convert_original_state_dict",
    "expected_original_keys",
    "infer_original_class",
    "map_original_key",
    "split_ltu_state_dict",
    "strip_wrapper_prefixes",
]
