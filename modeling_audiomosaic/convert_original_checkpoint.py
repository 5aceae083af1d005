"""Convert the original AudioMosaic (timm-based) checkpoints into transformers-native AudioMosaic folders.

:func:`convert_original_checkpoint` turns a whole released folder or raw training checkpoint into a folder that loads
with ``AutoModel*.from_pretrained`` (by import, or with ``trust_remote_code=True`` from the copied code files), with
its feature-extractor settings and a model card. The work is split by concern:

* :mod:`modeling_audiomosaic.conversion_keys`: original key names -> native names (:func:`map_original_key`,
  :func:`convert_original_state_dict`), the exact key set of each original class;
* :mod:`modeling_audiomosaic.conversion_plan`: validation of a checkpoint against its release ``config.json`` and the
  native class, config and preprocessing (:func:`plan_conversion`; the class mapping is described there);
* this module: reading checkpoints, recognising the release (catalogue :mod:`modeling_audiomosaic.releases`), the
  summary, and writing the folder with the card of :mod:`modeling_audiomosaic.model_cards`.

The package ``__init__`` does not import this module (as transformers keeps its converters out of ``__init__``)::

    from modeling_audiomosaic.convert_original_checkpoint import convert_original_checkpoint

    summary = convert_original_checkpoint("orig", "converted")

Torch files are only ever read with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import model_cards, releases
from .conversion_keys import (
    convert_original_state_dict,
    expected_original_keys,
    infer_original_class,
    map_original_key,
    split_ltu_state_dict,
    strip_wrapper_prefixes,
)
from .conversion_plan import (
    LTU_CLASSES,
    MODEL_CLASS_ALIASES,
    ORIGINAL_CLASSES,
    ConversionPlan,
    build_meta_model,
    normalize_model_class,
    plan_conversion,
    read_size,
    resolve_problem_type,
)
from .releases import INPUT_GEOMETRY, ReleaseInfo

WEIGHT_FILES = ("model.safetensors", "extra_weights.bin", "model_state_dict.pt", "pytorch_model.bin")
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
STATE_DICT_ENTRIES = ("model", "state_dict", "model_state_dict")
LTU_PROJECTOR_NOTE = (
    "LTU audio projector (Linear 768 -> LLM hidden, applied after dividing the 32 pooled audio tokens by 50 and a "
    "LayerNorm without affine parameters). Not used by AudioMosaicModel: the audio-LLM connector consumes it."
)


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


# ------------------------------------------------------------------------------------------------- release
def lookup_release(release_name: str | None, src: Path) -> ReleaseInfo | None:
    """The catalogue entry named by `release_name` (else recognised from `src` or, for a file, its folder), or
    ``None``."""
    queries = [release_name] if release_name else [str(src)] + ([str(src.parent)] if src.is_file() else [])
    for query in queries:
        release = releases.release_for_path(query)
        if release is not None:
            return release
    return None


def release_mismatches(release: ReleaseInfo, plan: ConversionPlan) -> list[str]:
    """Where a recognised release's catalogue entry disagrees with the converted checkpoint (empty if consistent)."""
    found = {
        "original_class": plan.original_class.split(" ")[0],
        "target_class": plan.native_class,
        "classifier_head": plan.classifier_head,
        "num_labels": len(plan.config_kwargs.get("id2label") or {}),
        "frames": plan.preprocessing["max_length"],
        "pooling": plan.config_kwargs.get("pooling"),
    }
    expected = {
        "original_class": release.original_class,
        "target_class": release.target_class,
        "classifier_head": release.classifier_head,
        "num_labels": release.num_labels,
        "frames": INPUT_GEOMETRY[release.input_preset]["frames"],
        "pooling": "mean",  # every released model (and its card) pools the mean
    }
    return [f"{name}: release {expected[name]!r}, checkpoint {found[name]!r}" for name in found
            if expected[name] is not None and expected[name] != found[name]]


# ------------------------------------------------------------------------------------------------- conversion
def _print_mapping(mapping: list[tuple[str, str, tuple[int, ...]]], extra_files: Mapping[str, Mapping]) -> None:
    """Print one `original -> native  [shape]` line per tensor."""
    width = max((len(o) for o, _, _ in mapping), default=10)
    for original, native, shape in mapping:
        print(f"{original:<{width}} -> {native}  {list(shape)}")
    for name, tensors in extra_files.items():
        for key, value in tensors.items():
            print(f"{key:<{width}} -> {name}:{key}  {list(value.shape)}")


