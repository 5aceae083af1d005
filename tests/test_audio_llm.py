"""AudioMosaic audio-language model (LTU style): config, processor, placeholder merge, loss masking, pooling,
generation, LoRA and save/load, all with tiny random encoders / LMs and an offline tokenizer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoProcessor,
    DynamicCache,
    LlamaConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from modeling_audiomosaic import (  # importing the package registers the Auto classes
    LTU_CHAT_TEMPLATE,
    AudioMosaicAudioProjector,
    AudioMosaicConfig,
    AudioMosaicForConditionalGeneration,
    AudioMosaicLLMConfig,
    AudioMosaicModel,
    AudioMosaicProcessor,
    answer_alignment_loss,
    pool_audio_tokens,
)
from modeling_audiomosaic.feature_extraction import AudioMosaicFeatureExtractor

NUM_AUDIO_TOKENS = 4
FRAMES, MELS, PATCH = 128, 32, 8  # grid T' x F' = 16 x 4 = 64 patches
WORDS = (
    "what is the sound a dog cat bark meow car engine music speech rain describe audio it this in clip hear you "
    "can and ### Instruction Response : ? . , ! yes no"
).split()
SPECIALS = ["<unk>", "<pad>", "<s>", "</s>"]
ROLE_TOKENS = ["<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


# ----------------------------------------------------------------------------------------------------------- builders
def make_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer built offline (BOS added by the post-processor) with a chat template."""
    vocab = {token: index for index, token in enumerate(SPECIALS + ROLE_TOKENS + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    backend.decoder = decoders.WordPiece()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ROLE_TOKENS})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def make_processor(tokenizer=None) -> AudioMosaicProcessor:
    fe = AudioMosaicFeatureExtractor(num_mel_bins=MELS, feature_size=MELS, max_length=FRAMES)
    return AudioMosaicProcessor(fe, tokenizer or make_tokenizer(), num_audio_tokens=NUM_AUDIO_TOKENS)


def audio_config() -> AudioMosaicConfig:
    return AudioMosaicConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_length=FRAMES,
        num_mel_bins=MELS, patch_size=PATCH, use_final_norm=True, drop_path_rate=0.0,
    )


def text_config(kind: str = "qwen2", vocab_size: int = 64):
    common = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    if kind == "qwen2":
        return Qwen2Config(tie_word_embeddings=True, **common)
    return LlamaConfig(bos_token_id=2, eos_token_id=3, pad_token_id=1, **common)


def make_model(kind: str = "qwen2", projector_type: str = "ltu", audio_token_id: int | None = None, **kwargs):
    if audio_token_id is None:
        audio_token_id = make_processor().audio_token_id
    config = AudioMosaicLLMConfig(
        audio_config=audio_config().to_dict(), text_config=text_config(kind).to_dict(), audio_token_id=audio_token_id,
        num_audio_tokens=NUM_AUDIO_TOKENS, projector_type=projector_type, **kwargs,
    )
    torch.manual_seed(0)
    model = AudioMosaicForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = None  # tiny random LMs: never stop early
    model.generation_config.pad_token_id = 1
    return model


def waves(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(FRAMES * 160 + 240)).astype(np.float32) for _ in range(count)]


