"""Model cards (YAML front matter + Markdown) of AudioMosaic checkpoints: the one card renderer of the package.

Two kinds of card come from here:

* a released checkpoint's card, from its entry in the catalogue :mod:`modeling_audiomosaic.releases`
  (:func:`render_model_card`; ``run_scripts/make_model_cards.py`` writes the 15 cards of ``model_cards/`` and their
  index, :func:`render_index`);
* the card of a converted checkpoint that is not a recognised release (:func:`render_generic_model_card`, from the
  converter's summary).

The converter (:mod:`modeling_audiomosaic.convert_original_checkpoint`) writes one of them into every folder it
produces. Like the catalogue, this module imports only the standard library::

    from modeling_audiomosaic.model_cards import render_model_card

    text = render_model_card("AudioMosaic-vit-b16-finetune-esc-split3")
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from .releases import (
    ARXIV_ID,
    CODE_COMMIT,
    CODE_REPO,
    ENVSDD_MAX_SAMPLES,
    EVAL_DATASETS,
    INPUT_GEOMETRY,
    LTU_MEAN,
    LTU_STD,
    PAPER_AUTHORS,
    PAPER_TITLE,
    PAPER_VENUE,
    PAPER_YEAR,
    RELEASES,
    Metric,
    ReleaseInfo,
    release_for_path,
)

TASK_NAMES: dict[str, str] = {
    "audio-classification": "Audio Classification",
    "feature-extraction": "Feature Extraction",
}


_BEST_ON_TEST = (
    "The original evaluates every epoch on the test split and keeps the best epoch; the released weights and the "
    "reported number are therefore probably best-on-test (not stated), an optimistic protocol."
)
_LR_SCALING = (
    "The fine-tuning learning rate is `blr x batch x GPUs / 256` and the GPU count is not recorded, so the absolute "
    "learning rate of this run is unknown."
)

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
              "the Auto classes", "from modeling_audiomosaic.feature_extraction import AudioMosaicFeatureExtractor"]
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
        "`AudioMosaicFeatureExtractor` (package `modeling_audiomosaic.feature_extraction`) reproduces the training "
        "features:",
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
        "from modeling_audiomosaic.feature_extraction import AudioMosaicFeatureExtractor",
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
    """Minimal BibTeX: the paper's title, authors, venue, year and arXiv id (surnames only; no invented fields)."""
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


def _section_license(converted: bool, released: bool = True) -> list[str]:
    """The licence section; ``released=False`` for weights that are not one of the catalogued releases."""
    weights = ("The released weights carry no separately stated licence" if released else
               "The terms of these weights are not recorded (the original releases state none either)")
    lines = [
        "## Licence",
        "",
        f"The original code ({CODE_REPO} @{CODE_COMMIT}) is MIT-licensed. {weights}, hence `license: other` above; "
        "ask the authors before relying on a particular licence for the weights. The training data (AudioSet and "
        "the downstream datasets) have their own terms.",
    ]
    if converted:
        lines.append("")
        lines.append("This transformers port of the code is Apache-2.0; the conversion does not change the terms of "
                     "the weights.")
    return lines


def _section_extra_files(extra_files: Mapping[str, str]) -> list[str]:
    """Files the converter writes besides the model (e.g. the LTU audio projector), with what each holds."""
    return ["## Extra files", ""] + [f"- `{name}`: {description}" for name, description in extra_files.items()]


def _join(parts: list[list[str]]) -> str:
    """The card text: sections separated by one blank line, ending with a single newline."""
    return "\n\n".join("\n".join(part) for part in parts if part).rstrip() + "\n"


def _front_matter(meta: Mapping[str, Any]) -> list[str]:
    return ["---", *_yaml_lines(dict(meta)), "---"]


def render_model_card(name: str | PurePath, converted: bool = True,
                      extra_files: Mapping[str, str] | None = None) -> str:
    """Model card (YAML front matter + Markdown) of the release ``name``.

    Args:
        name: a release name (``RELEASES`` key), a repo id or a folder path (see [`release_for_path`]).
        converted: card for the transformers-native converted folder (default) or for the original-format release.
        extra_files: files written next to the converted model, ``{file name: what it holds}``; listed in an
            *Extra files* section after *Conversion* (the cards of ``model_cards/`` have none).

    Raises:
        KeyError: ``name`` is no release of the catalogue.
    """
    info = RELEASES.get(str(name)) or release_for_path(name)
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
    return _join([
        [*_front_matter(meta), "", f"# {info.name}", "", intro],
        _section_model(info),
        _section_usage(info, converted),
        _section_preprocessing(info),
        _section_conversion(info),
        _section_extra_files(extra_files) if extra_files else [],
        _section_notes(info),
        _section_results(info),
        _section_limitations(info),
        _section_license(converted),
        _section_citation(),
    ])


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


