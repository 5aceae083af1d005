"""Key mapping from the original AudioMosaic (timm-based) state dicts to the transformers-native classes.

The original classes subclass timm's ``VisionTransformer`` and use its key names (``blocks.{i}.attn.qkv.weight``, ...);
this module renames them. It is the building block of the release converter (``run_scripts/convert_original_checkpoint.py``).
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
]

STRIP_PREFIXES = ("_orig_mod.", "module.")


def strip_wrapper_prefixes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove ``_orig_mod.`` (torch.compile) and ``module.`` (DDP) prefixes, in any order and repetition."""
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
        state_dict: the original keys (``module.``/``_orig_mod.`` prefixes are stripped first).
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