def manual_merge(model, input_ids: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """Embeddings with audio rows written position by position (row-major over the batch)."""
    embeds = model.get_input_embeddings()(input_ids).clone()
    rows = iter(audio.reshape(-1, audio.shape[-1]))
    for b in range(input_ids.shape[0]):
        for position in range(input_ids.shape[1]):
            if input_ids[b, position] == model.config.audio_token_id:
                embeds[b, position] = next(rows)
    assert next(rows, None) is None
    return embeds


# -------------------------------------------------------------------------------------------------------- pooling
def reference_ltu_pool_64x8(tokens: torch.Tensor) -> torch.Tensor:
    """Closed form of LTU's pooling (`modeling_ltu.py`) for the 64 x 8 grid: output j = mean of time patches
    t ≡ j // 4 (mod 8) and frequency groups {2 (j mod 4), 2 (j mod 4) + 1}; token index t * 8 + f."""
    out = []
    for j in range(32):
        members = [t * 8 + f for t in range(64) for f in range(8) if t % 8 == j // 4 and f // 2 == j % 4]
        assert len(members) == 16
        out.append(tokens[:, members].mean(dim=1))
    return torch.stack(out, dim=1)


def reference_time_pool(tokens: torch.Tensor, num_time: int, num_freq: int, num_out: int) -> torch.Tensor:
    span = num_time // num_out
    out = []
    for k in range(num_out):
        members = [t * num_freq + f for t in range(k * span, (k + 1) * span) for f in range(num_freq)]
        out.append(tokens[:, members].mean(dim=1))
    return torch.stack(out, dim=1)


def test_ltu_pooling_matches_reference_order():
    tokens = torch.randn(2, 512, 3, dtype=torch.float64)
    ltu = pool_audio_tokens(tokens, (64, 8), 32, "ltu")
    torch.testing.assert_close(ltu, reference_ltu_pool_64x8(tokens))
    # token j draws only on time patches t ≡ j // 4 (mod 8): light one patch and see which outputs move
    probe = torch.zeros(1, 512, 1, dtype=torch.float64)
    probe[0, 13 * 8 + 5] = 1.0  # t = 13 (≡ 5 mod 8), f = 5 -> j = 5 * 4 + 2 = 22
    assert pool_audio_tokens(probe, (64, 8), 32, "ltu")[0, :, 0].nonzero().flatten().tolist() == [22]
    time = pool_audio_tokens(tokens, (64, 8), 32, "time")
    torch.testing.assert_close(time, reference_time_pool(tokens, 64, 8, 32))
    assert pool_audio_tokens(probe, (64, 8), 32, "time")[0, :, 0].nonzero().flatten().tolist() == [13 // 2]
    with pytest.raises(ValueError, match="fewer than num_audio_tokens"):
        pool_audio_tokens(torch.randn(1, 16, 3), (4, 4), 8, "time")


@pytest.mark.parametrize("projector_type", ["ltu", "mlp"])
def test_audio_features_independent_reference(projector_type):
    model = make_model(projector_type=projector_type)
    x = torch.randn(2, FRAMES, MELS)
    with torch.no_grad():
        feats = model.get_audio_features(x)
        tokens = model.audio_tower(x).last_hidden_state[:, 1:]  # after the final norm (LTU keeps it), CLS dropped
        proj = model.audio_projector
        if projector_type == "ltu":
            # the ltu pooling on a 16 x 4 grid: reshape (4, 16) -> a = i // 16, b = i % 16, pairs of b
            ref_pool = torch.stack([
                tokens[:, [i for i in range(64) if (i % 16) // 4 == j]].mean(dim=1) for j in range(NUM_AUDIO_TOKENS)
            ], dim=1)
            expected = proj.linear(F.layer_norm(ref_pool / 50.0, (32,), eps=1e-5))
        else:
            ref_pool = reference_time_pool(tokens, FRAMES // PATCH, MELS // PATCH, NUM_AUDIO_TOKENS)
            expected = proj.linear_2(F.gelu(proj.linear_1(ref_pool)))
    assert feats.shape == (2, NUM_AUDIO_TOKENS, 32)
    torch.testing.assert_close(feats, expected, rtol=1e-5, atol=1e-6)


def test_pooled_audio_tokens_feed_the_projector_and_feature_layer():
    model = make_model(projector_type="mlp", audio_feature_layer=1)
    x = torch.randn(2, FRAMES, MELS)
    with torch.no_grad():
        pooled = model.get_pooled_audio_tokens(x)
        block_1 = model.audio_tower(x, output_hidden_states=True).hidden_states[1][:, 1:]
        expected = reference_time_pool(block_1, FRAMES // PATCH, MELS // PATCH, NUM_AUDIO_TOKENS)
        torch.testing.assert_close(pooled, expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model.get_audio_features(x), model.audio_projector.project(pooled))


def reference_alignment_loss(audio, answers, embeddings, candidates, temperature):
    """Loop-by-loop reading of answer_alignment_loss's definition."""
    cand = embeddings[candidates]
    scale = temperature * float(np.mean([float(e @ e) for e in cand]))
    losses, predicted = [], []
    for b in range(audio.shape[0]):
        tokens = [int(t) for t in answers[b] if t != -100]
        row = []
        for k in range(audio.shape[1]):
            target = candidates.tolist().index(tokens[k % len(tokens)])
            logits = torch.stack([-((audio[b, k] - e) ** 2).sum() / scale for e in cand])
            losses.append(-torch.log_softmax(logits, dim=0)[target])
            row.append(int(candidates[int(logits.argmax())]))
        predicted.append(row)
    return torch.stack(losses).mean(), torch.tensor(predicted)


def test_answer_alignment_loss_matches_reference_and_spells_answers():
    torch.manual_seed(0)
    embeddings = torch.randn(40, 16)
    answers = torch.tensor([[5, 9, -100], [7, -100, -100], [3, 4, 11]])
    candidates = torch.tensor([3, 4, 5, 7, 9, 11, 20])
    audio = torch.randn(3, 5, 16, requires_grad=True)
    loss, predicted = answer_alignment_loss(audio, answers, embeddings, candidates, temperature=0.5)
    ref_loss, ref_predicted = reference_alignment_loss(audio.detach(), answers, embeddings, candidates, 0.5)
    torch.testing.assert_close(loss.detach(), ref_loss, rtol=1e-5, atol=1e-6)
    assert torch.equal(predicted, ref_predicted)
    loss.backward()
    assert audio.grad is not None and audio.grad.abs().sum() > 0
    # audio tokens sitting on the answers' embeddings spell the answers slot by slot (a_{k mod m}) with a small loss
    on_target = torch.stack([embeddings[[row[k % len(row)] for k in range(5)]]
                             for row in ([5, 9], [7], [3, 4, 11])])
    loss, predicted = answer_alignment_loss(on_target, answers, embeddings, candidates, temperature=0.1)
    assert predicted.tolist() == [[5, 9, 5, 9, 5], [7] * 5, [3, 4, 11, 3, 4]]
    assert float(loss) < 1e-3
    with pytest.raises(ValueError, match="candidate_ids must contain every answer token"):
        answer_alignment_loss(on_target, answers, embeddings, torch.tensor([3, 4, 5, 7, 9]))
    with pytest.raises(ValueError, match="at least one token"):
        answer_alignment_loss(on_target, torch.tensor([[5], [7], [-100]]), embeddings, candidates)
    with pytest.raises(ValueError, match="expected audio_embeddings"):
        answer_alignment_loss(on_target[0], answers, embeddings, candidates)


def test_ltu_shuffle_in_training_only_in_training():
    config = AudioMosaicLLMConfig(audio_config=audio_config().to_dict(), text_config=text_config().to_dict(),
                                  num_audio_tokens=NUM_AUDIO_TOKENS, ltu_shuffle_in_training=True)
    projector = AudioMosaicAudioProjector(config)
    tokens = torch.randn(2, 64, 32)
    eval_pool = projector.eval().pool(tokens, (16, 4))
    torch.testing.assert_close(eval_pool, pool_audio_tokens(tokens, (16, 4), NUM_AUDIO_TOKENS, "ltu"))
    train_pool = projector.train().pool(tokens, (16, 4))
    assert not torch.allclose(train_pool, eval_pool)  # random groups of 16 patches ...
    torch.testing.assert_close(train_pool.mean(dim=1), tokens.mean(dim=1))  # ... covering every patch once


# ------------------------------------------------------------------------------------------------------ config
def test_config_round_trip_and_validation(tmp_path):
    config = AudioMosaicLLMConfig(audio_config=audio_config(), text_config=text_config("llama").to_dict(),
                                  audio_token_id=41, num_audio_tokens=NUM_AUDIO_TOKENS, projector_type="mlp")
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["text_config"]["model_type"] == "llama" and saved["audio_config"]["model_type"] == "audiomosaic"
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, AudioMosaicLLMConfig)
    assert isinstance(loaded.text_config, LlamaConfig) and isinstance(loaded.audio_config, AudioMosaicConfig)
    assert (loaded.audio_token_id, loaded.num_audio_tokens, loaded.resolved_audio_pooling) == (41, 4, "time")
    assert loaded.audio_config.use_final_norm and loaded.text_config.hidden_size == 32
    default = AudioMosaicLLMConfig()
    assert default.num_audio_tokens == 32 and default.resolved_audio_pooling == "ltu"
    assert default.audio_config.use_final_norm and default.text_config.model_type == "llama"
    with pytest.raises(ValueError, match="projector_type"):
        AudioMosaicLLMConfig(projector_type="qformer")


# --------------------------------------------------------------------------------------------------- processor
def test_processor_expands_markers_and_checks_counts():
    processor = make_processor()
    audio_id = processor.audio_token_id
    assert processor.tokenizer.convert_ids_to_tokens(audio_id) == "<audio>"
    out = processor(text=["<audio>what is this sound ?", "describe <audio> and <audio> ."], audio=waves(3),
                    return_tensors="pt", padding=True)
    ids = out["input_ids"]
    assert (ids[0] == audio_id).sum() == NUM_AUDIO_TOKENS and (ids[1] == audio_id).sum() == 2 * NUM_AUDIO_TOKENS
    assert ids[0, 1 : 1 + NUM_AUDIO_TOKENS].eq(audio_id).all() and ids[0, 0] == processor.tokenizer.bos_token_id
    assert out["input_values"].shape == (3, FRAMES, MELS)
    with pytest.raises(ValueError, match=r"1 '<audio>' marker\(s\).*2 audio clip"):
        processor(text="<audio>what is it ?", audio=waves(2))
    with pytest.raises(ValueError, match=r"2 '<audio>' marker\(s\).*0 audio clip"):
        processor(text="<audio><audio>what")
    with pytest.raises(ValueError, match="cut"):
        processor(text="what is the sound <audio>", audio=waves(1), truncation=True, max_length=6)


def test_processor_chat_template_and_ltu_template():
    processor = make_processor()
    conversation = [{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": "what is the sound ?"}]}]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    assert prompt == "<|user|> <audio>what is the sound ? <|end|> <|assistant|> "
    with_audio = [{"role": "user", "content": [{"type": "text", "text": "describe"},
                                               {"type": "audio", "audio": waves(1)[0]}]}]
    out = processor.apply_chat_template(with_audio, add_generation_prompt=True, tokenize=True, return_dict=True,
                                        return_tensors="pt")
    assert (out["input_ids"] == processor.audio_token_id).sum() == NUM_AUDIO_TOKENS
    assert out["input_values"].shape == (1, FRAMES, MELS)
    ltu = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "text", "text": "what is the sound ?"}, {"type": "audio"}]},
         {"role": "assistant", "content": "a dog bark"}],
        chat_template=LTU_CHAT_TEMPLATE,
    )
    assert ltu == "<audio>### Instruction:\nwhat is the sound ?\n\n### Response:\na dog bark</s>"


def test_processor_save_load_round_trip(tmp_path):
    processor = make_processor()
    processor.save_pretrained(tmp_path)
    for loaded in (AudioMosaicProcessor.from_pretrained(tmp_path), AutoProcessor.from_pretrained(tmp_path)):
        assert isinstance(loaded, AudioMosaicProcessor)
        assert loaded.audio_token_id == processor.audio_token_id and loaded.num_audio_tokens == NUM_AUDIO_TOKENS
        assert len(loaded.tokenizer) == len(processor.tokenizer)
        assert loaded.feature_extractor.max_length == FRAMES
        a = processor(text="<audio>what is it ?", audio=waves(1), return_tensors="pt")
        b = loaded(text="<audio>what is it ?", audio=waves(1), return_tensors="pt")
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["input_values"], b["input_values"])
        assert loaded.apply_chat_template([{"role": "user", "content": "hi"}]) == "<|user|> hi <|end|> "


# ------------------------------------------------------------------------------------------- merge / loss / errors
@pytest.mark.parametrize("kind,projector_type", [("qwen2", "ltu"), ("llama", "mlp")])
def test_audio_embeddings_land_on_placeholders(kind, projector_type):
    processor = make_processor()
    model = make_model(kind, projector_type, audio_token_id=processor.audio_token_id)
    inputs = processor(text=["<audio>what is it ?", "describe <audio> and <audio>"], audio=waves(3),
                       return_tensors="pt", padding=True)
    with torch.no_grad():
        merged = model.build_inputs_embeds(inputs["input_ids"], inputs["input_values"])
        audio = model.get_audio_features(inputs["input_values"])
        expected = manual_merge(model, inputs["input_ids"], audio)
        out = model(**inputs)
        reference = model.language_model(inputs_embeds=expected, attention_mask=inputs["attention_mask"]).logits
    torch.testing.assert_close(merged, expected, rtol=0, atol=0)
    is_audio = inputs["input_ids"] == processor.audio_token_id
    text_embeds = model.get_input_embeddings()(inputs["input_ids"])
    assert torch.equal(merged[~is_audio], text_embeds[~is_audio])
    torch.testing.assert_close(out.logits, reference)
    torch.testing.assert_close(out.audio_embeddings, audio)


def test_count_mismatch_errors():
    processor = make_processor()
    model = make_model(audio_token_id=processor.audio_token_id)
    audio_id = processor.audio_token_id
    ids = torch.tensor([[2] + [audio_id] * 3 + [8, 9]])  # 3 placeholders, one clip gives 4
    with pytest.raises(ValueError, match=r"3 audio placeholder tokens.*1 clip\(s\) x 4 tokens = 4"):
        model(input_ids=ids, input_values=torch.randn(1, FRAMES, MELS))
    ids = torch.tensor([[2] + [audio_id] * 4 + [8, 9]])
    with pytest.raises(ValueError, match=r"4 audio placeholder tokens.*2 clip\(s\) x 4 tokens = 8"):
        model(input_ids=ids, input_values=torch.randn(2, FRAMES, MELS))
    with pytest.raises(ValueError, match="no input_values"):
        model(input_ids=ids)
    with pytest.raises(ValueError, match=r"0 audio placeholder tokens.*1 clip\(s\) x 4 tokens = 4"):
        model(input_ids=torch.tensor([[2, 8, 9]]), input_values=torch.randn(1, FRAMES, MELS))


def test_loss_masks_audio_padding_and_prompt():
    processor = make_processor()
    model = make_model("llama", audio_token_id=processor.audio_token_id)
    clips = waves(2)
    examples = [
        processor.build_training_example("<audio>what is the sound ?", "a dog bark", audio=clips[0], mask_prompt=True),
        processor.build_training_example("<audio>describe", "music", audio=clips[1], mask_prompt=True),
    ]
    assert examples[0]["labels"][: 1 + NUM_AUDIO_TOKENS + 5] == [-100] * (1 + NUM_AUDIO_TOKENS + 5)
    batch = processor.collate_training_examples(examples)
    assert batch["input_values"].shape == (2, FRAMES, MELS)
    answer = (batch["prompt_mask"] == 0) & (batch["attention_mask"] == 1)
    assert torch.equal(batch["labels"] != -100, answer)

    with torch.no_grad():
        out = model(**{k: v for k, v in batch.items() if k != "prompt_mask"})
        logits, targets = out.logits[:, :-1], batch["input_ids"][:, 1:]
        keep = answer[:, 1:]
        manual = F.cross_entropy(logits[keep], targets[keep])
        torch.testing.assert_close(out.loss, manual)

        # caller's labels = input_ids (LTU trains on the prompt): audio + padding are masked by the model itself
        unmasked = dict(batch, labels=batch["input_ids"].clone())
        out_all = model(**{k: v for k, v in unmasked.items() if k != "prompt_mask"})
        keep_all = ((batch["input_ids"] != processor.audio_token_id) & (batch["attention_mask"] == 1))[:, 1:]
        torch.testing.assert_close(out_all.loss, F.cross_entropy(logits[keep_all], targets[keep_all]))

        # ignore_prompt_in_loss + prompt_mask reproduces the processor's prompt masking
        model.config.ignore_prompt_in_loss = True
        out_prompt = model(**unmasked)
        torch.testing.assert_close(out_prompt.loss, manual)


# ---------------------------------------------------------------------------------------------------- generation
def test_generate_matches_manual_greedy_loop():
    processor = make_processor()
    model = make_model(audio_token_id=processor.audio_token_id)
    inputs = processor(text=["<audio>what is the sound ?", "<audio>describe this audio clip ."], audio=waves(2),
                       return_tensors="pt")
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
        no_cache = model.generate(**inputs, max_new_tokens=3, do_sample=False, use_cache=False)

        embeds = model.build_inputs_embeds(inputs["input_ids"], inputs["input_values"])
        mask, cache, tokens = inputs["attention_mask"], DynamicCache(config=model.config.text_config), []
        for _ in range(3):
            logits = model.language_model(inputs_embeds=embeds, attention_mask=mask, use_cache=True,
                                          **{model._language_model_cache_argument: cache}).logits
            next_token = logits[:, -1].argmax(dim=-1)
            tokens.append(next_token)
            embeds = model.get_input_embeddings()(next_token[:, None])
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    prompt_length = inputs["input_ids"].shape[1]
    assert torch.equal(generated[:, :prompt_length], inputs["input_ids"])
    assert torch.equal(generated[:, prompt_length:], torch.stack(tokens, dim=1))
    assert torch.equal(no_cache, generated)
    # after the prefill the audio is in the cache: the decode steps get no audio inputs
    step = model.prepare_inputs_for_generation(generated, next_sequence_length=1, attention_mask=mask,
                                               **{model._language_model_cache_argument: cache},
                                               input_values=inputs["input_values"],
                                               audio_attention_mask=torch.ones(2, FRAMES), use_cache=True)
    assert "input_values" not in step and "audio_attention_mask" not in step


# ------------------------------------------------------------------------------------------------ LoRA / save-load
def logits_of(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")  # peft
def test_peft_lora_targets_llm_only_and_round_trips(tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    processor = make_processor()
    model = make_model(audio_token_id=processor.audio_token_id)
    inputs = processor(text="<audio>what is the sound ?", audio=waves(1), return_tensors="pt")
    model.save_pretrained(tmp_path / "base")
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=r".*language_model.*\.(q_proj|v_proj)",
                      modules_to_save=["audio_projector"])
    peft_model = get_peft_model(model, lora)
    lora_modules = [name for name, module in peft_model.named_modules() if hasattr(module, "lora_A")]
    assert len(lora_modules) == 2 * 2  # 2 layers x {q, v}
    assert all("language_model" in name and name.split(".")[-1] in ("q_proj", "v_proj") for name in lora_modules)
    assert not any("lora_" in name for name, _ in peft_model.named_parameters()
                   if "audio_tower" in name or "audio_projector" in name)
    trainable = {name for name, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name or "audio_projector.modules_to_save" in name for name in trainable)
    with torch.no_grad():  # make the adapter and the projector copy non-trivial
        for name, param in peft_model.named_parameters():
            if "lora_B" in name or "audio_projector.modules_to_save" in name:
                param.add_(0.05 * torch.randn_like(param))
    peft_model.eval()
    adapted = logits_of(peft_model, inputs)
    assert not torch.allclose(adapted, logits_of(AudioMosaicForConditionalGeneration.from_pretrained(
        tmp_path / "base").eval(), inputs))
    peft_model.save_pretrained(tmp_path / "adapter")

    fresh = AudioMosaicForConditionalGeneration.from_pretrained(tmp_path / "base").eval()
    reloaded = PeftModel.from_pretrained(fresh, tmp_path / "adapter").eval()
    torch.testing.assert_close(logits_of(reloaded, inputs), adapted, rtol=0, atol=0)
    merged = reloaded.merge_and_unload()
    assert isinstance(merged, AudioMosaicForConditionalGeneration)
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    torch.testing.assert_close(logits_of(merged, inputs), adapted, rtol=1e-5, atol=1e-5)


def test_full_model_save_load_round_trip(tmp_path):
    processor = make_processor()
    model = make_model(audio_token_id=processor.audio_token_id)
    inputs = processor(text="<audio>what is it ?", audio=waves(1), return_tensors="pt")
    model.save_pretrained(tmp_path)
    for loaded in (AudioMosaicForConditionalGeneration.from_pretrained(tmp_path),
                   AutoModelForCausalLM.from_pretrained(tmp_path)):
        assert isinstance(loaded, AudioMosaicForConditionalGeneration)
        loaded.eval()
        torch.testing.assert_close(logits_of(loaded, inputs), logits_of(model, inputs), rtol=0, atol=0)
        lm = loaded.language_model
        assert lm.get_output_embeddings().weight is lm.get_input_embeddings().weight  # Qwen2 tied head stays tied


def test_from_pretrained_components_with_ltu_projector(tmp_path):
    processor = make_processor()
    torch.manual_seed(1)
    encoder = AudioMosaicModel(audio_config()).eval()
    encoder.save_pretrained(tmp_path / "audio")
    lm = AutoModelForCausalLM.from_config(text_config("llama", vocab_size=len(processor.tokenizer) - 1))
    lm.save_pretrained(tmp_path / "lm")
    weight, bias = torch.randn(32, 32), torch.randn(32)
    save_file({"audio_proj.1.weight": weight, "audio_proj.1.bias": bias}, str(tmp_path / "audio" / "audio_projector"
                                                                              ".safetensors"))
    model = AudioMosaicForConditionalGeneration.from_pretrained_components(
        tmp_path / "audio", tmp_path / "lm", tokenizer=processor.tokenizer, projector_path=tmp_path / "audio",
        num_audio_tokens=NUM_AUDIO_TOKENS,
    ).eval()
    assert model.config.audio_token_id == processor.audio_token_id
    assert model.get_input_embeddings().num_embeddings == len(processor.tokenizer)  # grown for <audio>
    assert torch.equal(model.audio_projector.linear.weight, weight) and torch.equal(model.audio_projector.linear.bias,
                                                                                   bias)
    for key, value in encoder.state_dict().items():
        assert torch.equal(model.audio_tower.state_dict()[key], value), key
    assert not any(p.is_meta for p in model.parameters())
    inputs = processor(text="<audio>what is it ?", audio=waves(1), return_tensors="pt")
    assert torch.isfinite(logits_of(model, inputs)).all()
    save_file({"audio_proj.1.weight": torch.randn(4096, 32), "audio_proj.1.bias": torch.randn(4096)},
              str(tmp_path / "wide.safetensors"))
    with pytest.raises(ValueError, match=r"\(4096, 32\)"):
        model.load_audio_projector(tmp_path / "wide.safetensors")


def test_from_pretrained_components_final_norm_from_fc_norm(tmp_path):
    """LTU's encoder init: the pre-training checkpoint's fc_norm becomes the encoder's final per-token norm."""
    processor = make_processor()
    encoder = AudioMosaicModel(AudioMosaicConfig(**{**audio_config().to_dict(), "use_final_norm": False}))
    with torch.no_grad():
        encoder.pooler.fc_norm.weight.normal_()
        encoder.pooler.fc_norm.bias.normal_()
    encoder.save_pretrained(tmp_path / "audio")
    AutoModelForCausalLM.from_config(text_config(vocab_size=len(processor.tokenizer))).save_pretrained(tmp_path / "lm")
    model = AudioMosaicForConditionalGeneration.from_pretrained_components(
        tmp_path / "audio", tmp_path / "lm", tokenizer=processor.tokenizer, final_norm_from_fc_norm=True,
        num_audio_tokens=NUM_AUDIO_TOKENS,
    )
    assert model.config.audio_config.use_final_norm
    assert torch.equal(model.audio_tower.layernorm.weight, encoder.pooler.fc_norm.weight)
    assert torch.equal(model.audio_tower.layernorm.bias, encoder.pooler.fc_norm.bias)