def _summary(src: Path, dst: str | Path | None, checkpoint: OriginalCheckpoint, plan: ConversionPlan,
             release: ReleaseInfo | None, dry_run: bool) -> dict[str, Any]:
    """The summary returned by :func:`convert_original_checkpoint` (``files`` is filled in after writing)."""
    summary: dict[str, Any] = {
        "source": str(src), "source_format": checkpoint.source_format, "weights_file": str(checkpoint.weights_file),
        "original_class": plan.original_class, "native_class": plan.native_class,
        "classifier_head": plan.classifier_head, "release": release.name if release is not None else None,
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
    return summary


def render_card(summary: Mapping[str, Any], extra_files: Mapping[str, Any] | None = None) -> str:
    """The model card of a converted folder: the release's card when `summary` names a recognised release, else the
    generic card; both from :mod:`modeling_audiomosaic.model_cards`, with the extra files described."""
    described = {name: LTU_PROJECTOR_NOTE for name in extra_files or {}}
    if summary.get("release"):
        return model_cards.render_model_card(summary["release"], extra_files=described)
    return model_cards.render_generic_model_card(summary, extra_files=described)


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
    release = lookup_release(release_name, src)
    if release is None and release_name:
        plan.notes.append(f"release {release_name!r} is not recognised: a generic model card is written.")
    elif release is not None:
        mismatches = release_mismatches(release, plan)
        if mismatches:
            plan.notes.append(f"the checkpoint does not match release {release.name!r} ({'; '.join(mismatches)}): a "
                              "generic model card is written.")
            release = None
        elif "problem_type" in plan.config_kwargs:  # the recognised release's own training loss
            problem_type, source = resolve_problem_type(len(plan.config_kwargs["id2label"]), release)
            plan.config_kwargs["problem_type"], plan.config_sources["problem_type"] = problem_type, source
    summary = _summary(src, dst, checkpoint, plan, release, dry_run)
    if dry_run:
        _print_mapping(plan.mapping, plan.extra_files)
        return summary
    if dst is None:
        raise ValueError("dst is required unless dry_run=True.")
    dst = Path(dst)
    if dst.exists() and any(dst.iterdir()) and not overwrite:
        raise FileExistsError(f"{dst} is not empty; pass overwrite=True (CLI --overwrite) to write into it.")
    dst.mkdir(parents=True, exist_ok=True)
    _write_native_folder(plan, dst, render_card(summary, plan.extra_files))
    summary["files"] = sorted(p.name for p in dst.iterdir())
    return summary


def format_conversion_summary(summary: Mapping[str, Any]) -> str:
    """A short human-readable report of a :func:`convert_original_checkpoint` summary (what the CLI prints): classes,
    key counts, preprocessing, labels, where each config value came from, the model card, notes and written files."""
    pre = summary["preprocessing"]
    lines = [
        f"source:        {summary['source']} ({summary['source_format']})",
        f"class:         {summary['original_class']} -> {summary['native_class']}"
        + (f" (classifier_head={summary['classifier_head']})" if summary.get("classifier_head") else ""),
        f"keys:          {summary['num_original_keys']} original -> {summary['num_native_keys']} native"
        + (f", {len(summary['skipped'])} skipped" if summary["skipped"] else ""),
        f"preprocessing: {pre['max_length']} frames, mean {pre['mean']}, std {pre['std']} ({pre['source']})",
    ]
    if summary.get("labels"):
        labels = summary["labels"]
        lines.append(f"labels:        {labels['num_labels']} ({labels['label_set'] or 'generic'}), "
                     f"{labels['problem_type']}")
    config, sources = summary.get("config", {}), summary.get("config_sources") or {}
    for index, (name, source) in enumerate(sources.items()):  # where each config value came from
        value = summary["labels"]["problem_type"] if name == "problem_type" else config.get(name)
        lines.append(f"{'config:' if index == 0 else '':<15}{name}={value!r} <- {source}")
    lines.append(f"model card:    {'release ' + summary['release'] if summary.get('release') else 'generic'}")
    lines += [f"note:          {note}" for note in summary["notes"]]
    if summary["dry_run"]:
        lines.append("dry run:       nothing written")
    else:
        lines.append(f"written to:    {summary['dst']}: {', '.join(summary['files'])}")
    return "\n".join(lines)


def _write_native_folder(plan: ConversionPlan, dst: Path, card: str) -> None:
    """Save model (+ code files and full auto_map), feature extractor, extra tensors and the model card."""
    from safetensors.torch import save_file

    from .feature_extraction.feature_extraction_audiomosaic import AudioMosaicFeatureExtractor

    model = build_meta_model(plan.native_class, plan.config_kwargs)
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


__all__ = [
    "LTU_CLASSES",
    "LTU_PROJECTOR_NOTE",
    "MODEL_CLASS_ALIASES",
    "ORIGINAL_CLASSES",
    "ConversionPlan",
    "OriginalCheckpoint",
    "convert_original_checkpoint",
    "convert_original_state_dict",
    "expected_original_keys",
    "format_conversion_summary",
    "infer_original_class",
    "load_original_checkpoint",
    "load_weights_file",
    "lookup_release",
    "map_original_key",
    "normalize_model_class",
    "plan_conversion",
    "read_size",
    "release_mismatches",
    "render_card",
    "resolve_problem_type",
    "split_ltu_state_dict",
    "strip_wrapper_prefixes",
    "unwrap_state_dict",
]
