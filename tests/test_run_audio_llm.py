"""run_scripts/run_audio_llm.py end to end on a tiny AudioMosaic encoder and a tiny LLaMA (tokenizer built offline):
stage 1 trains only the projector, stage 2 LoRA on the LM only, adapter + projector reload, merged export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import run_audio_llm as ral
import soundfile as sf
import torch
from test_audio_llm import FRAMES, audio_config, make_processor, make_tokenizer, text_config
from transformers import AutoModelForCausalLM, LlamaForCausalLM

import modeling_audiomosaic.audio_llm_training as audio_llm_training
from modeling_audiomosaic import AudioMosaicForConditionalGeneration, AudioMosaicModel

pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")


@pytest.fixture(scope="module")
def components(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio_llm")
    processor = make_processor()
    torch.manual_seed(0)
    AudioMosaicModel(audio_config()).save_pretrained(root / "audio")
    processor.feature_extractor.save_pretrained(root / "audio")
    tokenizer = make_tokenizer()
    LlamaForCausalLM(text_config("llama", vocab_size=len(tokenizer))).save_pretrained(root / "lm")
    tokenizer.save_pretrained(root / "lm")
    rng = np.random.default_rng(0)
    (root / "clips").mkdir()
    records = []
    for index in range(12):
        t = np.arange(FRAMES * 160) / 16000
        wave = 0.3 * np.sin(2 * np.pi * 440 * t) if index % 2 else 0.3 * rng.standard_normal(t.size)
        sf.write(root / "clips" / f"{index}.wav", wave.astype(np.float32), 16000)
        records.append({"audio": f"clips/{index}.wav", "question": "what is the sound ?",
                        "answer": "music" if index % 2 else "rain", "task": "toy"})
    (root / "train.jsonl").write_text("\n".join(json.dumps(r) for r in records[:8]))
    (root / "test.json").write_text(json.dumps(records[8:]))
    return root


def run(components: Path, out: Path, *extra: str) -> dict:
    return ral.main([
        "--audio_model", str(components / "audio"), "--language_model", str(components / "lm"),
        "--train_file", str(components / "train.jsonl"), "--test_file", str(components / "test.json"),
        "--output_dir", str(out), "--num_audio_tokens", "4", "--per_device_train_batch_size", "4",
        "--eval_batch_size", "4", "--max_new_tokens", "3", "--disable_tqdm", "true", *extra,
    ])


def test_projector_stage_trains_only_the_projector(components, tmp_path):
    results = run(components, tmp_path, "--projector_steps", "4", "--projector_lr", "1e-2", "--lora_steps", "0")
    assert list(results["stages"]) == ["untrained connector", "stage 1: projector"]
    assert (tmp_path / "projector" / ral.PROJECTOR_FILE).is_file() and not (tmp_path / "adapter").exists()
    trained, processor = ral.load_trained(tmp_path)
    assert trained.config.ignore_prompt_in_loss  # default: the loss is on the answer tokens only
    base = ral.build_base_model(json.loads((tmp_path / "run_config.json").read_text()), processor)
    changed = {key for key, value in trained.state_dict().items() if not torch.equal(value, base.state_dict()[key])}
    assert changed and all(key.startswith("audio_projector.") for key in changed)
    stage1 = results["stages"]["stage 1: projector"]
    assert set(stage1["per_task"]) == {"toy"} and 1 <= stage1["distinct_answers"]["toy"] <= 4
    # one example per distinct reference answer (the toy task has two), up to three per task
    assert sorted(example["reference"] for example in stage1["examples"]) == ["music", "rain"]
    assert all(example["task"] == "toy" for example in stage1["examples"])
    assert (tmp_path / "report.md").read_text().count("| stage 1: projector |") == 1
    assert (tmp_path / "training_loss.png").stat().st_size > 0


def test_lora_stage_adapter_reload_and_merged_export(components, tmp_path):
    results = run(components, tmp_path, "--projector_steps", "2", "--lora_steps", "3", "--lora_lr", "1e-2",
                  "--merge_and_unload")
    assert list(results["stages"])[-1] == "stage 2: LoRA + projector"
    adapter_config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["target_modules"] == r".*language_model.*\.(q_proj|v_proj)"
    assert adapter_config["modules_to_save"] == ["audio_projector"]

    model, processor = ral.load_trained(tmp_path)
    lora = [name for name, module in model.named_modules() if hasattr(module, "lora_A")]
    assert len(lora) == 2 * 2 and all(".language_model." in name for name in lora)
    inputs = processor(text=processor.apply_chat_template(ral.conversation("what is the sound ?"),
                                                          add_generation_prompt=True),
                       audio=np.zeros(FRAMES * 160, np.float32), return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        adapted = model(**inputs).logits
        stage1 = ral.load_trained(tmp_path, stage="projector")[0](**inputs).logits
        merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
        assert isinstance(merged, AudioMosaicForConditionalGeneration)
        torch.testing.assert_close(merged(**inputs).logits, adapted, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(stage1, adapted, atol=1e-4)  # stage 2 changed the model
    # the answers the script scored can be regenerated from the reloaded model
    answers = ral.evaluate_answers(model, processor, ral.load_qa_file(components / "test.json"), batch_size=4,
                                   max_new_tokens=3)
    assert answers["accuracy"] == results["stages"]["stage 2: LoRA + projector"]["accuracy"]


def test_alignment_stage_spells_answers_without_running_the_lm(components, tmp_path):
    args = ral.parse_args([
        "--audio_model", str(components / "audio"), "--language_model", str(components / "lm"),
        "--train_file", str(components / "train.jsonl"), "--test_file", str(components / "test.json"),
        "--output_dir", str(tmp_path), "--num_audio_tokens", "4", "--align_steps", "150", "--align_lr", "1e-2",
        "--align_batch_size", "8", "--disable_tqdm", "true",
    ])
    processor = ral.build_processor(args.audio_model, args.language_model, args.num_audio_tokens)
    run_config = {"audio_model": args.audio_model, "language_model": args.language_model, "num_audio_tokens": 4,
                  "projector_type": "mlp", "audio_pooling": None, "audio_feature_layer": 1, "seed": 0}
    model = ral.build_base_model(run_config, processor)
    assert model.config.audio_feature_layer == 1
    before = {key: value.clone() for key, value in model.state_dict().items()}

    def no_lm_calls(*_):
        raise AssertionError("stage 0 must not run the language model")

    handle = model.language_model.register_forward_pre_hook(no_lm_calls)
    train, test = ral.load_qa_file(components / "train.jsonl"), ral.load_qa_file(components / "test.json")
    history, diagnostics = ral.align_projector(model, processor, train, test, args)
    handle.remove()
    changed = {key for key, value in model.state_dict().items() if not torch.equal(value, before[key])}
    assert changed and all(key.startswith("audio_projector.") for key in changed)
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    # noise -> "rain", sine -> "music": separable for any encoder, so the audio tokens spell every answer
    assert diagnostics["train_spelled"] == {"toy": 1.0, "all": 1.0} and diagnostics["test_spelled"]["all"] == 1.0
    # the aligned audio tokens sit on the answer's word embedding ("rain" / "music" are single tokens here)
    features = processor(audio=[item["audio"] for item in test], return_tensors="pt")
    with torch.no_grad():
        audio = model.get_audio_features(features["input_values"])
    targets = ral.answer_id_matrix(processor.tokenizer, [item["answer"] for item in test])[:, 0]
    embeddings = model.get_input_embeddings().weight
    distances = torch.cdist(audio.reshape(-1, audio.shape[-1]), embeddings).reshape(len(test), 4, -1)
    assert torch.equal(distances.argmin(dim=-1), targets.unsqueeze(1).expand(-1, 4))


def test_alignment_stage_in_the_run(components, tmp_path):
    results = run(components, tmp_path, "--align_steps", "20", "--align_lr", "1e-2", "--projector_steps", "0",
                  "--lora_steps", "0")
    assert list(results["stages"]) == ["untrained connector", "stage 0: alignment"]
    assert set(results["alignment"]) == {"train_spelled", "test_spelled", "train_clips", "candidates"}
    assert results["alignment"]["train_clips"] == 8
    assert (tmp_path / "projector" / ral.PROJECTOR_FILE).is_file()
    assert "Stage 0 (8 training clips" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "training_loss.png").stat().st_size > 0
    with pytest.raises(SystemExit):
        ral.parse_args(["--audio_model", "a", "--language_model", "b", "--output_dir", "c", "--train_file", "t",
                        "--test_file", "u", "--align_steps", "-1"])


def test_lora_stage_with_frozen_projector(components, tmp_path):
    results = run(components, tmp_path, "--align_steps", "5", "--align_lr", "1e-2", "--projector_steps", "0",
                  "--lora_steps", "2", "--lora_lr", "1e-2", "--lora_train_projector", "false")
    assert list(results["stages"])[-1] == "stage 2: LoRA"
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["modules_to_save"] is None
    model, _ = ral.load_trained(tmp_path)
    stage0, _ = ral.load_trained(tmp_path, stage="projector")
    projector = model.base_model.model.audio_projector
    assert not hasattr(projector, "modules_to_save")  # a plain module: stage 2 did not train it
    for key, value in stage0.audio_projector.state_dict().items():
        assert torch.equal(projector.state_dict()[key], value)


def test_lora_target_modules_are_validated():
    config = ral.lora_config(["q_proj", "k_proj"], r=4, alpha=8, dropout=0.0, train_encoder=True)
    assert config.target_modules == r".*language_model.*\.(q_proj|k_proj)"
    assert config.modules_to_save == ["audio_projector", "audio_tower"]
    with pytest.raises(ValueError, match="module names like q_proj"):
        ral.lora_config([".*"], r=4, alpha=8, dropout=0.0, train_encoder=False)


def test_answer_normalisation_and_labels():
    assert ral.normalise_answer(" The Piano.\nmore") == "piano"
    assert ral.normalise_answer("an unknown word") == "an unknown word"
    assert ral.normalise_answer("A dog!") == "dog"
    assert ral.answer_for("keywords", "_unknown_") == "an unknown word"
    assert ral.answer_for("keywords", "_silence_") == "silence"
    assert ral.answer_for("esc", "glass_breaking") == "glass breaking"


def test_bad_inputs_fail_clearly(components, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"audio": "x.wav", "question": "q"}))
    with pytest.raises(ValueError, match=r"lacks \['answer'\]"):
        ral.load_qa_file(bad)
    bad.write_text(json.dumps({"audio": "missing.wav", "question": "q", "answer": "a"}))
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        ral.load_qa_file(bad)
    with pytest.raises(FileNotFoundError, match="never downloads"):
        ral.resolve_language_model(str(tmp_path / "nowhere"))
    with pytest.raises(SystemExit):
        ral.parse_args(["--audio_model", "a", "--language_model", "b", "--output_dir", "c", "--train_file", "t"])


def test_majority_answer_baseline():
    train = [{"question": "q", "answer": a, "task": "t"} for a in ("x", "x", "y")]
    test = [{"question": "q", "answer": a, "task": "t"} for a in ("x", "y", "y", "y")]
    assert ral.majority_accuracy(train, test) == {"t": 0.25, "all": 0.25}


def test_corpus_items_class_balanced_and_decoded_once(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for task in ral.TASK_QUESTIONS:
        records = []
        for label in ("a_b", "c", "_silence_"):
            for index in range(3):
                name = f"audio/{label}_{index}.wav"
                (tmp_path / task / "audio").mkdir(parents=True, exist_ok=True)
                sf.write(tmp_path / task / name, (0.1 * rng.standard_normal(1600)).astype(np.float32), 16000)
                records.append({"wav": name, "labels": label, "group": f"{label}{index}"})
        (tmp_path / task / "train.json").write_text(json.dumps({"data": records}))
    reads = []
    original = audio_llm_training.load_audio_dataset

    class Counting:  # counts the clips corpus_qa_items decodes
        def __init__(self, dataset):
            self.dataset = dataset

        def __getitem__(self, index):
            reads.append(index)
            return self.dataset[index]

    def counting(*args, **kwargs):
        return Counting(original(*args, **kwargs))

    monkeypatch.setattr(audio_llm_training, "load_audio_dataset", counting)
    decoded = {}
    two = ral.corpus_qa_items(tmp_path, "train", 2, seed=0, decoded=decoded)
    assert len(two) == 2 * 3 and len(reads) == 6
    assert {item["answer"] for item in two if item["task"] == "esc"} <= {"a b", "c", "silence"}
    everything = ral.corpus_qa_items(tmp_path, "train", None, seed=0, decoded=decoded)
    assert len(everything) == 9 * 3 and len(reads) == 27  # the 6 already decoded clips are not read again
    assert all(any(item is other for other in everything) for item in two)
    with pytest.raises(FileNotFoundError, match="build the corpus"):
        ral.corpus_qa_items(tmp_path, "test", 1, seed=0)