# -- cards of converted checkpoints that are not catalogued releases -------------------------------------------------

#: native class -> the Auto class that loads it
AUTO_CLASS_BY_NATIVE: dict[str, str] = {
    "AudioMosaicForAudioClassification": "AutoModelForAudioClassification",
    "AudioMosaicForPreTraining": "AutoModelForPreTraining",
    "AudioMosaicModel": "AutoModel",
}


def _generic_model_lines(summary: Mapping[str, Any]) -> list[str]:
    config, labels = summary["config"], summary.get("labels") or {}
    head = summary.get("classifier_head")
    pooling = "CLS-token pooling" if config.get("pooling") == "cls" else "mean pooling over all tokens including CLS"
    lines = [
        "## Model",
        "",
        f"- native class: `{summary['native_class']}`" + (f" (`classifier_head=\"{head}\"`)" if head else ""),
        f"- encoder: ViT, {config['num_hidden_layers']} blocks x {config['hidden_size']}, "
        f"{config['num_attention_heads']} heads, {config['patch_size']}x{config['patch_size']} patches, time-major "
        f"tokens, {pooling}" + (", final LayerNorm" if config.get("use_final_norm") else ""),
    ]
    if labels:
        source = f" ({labels['problem_type_source']})" if labels.get("problem_type_source") else ""
        lines.append(f"- labels: {labels['num_labels']} ({labels.get('label_set') or 'generic names'}), "
                     f"problem type `{labels['problem_type']}`{source}")
    return lines


def _generic_usage_lines(auto: str) -> list[str]:
    return [
        "## Usage",
        "",
        "```python",
        "import modeling_audiomosaic  # or pass trust_remote_code=True",
        f"from transformers import AutoFeatureExtractor, {auto}",
        "",
        "fe = AutoFeatureExtractor.from_pretrained(path)",
        f"model = {auto}.from_pretrained(path).eval()",
        "inputs = fe(waveform, sampling_rate=16000, return_tensors=\"pt\")",
        "outputs = model(**inputs)",
        "```",
    ]


def render_generic_model_card(summary: Mapping[str, Any], extra_files: Mapping[str, str] | None = None) -> str:
    """Model card of a converted checkpoint that is not a catalogued release: source, classes, preprocessing.

    Args:
        summary: the summary of :func:`modeling_audiomosaic.convert_original_checkpoint.convert_original_checkpoint`
            (``source``, ``source_format``, ``weights_file``, ``original_class``, ``native_class``,
            ``classifier_head``, ``config``, ``labels``, ``preprocessing``, ``notes``).
        extra_files: files written next to the model, ``{file name: what it holds}``.
    """
    native = summary["native_class"]
    pre = summary["preprocessing"]
    meta = {
        "license": "other",
        "license_name": "unspecified-weights-license",
        "library_name": "transformers",
        "pipeline_tag": "audio-classification" if summary.get("labels") else "feature-extraction",
        "tags": ["audio", "audiomosaic", "custom_code"],
    }
    weights_file = PurePath(summary["weights_file"]).name
    intro = (
        f"Converted with `modeling_audiomosaic.convert_original_checkpoint` from `{summary['source']}` "
        f"({summary['source_format'].replace('_', ' ')}, weights file `{weights_file}`). The weights are copied "
        "unchanged; only the parameter names differ from the original timm-based classes."
    )
    preprocessing = [
        "## Preprocessing",
        "",
        "16 kHz mono audio -> Kaldi log-mel filter bank (128 bins, 25 ms Hanning window, 10 ms hop) -> zero-pad or "
        f"crop to **{pre['max_length']} frames** -> `(x - mean) / (2 * std)` with mean {pre['mean']} and std "
        f"{pre['std']} ({pre['source']}). `preprocessor_config.json` holds these settings.",
    ]
    notes = summary.get("notes") or []
    return _join([
        [*_front_matter(meta), "", f"# AudioMosaic ({summary['original_class']} -> {native})", "", intro],
        _generic_model_lines(summary),
        preprocessing,
        _generic_usage_lines(AUTO_CLASS_BY_NATIVE.get(native, "AutoModel")),
        _section_extra_files(extra_files) if extra_files else [],
        ["## Conversion notes", ""] + [f"- {note}" for note in notes] if notes else [],
        _section_license(converted=True, released=False),
        _section_citation(),
    ])


__all__ = [
    "AUTO_CLASS_BY_NATIVE",
    "TASK_NAMES",
    "bibtex",
    "card_metadata",
    "headline_metric",
    "model_index",
    "render_generic_model_card",
    "render_index",
    "render_model_card",
]
