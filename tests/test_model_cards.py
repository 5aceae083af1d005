"""Release catalogue and model cards (`modeling_audiomosaic/releases.py`, `modeling_audiomosaic/model_cards.py`,
`run_scripts/make_model_cards.py`)."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import modeling_audiomosaic
from modeling_audiomosaic import CLASSIFIER_HEADS, INPUT_PRESETS, LABEL_FILES, load_label_file, releases
from modeling_audiomosaic.feature_extraction.feature_extraction_audiomosaic import FEATURE_EXTRACTOR_PRESETS
from modeling_audiomosaic.model_cards import render_generic_model_card, render_index, render_model_card
from modeling_audiomosaic.releases import EVAL_DATASETS, INPUT_GEOMETRY, RELEASES, ReleaseInfo, release_for_path

REPO_ROOT = Path(__file__).resolve().parents[1]
CARDS_DIR = REPO_ROOT / "model_cards"
SCRIPT = REPO_ROOT / "run_scripts" / "make_model_cards.py"
REFERENCE = Path("/work/shared/reference/audiomosaic.md")

# The hanxunh/audiomosaic collection on the Hugging Face Hub (14 encoder repos + 1 LTU repo).
EXPECTED_NAMES = {
    "AudioMosaic-vit-b16-pretrained",
    "AudioMosaic-vit-b16-finetune-as20k",
    "AudioMosaic-vit-b16-finetune-as2m",
    "AudioMosaic-vit-b16-finetune-spc1",
    "AudioMosaic-vit-b16-finetune-spc2",
    *(f"AudioMosaic-vit-b16-finetune-esc-split{k}" for k in range(1, 6)),
    "AudioMosaic-vit-b16-finetune-envsdd-ata",
    "AudioMosaic-vit-b16-finetune-envsdd-tta",
    "AudioMosaic-vit-b16-linear-prob-as20k",
    "AudioMosaic-vit-b16-linear-prob-as20k-attentive",
    "AudioMosaic-vit-b16-ltu-stage4",
}
EXPECTED_LABEL_COUNTS = {"audioset": 527, "esc50": 50, "speechcommands_v1": 11, "speechcommands_v2": 35}


def _load_script():
    spec = importlib.util.spec_from_file_location("make_model_cards_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _front_matter(text: str) -> dict:
    match = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    assert match, "card has no YAML front matter"
    return yaml.safe_load(match.group(1))


def _reference_names() -> set[str]:
    """Repo names of the release table in the maintainers' notes at `REFERENCE` (not part of the repository; the check
    is skipped without it), with `{1..5}` and `-ata`, `-tta` expanded."""
    section = REFERENCE.read_text(encoding="utf-8").split("### 11.1", 1)[1].split("###", 1)[0]
    names: set[str] = set()
    for cell in re.findall(r"^\| `(AudioMosaic-[^|]*?)\|", section, re.M):
        repos = re.findall(r"`([^`]+)`", "`" + cell)
        first = repos[0]
        if "{1..5}" in first:
            names.update(first.replace("{1..5}", str(k)) for k in range(1, 6))
            continue
        names.add(first)
        for suffix in repos[1:]:  # "`...-ata`, `-tta`"
            if suffix.startswith("-"):
                names.add(first.rsplit("-", 1)[0] + suffix)
    return names


# -- catalogue ---------------------------------------------------------------------------------------------------------


def test_fifteen_releases_named_as_in_reference():
    assert len(RELEASES) == 15
    assert set(RELEASES) == EXPECTED_NAMES
    for name, info in RELEASES.items():
        assert isinstance(info, ReleaseInfo)
        assert info.repo_id == f"hanxunh/{name}" and info.name == name
    if REFERENCE.is_file():
        assert _reference_names() == EXPECTED_NAMES


def test_release_fields_are_consistent_with_the_package():
    for name, info in RELEASES.items():
        assert hasattr(modeling_audiomosaic, info.target_class), name
        assert info.input_preset in INPUT_PRESETS and info.input_preset in FEATURE_EXTRACTOR_PRESETS
        geometry, preset = INPUT_GEOMETRY[info.input_preset], FEATURE_EXTRACTOR_PRESETS[info.input_preset]
        assert (geometry["frames"], geometry["mean"], geometry["std"]) == (
            preset["max_length"], preset["mean"], preset["std"]
        )
        assert info.pipeline_tag in ("audio-classification", "feature-extraction")
        if info.is_classifier:
            assert info.target_class == "AudioMosaicForAudioClassification"
            assert info.classifier_head in CLASSIFIER_HEADS
            assert info.problem_type in ("single_label_classification", "multi_label_classification")
            assert info.pipeline_tag == "audio-classification"
        else:
            assert info.classifier_head is None and info.label_set is None and not info.metrics
        for metric in info.metrics:
            assert metric.dataset in EVAL_DATASETS
    assert RELEASES["AudioMosaic-vit-b16-ltu-stage4"].target_class == "AudioMosaicModel"
    assert RELEASES["AudioMosaic-vit-b16-ltu-stage4"].use_final_norm
    assert RELEASES["AudioMosaic-vit-b16-pretrained"].target_class == "AudioMosaicForPreTraining"
    assert RELEASES["AudioMosaic-vit-b16-linear-prob-as20k-attentive"].classifier_head == "attentive"


def test_reported_numbers():
    values = {name: [m.value for m in info.metrics] for name, info in RELEASES.items()}
    assert values["AudioMosaic-vit-b16-finetune-as20k"] == [42.53]
    assert values["AudioMosaic-vit-b16-finetune-as2m"] == [50.19]
    assert values["AudioMosaic-vit-b16-linear-prob-as20k"] == [29.40]
    assert values["AudioMosaic-vit-b16-linear-prob-as20k-attentive"] == [33.55]
    assert values["AudioMosaic-vit-b16-finetune-spc1"] == [99.03]
    assert values["AudioMosaic-vit-b16-finetune-spc2"] == [98.34]
    esc = [values[f"AudioMosaic-vit-b16-finetune-esc-split{k}"][0] for k in range(1, 6)]
    assert esc == [97.25, 98.75, 97.00, 98.50, 95.75]
    assert values["AudioMosaic-vit-b16-finetune-envsdd-ata"] == [0.00, 0.00, 0.30, 0.30]
    assert values["AudioMosaic-vit-b16-finetune-envsdd-tta"] == [0.00, 0.06, 0.37, 4.50]
    assert values["AudioMosaic-vit-b16-pretrained"] == [] and values["AudioMosaic-vit-b16-ltu-stage4"] == []


def test_label_counts_match_label_files():
    seen = set()
    for name, info in RELEASES.items():
        if info.label_set in LABEL_FILES:
            assert len(load_label_file(info.label_set)) == info.num_labels == EXPECTED_LABEL_COUNTS[info.label_set]
            seen.add(info.label_set)
        elif info.label_set == "envsdd":
            assert info.num_labels == len(info.label_names) == 2
    assert seen == set(EXPECTED_LABEL_COUNTS)


def test_release_for_path():
    esc3 = RELEASES["AudioMosaic-vit-b16-finetune-esc-split3"]
    for query in (
        "AudioMosaic-vit-b16-finetune-esc-split3",
        "hanxunh/AudioMosaic-vit-b16-finetune-esc-split3",
        "/data/downloads/AudioMosaic-vit-b16-finetune-esc-split3/",
        Path("downloads") / "AudioMosaic-vit-b16-finetune-esc-split3",
        "audiomosaic-vit-b16-finetune-esc-split3",
        "cache/models--hanxunh--AudioMosaic-vit-b16-finetune-esc-split3",
        "cache/models--hanxunh--AudioMosaic-vit-b16-finetune-esc-split3/snapshots/0123abcd",
    ):
        assert release_for_path(query) is esc3, query
    assert release_for_path("hanxunh/AudioMosaic-vit-b16-linear-prob-as20k") is RELEASES[
        "AudioMosaic-vit-b16-linear-prob-as20k"
    ]
    assert release_for_path("x/AudioMosaic-vit-b16-linear-prob-as20k-attentive") is RELEASES[
        "AudioMosaic-vit-b16-linear-prob-as20k-attentive"
    ]
    for unknown in ("", "/", "converted", "hanxunh/AudioMosaic-vit-b16-finetune-esc-split6",
                    "AudioMosaic-vit-b16-finetune-esc-split3/checkpoint-100", "someone/other-audio-model"):
        assert release_for_path(unknown) is None, unknown


@pytest.mark.parametrize("module", ["releases.py", "model_cards.py"])
def test_catalogue_and_card_modules_are_stdlib_only(module):
    tree = ast.parse((REPO_ROOT / "modeling_audiomosaic" / module).read_text(encoding="utf-8"))
    modules = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names}
    modules |= {node.module.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert modules <= set(sys.stdlib_module_names), modules - set(sys.stdlib_module_names)
    relative = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level > 0}
    assert relative <= {"releases"}, relative  # the card renderer reads the catalogue, nothing else of the package


def test_catalogue_holds_no_rendering():
    """The catalogue is data and lookup only; every card (release or generic) comes from `model_cards`."""
    rendering = [name for name in vars(releases) if "render" in name or name in ("bibtex", "card_metadata")]
    assert rendering == []


# -- cards -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_card_front_matter_and_model_index(name):
    info = RELEASES[name]
    text = (CARDS_DIR / f"{name}.md").read_text(encoding="utf-8")
    meta = _front_matter(text)
    for key in ("license", "library_name", "pipeline_tag", "tags", "datasets", "model-index"):
        assert meta.get(key), key
    assert meta["license"] == "other" and meta["license_name"]
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == info.pipeline_tag
    assert "audiomosaic" in meta["tags"]
    assert meta["datasets"] == list(info.datasets)
    assert meta.get("base_model") == info.base_model
    (entry,) = meta["model-index"]
    assert entry["name"] == name
    got = [
        (m["name"], m["type"], m["value"], result["dataset"]["name"])
        for result in entry["results"]
        for m in result["metrics"]
    ]
    assert got == [tuple(metric) for metric in info.metrics]
    for result in entry["results"]:
        assert result["task"]["type"] == info.pipeline_tag
        assert result["dataset"]["type"] == EVAL_DATASETS[result["dataset"]["name"]]["type"]
    # the sections the brief asks for
    for heading in ("## Model", "## Usage", "## Preprocessing", "## Conversion", "## Reported results",
                    "## Limitations", "## Citation"):
        assert f"\n{heading}\n" in text, heading
    assert "`(x - mean) / std`" in text  # the release preprocess() bug is explained
    assert ("(x + 5.081) / 4.4849" if info.use_final_norm else "(x - mean) / (2 * std)") in text
    assert f"hf download {info.repo_id} --local-dir orig" in text
    assert "trust_remote_code=True" in text and "push_to_hub" in text
    assert "@inproceedings{" in text and "2605.14231" in text
    for metric in info.metrics:
        assert f"| {metric.dataset} | {metric.name} | {metric.value:.2f}" in text


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_card_usage_names_existing_classes(name):
    info = RELEASES[name]
    text = render_model_card(name)
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks
    for block in blocks:
        compile(block, f"<{name} usage>", "exec")
    usage = blocks[0]
    assert info.target_class in usage
    assert "import modeling_audiomosaic" in usage
    for class_name in set(re.findall(r"\bAudioMosaic\w+", usage)):
        exists = hasattr(modeling_audiomosaic, class_name) or class_name == "AudioMosaicFeatureExtractor"
        assert exists, class_name
    if info.is_classifier:
        assert "AutoModelForAudioClassification" in usage and 'pipeline("audio-classification"' in usage
        assert f'from_preset("{info.input_preset}")' in usage
    else:
        assert "AutoModel.from_pretrained" in usage


def test_special_cards():
    ltu = render_model_card("AudioMosaic-vit-b16-ltu-stage4")
    assert "(x + 5.081) / 4.4849" in ltu and "LLaMA" in ltu and "use_final_norm=True" in ltu
    envsdd = render_model_card("hanxunh/AudioMosaic-vit-b16-finetune-envsdd-tta")
    assert "LABEL_0" in envsdd and "not recorded" in envsdd and "wave[:64600]" in envsdd
    assert "best-on-test" in render_model_card("AudioMosaic-vit-b16-finetune-as20k")
    original = render_model_card("AudioMosaic-vit-b16-finetune-as20k", converted=False)
    assert _front_matter(original)["library_name"] == "pytorch" and "original format" in original
    with pytest.raises(KeyError):
        render_model_card("AudioMosaic-vit-b16-finetune-as2k")


def test_extra_files_section_follows_conversion():
    """The converter lists its extra files (the LTU projector) in the release card, right after *Conversion*."""
    name = "AudioMosaic-vit-b16-ltu-stage4"
    plain = render_model_card(name)
    text = render_model_card(name, extra_files={"audio_projector.safetensors": "the LTU audio projector"})
    assert "## Extra files" not in plain
    section = ("## Extra files\n\n- `audio_projector.safetensors`: the LTU audio projector\n\n"
               "## Training and release notes")
    assert section in text and text.index("## Conversion") < text.index("## Extra files")
    assert text.replace(section, "## Training and release notes") == plain  # nothing else changes


def test_generic_card_shares_front_matter_licence_and_citation():
    summary = {
        "source": "runs/ckpt.pt", "source_format": "raw_checkpoint", "weights_file": "runs/ckpt.pt",
        "original_class": "AudioMosaicClassifier", "native_class": "AudioMosaicForAudioClassification",
        "classifier_head": "linear", "preprocessing": {"max_length": 512, "mean": -6.6268077, "std": 5.358466,
                                                       "source": "esc50 preset (by frame count)"},
        "config": {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "patch_size": 16,
                   "pooling": "mean"},
        "labels": {"num_labels": 50, "label_set": "esc50", "problem_type": "single_label_classification"},
        "notes": ["a note"],
    }
    text = render_generic_model_card(summary, extra_files={"extra.safetensors": "something extra"})
    meta = _front_matter(text)
    assert meta["license"] == "other" and meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "audio-classification"
    for heading in ("## Model", "## Preprocessing", "## Usage", "## Extra files", "## Conversion notes", "## Licence",
                    "## Citation"):
        assert f"\n{heading}\n" in text, heading
    assert "512 frames" in text and "(x - mean) / (2 * std)" in text and "AutoModelForAudioClassification" in text
    assert "@inproceedings{" in text and text.endswith(".\n") and not text.endswith("\n\n")
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        compile(block, "<generic usage>", "exec")
    pretraining = render_generic_model_card(summary | {"native_class": "AudioMosaicForPreTraining", "labels": None,
                                                       "classifier_head": None, "notes": []})
    assert _front_matter(pretraining)["pipeline_tag"] == "feature-extraction"
    assert "AutoModelForPreTraining" in pretraining and "## Conversion notes" not in pretraining


def test_index_lists_every_release():
    index = (CARDS_DIR / "README.md").read_text(encoding="utf-8")
    assert index == render_index()
    for name in RELEASES:
        assert f"[{name}]({name}.md)" in index
    assert "42.53" in index and "50.19" in index


# -- CLI ---------------------------------------------------------------------------------------------------------------


def test_committed_cards_are_up_to_date(capsys):
    script = _load_script()
    assert script.main(["--check"]) == 0
    assert sorted(p.name for p in CARDS_DIR.glob("*.md")) == sorted([f"{n}.md" for n in RELEASES] + ["README.md"])


def test_check_mode_detects_stale_cards(tmp_path, capsys):
    script = _load_script()
    assert script.main(["--out_dir", str(tmp_path)]) == 0
    assert len(list(tmp_path.glob("*.md"))) == 16
    assert script.main(["--check", "--out_dir", str(tmp_path)]) == 0
    card = tmp_path / "AudioMosaic-vit-b16-finetune-spc2.md"
    card.write_text(card.read_text(encoding="utf-8").replace("98.34", "98.35"), encoding="utf-8")
    assert script.main(["--check", "--out_dir", str(tmp_path)]) == 1
    (tmp_path / "README.md").unlink()
    card.unlink()
    assert script.main(["--check", "--out_dir", str(tmp_path)]) == 1
    assert "missing" in capsys.readouterr().out


def test_script_runs_without_torch(tmp_path):
    """The CLI loads model_cards.py and releases.py without the package `__init__`: no torch / transformers
    import, as a subprocess."""
    code = (
        "import runpy, sys; sys.argv = ['make_model_cards.py', '--check']; "
        f"rc = 0\ntry:\n    runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\nexcept SystemExit as e:\n"
        "    rc = e.code\nassert 'torch' not in sys.modules and 'transformers' not in sys.modules\nsys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
