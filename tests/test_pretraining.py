"""Masking strategies, NT-Xent, the pre-training model, and multi-process gathering."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from modeling_audiomosaic import (
    MASKING_STRATEGIES,
    AudioMosaicConfig,
    AudioMosaicForAudioClassification,
    AudioMosaicForPreTraining,
    AudioMosaicModel,
    apply_masking,
    nt_xent_loss,
)
from modeling_audiomosaic.masking import keep_count, register_masking_strategy

GRID_1024 = (64, 8)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------------------------ masking
@pytest.mark.parametrize(
    "name, ratio, kept",
    [("original_time", 0.6, 192), ("original_freq", 0.4, 304), ("time", 0.6, 200), ("freq", 0.4, 256),
     ("random", 0.75, 128), ("random", 0.8, 102), ("time_freq", (0.2, 0.2), 306)],
)
def test_keep_counts_1024(name, ratio, kept):
    out = apply_masking(name, GRID_1024, 5, ratio, generator=_gen())
    assert out.ids_keep.shape == (5, kept)
    assert (out.mask.sum(1) == 512 - kept).all()
    # mask and ids agree, indices sorted and unique
    assert (~out.mask.gather(1, out.ids_keep)).all()
    assert (out.ids_keep.diff(dim=1) > 0).all()


@pytest.mark.parametrize(
    "grid, counts",  # (original_time, original_freq, time, freq) at 0.6 / 0.4 (ratios of the original `pretrain.yaml`)
    [((32, 8), (96, 152, 96, 128)), ((8, 8), (24, 32, 24, 32))],
)
def test_keep_counts_other_sizes(grid, counts):
    names = ["original_time", "original_freq", "time", "freq"]
    ratios = [0.6, 0.4, 0.6, 0.4]
    got = tuple(apply_masking(n, grid, 2, r, generator=_gen()).num_kept for n, r in zip(names, ratios))
    assert got == counts


def _tf(ids, f=8):
    return ids // f, ids % f


def test_true_grid_patterns():
    t_out = apply_masking("time", GRID_1024, 3, 0.6, generator=_gen(1))
    for row in t_out.ids_keep:
        t, f = _tf(row)
        times = t.unique()
        assert len(times) == 25
        for tt in times:  # every kept time column has all 8 bands
            assert sorted(f[t == tt].tolist()) == list(range(8))
    f_out = apply_masking("freq", GRID_1024, 3, 0.4, generator=_gen(2))
    for row in f_out.ids_keep:
        t, f = _tf(row)
        bands = f.unique()
        assert len(bands) == 4
        for b in bands:
            assert sorted(t[f == b].tolist()) == list(range(64))


def test_original_grid_patterns():
    """original_time keeps 3 chunks of 8 consecutive time patches (all bands); original_freq keeps columns
    b = (t mod 8) * 8 + f of the swapped (8, 64) view: the same 38 columns in each of the 8 chunks."""
    out = apply_masking("original_time", GRID_1024, 4, 0.6, generator=_gen(3))
    for row in out.ids_keep:
        chunks = (row // 64).unique()
        assert len(chunks) == 3
        for a in chunks:
            assert sorted(row[row // 64 == a].tolist()) == list(range(64 * int(a), 64 * int(a) + 64))
    out = apply_masking("original_freq", GRID_1024, 4, 0.4, generator=_gen(4))
    for row in out.ids_keep:
        cols = [set((row[row // 64 == a] % 64).tolist()) for a in range(8)]
        assert all(len(c) == 38 for c in cols) and all(c == cols[0] for c in cols)
        # it is not band masking: typically every band is still visible
        t, f = _tf(row)
    # over many samples almost every sample keeps all 8 bands (a band vanishes in ~0.6% of samples)
    many = apply_masking("original_freq", GRID_1024, 400, 0.4, generator=_gen(5)).ids_keep
    all_bands = torch.tensor([len((r % 8).unique()) == 8 for r in many]).float().mean()
    assert all_bands > 0.95


def test_masking_is_per_sample_and_deterministic():
    a = apply_masking("time", GRID_1024, 8, 0.6, generator=_gen(7)).ids_keep
    b = apply_masking("time", GRID_1024, 8, 0.6, generator=_gen(7)).ids_keep
    c = apply_masking("time", GRID_1024, 8, 0.6, generator=_gen(8)).ids_keep
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len({tuple(r.tolist()) for r in a}) == 8  # samples draw their own masks
    # random masking is uniform: every patch kept with probability 0.25
    freq = torch.zeros(512)
    for seed in range(40):
        ids = apply_masking("random", GRID_1024, 25, 0.75, generator=_gen(seed)).ids_keep
        freq += torch.bincount(ids.flatten(), minlength=512)
    freq /= 40 * 25
    assert abs(freq.mean().item() - 0.25) < 1e-6 and freq.std().item() < 0.05


def test_masking_errors_and_registry():
    assert set(MASKING_STRATEGIES) >= {"time", "freq", "original_time", "original_freq", "random"}
    with pytest.raises(ValueError, match="Unknown masking strategy"):
        apply_masking("blocks", GRID_1024, 2, 0.5)
    with pytest.raises(ValueError, match="mask ratio"):
        apply_masking("time", GRID_1024, 2, 1.0)
    with pytest.raises(ValueError, match="patch_weights"):
        apply_masking("time", GRID_1024, 2, 0.5, patch_weights=torch.ones(2, 512))
    with pytest.raises(ValueError, match="keeps no patch"):
        apply_masking("freq", (4, 2), 2, 0.6)
    with pytest.raises(ValueError, match="already exists"):
        register_masking_strategy("time", MASKING_STRATEGIES["time"])
    assert keep_count(64, 0.6) == 25 and keep_count(8, 0.4) == 4


# ----------------------------------------------------------------------------------------------------------- NT-Xent
def reference_nt_xent(z0, z1, tau):
    """Direct formula: for every anchor, -log softmax over all other 2N-1 embeddings, positive = its other view."""
    z = torch.nn.functional.normalize(torch.cat([z0, z1]).double(), dim=1)
    n = z0.shape[0]
    losses, correct = [], 0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        sims = {j: float(z[i] @ z[j]) / tau for j in range(2 * n) if j != i}
        denom = sum(math.exp(s) for s in sims.values())
        losses.append(-(sims[pos] - math.log(denom)))
        correct += int(max(sims, key=sims.get) == pos)
    return sum(losses) / len(losses), correct / (2 * n)


def test_nt_xent_matches_direct_formula():
    torch.manual_seed(0)
    z0, z1 = torch.randn(6, 5), torch.randn(6, 5)
    for tau in (0.1, 0.5):
        out = nt_xent_loss(z0, z1, tau, gather_distributed=True)  # single process: gather is the identity
        ref_loss, ref_acc = reference_nt_xent(z0, z1, tau)
        assert abs(out.loss.item() - ref_loss) < 1e-5
        assert abs(out.accuracy.item() - ref_acc) < 1e-9
        assert out.logits.shape == (12, 11)
    # identical views with orthogonal clips: loss near its minimum and accuracy 1
    eye = torch.eye(4)
    assert nt_xent_loss(eye, eye, 0.1).accuracy.item() == 1.0
    with pytest.raises(ValueError, match="z0 and z1"):
        nt_xent_loss(torch.randn(3, 4), torch.randn(2, 4))


# ----------------------------------------------------------------------------------------------- pre-training model
def tiny_pretrain_config(**kw):
    values = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_length=64,
                  num_mel_bins=32, drop_path_rate=0.0, projection_hidden_size=16, projection_dim=8)
    values.update(kw)
    return AudioMosaicConfig(**values)


def test_pretraining_forward_counts_and_loss():
    model = AudioMosaicForPreTraining(AudioMosaicConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                                        intermediate_size=64, projection_hidden_size=16,
                                                        projection_dim=8)).train()
    x = torch.randn(4, 2, 1024, 128)
    out = model(x, generator=_gen())
    assert out.num_kept_tokens == (201, 257)
    assert out.z.shape == (2, 4, 8) and out.pooled_output.shape == (2, 4, 32)
    assert out.loss.requires_grad and 0 <= out.accuracy.item() <= 1
    torch.testing.assert_close(out.loss, nt_xent_loss(out.z[0], out.z[1], 0.1).loss)
    model.config.mask_grid = "original"
    assert model(x, generator=_gen()).num_kept_tokens == (193, 305)
    model.eval()  # eval mode: no masking unless asked
    with torch.no_grad():
        assert model(x).num_kept_tokens == (513, 513)
        assert model(x, apply_masking=True).num_kept_tokens == (193, 305)


def test_masked_view_equals_encoder_on_kept_tokens():
    """Dropping tokens = running the encoder on the gathered kept tokens only (nothing else leaks in)."""
    model = AudioMosaicForPreTraining(tiny_pretrain_config()).eval()
    x = torch.randn(3, 64, 32)
    ids = apply_masking("time", (4, 2), 3, 0.5, generator=_gen()).ids_keep
    with torch.no_grad():
        tokens = model.audiomosaic(x, ids_keep=ids).last_hidden_state
        emb = model.audiomosaic.embeddings(x)
        manual = torch.cat([emb[:, :1], torch.gather(emb[:, 1:], 1, ids[..., None].expand(-1, -1, 32))], 1)
        for layer in model.audiomosaic.layers:
            manual = layer(manual)[0]
    torch.testing.assert_close(tokens, manual)
    assert tokens.shape[1] == 1 + ids.shape[1]


def test_pretraining_gradients_and_frozen_bn_bias():
    model = AudioMosaicForPreTraining(tiny_pretrain_config()).train()
    out = model(torch.randn(4, 2, 64, 32), generator=_gen())
    out.loss.backward()
    assert not model.projector[4].bias.requires_grad and model.projector[4].bias.grad is None
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


def test_uniformity_equals_the_pairwise_formula():
    """Wang & Isola's uniformity (log mean exp(-2 d²) over the distinct pairs of all view rows), computed without the
    (N, N) distance matrix, against torch.pdist in float64; alignment as the mean squared distance of the pairs."""
    from modeling_audiomosaic.objective_contrastive import alignment_uniformity

    g = torch.Generator().manual_seed(0)
    for batch, dim in ((1, 8), (4, 8), (200, 16)):
        z0 = torch.randn(batch, dim, generator=g)
        z1 = z0 + 0.3 * torch.randn(batch, dim, generator=g)
        alignment, uniformity = alignment_uniformity(z0, z1)
        u0, u1 = torch.nn.functional.normalize(z0.double(), dim=-1), torch.nn.functional.normalize(z1.double(), dim=-1)
        expected = torch.pdist(torch.cat([u0, u1])).pow(2).mul(-2).exp().mean().log()
        assert abs(uniformity.item() - expected.item()) < 1e-6, (batch, uniformity, expected)
        assert abs(alignment.item() - (u0 - u1).pow(2).sum(1).mean().item()) < 1e-6


def test_metrics_are_float32_under_autocast_and_lid_matches_its_definition():
    """The monitoring metrics do not change under bf16 autocast (their matmul / distances stay fp32), and the LID
    from the k + 1 nearest distances equals the method-of-moments formula on fully sorted float64 distances."""
    from modeling_audiomosaic.objective_contrastive import alignment_uniformity, local_intrinsic_dimension

    g = torch.Generator().manual_seed(1)
    z0, z1 = torch.randn(64, 16, generator=g), torch.randn(64, 16, generator=g)
    features = torch.randn(96, 24, generator=g)
    plain = (*alignment_uniformity(z0, z1), *local_intrinsic_dimension(features))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = (*alignment_uniformity(z0, z1), *local_intrinsic_dimension(features))
    for a, b in zip(plain, autocast):
        assert abs(a.item() - b.item()) <= 1e-6 * max(1.0, abs(a.item())), (plain, autocast)
    k = 32
    sorted_distances = torch.cdist(features.double(), features.double()).sort(dim=1).values
    m = sorted_distances[:, 1:k].mean(dim=1)
    lid = m / (sorted_distances[:, k] - m)
    torch.testing.assert_close(plain[2].double(), lid.mean(), rtol=1e-5, atol=0)
    torch.testing.assert_close(plain[3].double(), lid.var(unbiased=False), rtol=1e-4, atol=0)
    # features sharing a large offset (pooled residual streams do): the same LID, the distances being translation
    # invariant (cdist's matrix-product form on the raw features was off by ~1e-3 here)
    shifted = local_intrinsic_dimension(features * 0.05 + 3.0 * torch.randn(1, 24, generator=g))
    scaled = local_intrinsic_dimension(features * 0.05)
    torch.testing.assert_close(shifted[0], scaled[0], rtol=1e-5, atol=0)


def test_learnable_temperature():
    model = AudioMosaicForPreTraining(tiny_pretrain_config(learnable_temperature=True, temperature=0.07)).train()
    out = model(torch.randn(4, 2, 64, 32), generator=_gen())
    assert abs(out.temperature.item() - 0.07) < 1e-6 and out.temperature.shape == ()
    out.loss.backward()
    assert model.learnable_temperature.logit_scale.grad is not None
    assert model.learnable_temperature.logit_scale.shape == (1,)  # FSDP2's fully_shard refuses 0-dim parameters


def test_pretraining_checkpoint_loads_into_encoder_and_classifier(tmp_path):
    from transformers import AutoModel, AutoModelForAudioClassification, AutoModelForPreTraining

    model = AudioMosaicForPreTraining(tiny_pretrain_config()).train()
    model(torch.randn(4, 2, 64, 32), generator=_gen()).loss.backward()  # update BN running stats
    model.eval()
    model.save_pretrained(tmp_path)
    re = AutoModelForPreTraining.from_pretrained(tmp_path).eval()
    assert type(re) is AudioMosaicForPreTraining
    x = torch.randn(2, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(re(x).z, model(x).z, rtol=0, atol=0)
        enc = AutoModel.from_pretrained(tmp_path).eval()
        torch.testing.assert_close(enc(x).pooler_output, model.audiomosaic(x).pooler_output, rtol=0, atol=0)
        clf = AutoModelForAudioClassification.from_pretrained(tmp_path, num_labels=3).eval()
        torch.testing.assert_close(clf.audiomosaic.pooler.fc_norm.weight, model.audiomosaic.pooler.fc_norm.weight)
    state = model.state_dict()
    assert {"projector.1.running_mean", "projector.4.num_batches_tracked", "projector.4.bias"} <= set(state)


def test_partial_activation_checkpointing_same_gradients():
    model = AudioMosaicForPreTraining(tiny_pretrain_config(num_hidden_layers=4, checkpointing_fraction=0.7)).train()
    x = torch.randn(4, 2, 64, 32)

    def run():
        model.zero_grad()
        out = model(x, generator=_gen(3))
        out.loss.backward()
        return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss_a, grads_a = run()
    model.audiomosaic.set_activation_checkpointing(True)
    assert [layer.gradient_checkpointing for layer in model.audiomosaic.layers] == [True, True, False, False]
    loss_b, grads_b = run()
    torch.testing.assert_close(loss_a, loss_b)
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], msg=name)


def test_pretraining_returns_every_views_hidden_states_and_attentions():
    """`output_hidden_states` / `output_attentions` give each masked view's encoder outputs, equal to the encoder's
    own on that view; views that keep fewer tokens are zero-padded to the longest one."""
    model = AudioMosaicForPreTraining(tiny_pretrain_config()).eval()  # sdpa by default: attentions fall back to eager
    x = torch.randn(3, 2, 64, 32)
    with torch.no_grad():
        out = model(x, apply_masking=True, generator=_gen(), output_hidden_states=True, output_attentions=True)
    kept = out.num_kept_tokens
    assert kept == (3, 5)  # "tf": view 0 keeps 1 of 4 time columns (x 2 bands), view 1 keeps 1 of 2 bands (x 4)
    assert len(out.hidden_states) == 3 and len(out.attentions) == 2  # embeddings + 2 blocks; 2 blocks
    assert all(h.shape == (2, 3, 5, 32) for h in out.hidden_states)
    assert all(a.shape == (2, 3, 4, 5, 5) for a in out.attentions)
    for view in range(2):
        with torch.no_grad():
            own = model.audiomosaic(x[:, view], ids_keep=out.ids_keep[view], output_hidden_states=True,
                                    output_attentions=True)
        assert len(out.view_hidden_states(view)) == len(own.hidden_states)
        for got, expected in zip(out.view_hidden_states(view), own.hidden_states):
            torch.testing.assert_close(got, expected, rtol=0, atol=0)
        for got, expected in zip(out.view_attentions(view), own.attentions):
            torch.testing.assert_close(got, expected, rtol=0, atol=0)
            torch.testing.assert_close(got.sum(-1), torch.ones_like(got.sum(-1)))  # real probabilities
        assert not out.hidden_states[-1][view, :, kept[view]:].any()  # the padding
        assert not out.attentions[-1][view, ..., kept[view]:].any()
    # the last hidden state is what the objectives read: its pooled, fc_norm-ed view 0 is `pooled_output[0]`
    pooled = model.audiomosaic.pooler(out.view_hidden_states(0)[-1])
    torch.testing.assert_close(pooled, out.pooled_output[0])


def test_pretraining_output_flags_follow_the_config_and_the_tuple_output():
    # eager: transformers refuses `config.output_attentions = True` under sdpa
    model = AudioMosaicForPreTraining(tiny_pretrain_config(attn_implementation="eager")).eval()
    x = torch.randn(2, 2, 64, 32)
    with torch.no_grad():
        plain = model(x)
        assert plain.hidden_states is None and plain.attentions is None
        model.config.output_hidden_states = True
        model.config.output_attentions = True
        from_config = model(x)
        assert len(from_config.hidden_states) == 3 and len(from_config.attentions) == 2
        assert model(x, output_hidden_states=False, output_attentions=False).hidden_states is None  # argument wins
        as_tuple = model(x, return_dict=False)
    assert len(as_tuple) == len(from_config.to_tuple())
    torch.testing.assert_close(as_tuple[0], from_config.loss)  # the field order: loss first ...
    for got, expected in zip(as_tuple[-2], from_config.hidden_states):  # ... hidden_states, attentions last
        torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="output_hidden_states=True"):
        plain.view_hidden_states(0)


# -------------------------------------------------------------------------------------------------- multi-process
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_process_step(tmp_path, *mode):
    """Run dist_scripts/gather_ntxent.py on 2 processes; returns what its rank 0 saved."""
    out_file = tmp_path / "dist.pt"
    script = str(Path(__file__).parent / "dist_scripts" / "gather_ntxent.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    proc = None
    for attempt in range(2):  # a second attempt (new port) only if the first one timed out
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), script, str(out_file), *mode]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=180)
            break
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # torchrun ...
            # ... and its workers, which torchrun may start in sessions of their own; they hold the pipes
            subprocess.run(["pkill", "-9", "-f", str(out_file)], check=False)
            stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stdout[-2000:] + stderr[-3000:]
    return torch.load(out_file, weights_only=True)


def _assert_same_step(dist_result, model):
    from dist_scripts import gather_ntxent

    x, ids = gather_ntxent.global_batch()
    out = model(x, ids_keep=ids)
    out.loss.backward()
    assert abs(dist_result["loss"].item() - out.loss.item()) < 1e-5
    # uniformity is over the pairs of both processes' views (each rank's rows x all rows, sums all-reduced)
    assert abs(dist_result["uniformity"].item() - out.uniformity.item()) < 1e-5
    checked = 0
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        # relative to the gradient's scale: the CLS gradient is ~1e4 here (CLS is initialised at std 1e-6 and then
        # LayerNorm-ed, which divides by its tiny spread), so float32 rounding alone is ~1e-3 in absolute terms
        diff = (dist_result["grads"][name] - p.grad).abs().max().item()
        assert diff <= 1e-5 * max(1.0, p.grad.abs().max().item()), (name, diff)
        checked += 1
    assert checked > 0
    return out


@pytest.mark.dist
def test_two_process_gather_equals_single_process(tmp_path):
    from dist_scripts import gather_ntxent  # tests/ is on the path of pytest's rootdir-relative test modules

    _assert_same_step(_two_process_step(tmp_path), gather_ntxent.build())


@pytest.mark.dist
def test_two_process_synchronized_batchnorm_equals_single_process(tmp_path):
    """Projector BatchNorms in training mode, synchronised (`synchronize_batchnorm`, gloo): loss and gradients of the
    2-process step equal one process's on the global batch, and both ranks end with the single process's running
    statistics. Without synchronisation each rank normalises with its own half's statistics: other gradients."""
    from dist_scripts import gather_ntxent

    result = _two_process_step(tmp_path, "sync_bn")
    model = gather_ntxent.build(sync_bn=True)  # one process: synchronisation is a no-op
    _assert_same_step(result, model)
    single = torch.cat([b.flatten().float() for _, b in model.projector.named_buffers()])
    # the check can fail: a rank's own half alone gives other running statistics
    half = gather_ntxent.build(sync_bn=True)
    x, ids = gather_ntxent.global_batch()
    half(x[:4], ids_keep=[i[:4] for i in ids])
    own = torch.cat([b.flatten().float() for _, b in half.projector.named_buffers()])
    assert (own - single).abs().max() > 1e-3
    for rank_buffers in result["projector_buffers"]:
        torch.testing.assert_close(rank_buffers, single, rtol=0, atol=1e-6)


def test_encoder_and_classifier_load_from_a_pretraining_folder_quietly(tmp_path):
    """The heads of a pre-training folder (projector, decoder, MAE / distillation / supervised heads) are expected
    extras when only the encoder or a classifier is loaded: not reported, and the encoder weights are exact."""
    config = tiny_pretrain_config(objective="contrastive+mae", supervised_weight=0.5, num_labels=3)
    torch.manual_seed(0)
    pretraining = AudioMosaicForPreTraining(config)
    pretraining.save_pretrained(tmp_path)
    encoder, info = AudioMosaicModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["unexpected_keys"] and not info["missing_keys"]
    for key, value in pretraining.audiomosaic.state_dict().items():
        assert torch.equal(encoder.state_dict()[key], value), key
    classifier, info = AudioMosaicForAudioClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["unexpected_keys"]
    assert set(info["missing_keys"]) == {"classifier.dense.weight", "classifier.dense.bias"}


# ----------------------------------------------------------------------------------------------- data epoch (resume)
class _Items(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        return {"id": f"item{index}"}


def test_epoch_reaches_persistent_dataloader_workers():
    """`set_epoch` in the main process is seen by a DataLoader worker that is already running (persistent workers
    keep their copy of the dataset and the collator from the first epoch)."""
    from modeling_audiomosaic.feature_extraction.collators import EpochTaggedDataset, PretrainingViewsCollator

    dataset = EpochTaggedDataset(_Items())
    collator = PretrainingViewsCollator(view_generator=None, crop_samples=0)

    def collate(examples):
        return [(ex["epoch"], collator.epoch) for ex in examples]

    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=1, persistent_workers=True,
                                         collate_fn=collate)
    seen = []
    for epoch in range(3):
        dataset.set_epoch(epoch)
        collator.set_epoch(epoch)
        seen.append({pair for batch in loader for pair in batch})
    assert seen == [{(0, 0)}, {(1, 1)}, {(2, 2)}]


def test_data_epoch_callback_uses_the_integer_part_of_the_epoch():
    """A run resumed at epoch 1.7 (Trainer restores `state.epoch` from the checkpoint) is in epoch 1: the dataset and
    the collator must hear 1 (rounding would say 2)."""
    from types import SimpleNamespace

    from modeling_audiomosaic.feature_extraction.collators import EpochTaggedDataset, PretrainingViewsCollator
    from modeling_audiomosaic.pretraining_trainer import DataEpochCallback

    trainer = SimpleNamespace(train_dataset=EpochTaggedDataset(_Items()),
                              data_collator=PretrainingViewsCollator(view_generator=None, crop_samples=0))
    callback = DataEpochCallback(trainer)
    for state_epoch, expected in ((0.0, 0), (1.0, 1), (1.7, 1), (2.999, 2)):
        callback.on_epoch_begin(None, SimpleNamespace(epoch=state_epoch), None)
        assert trainer.train_dataset.epoch == trainer.data_collator.epoch == expected
        assert trainer.train_dataset[0]["epoch"] == expected


def test_one_process_with_several_gpus_is_refused_instead_of_data_parallel(tmp_path):
    """`python run_pretrain.py` on a multi-GPU node: transformers sets `n_gpu` to the GPU count and would wrap the
    model in `nn.DataParallel` (a crash on the pre-training outputs, and negatives from one replica's slice only)."""
    from transformers import TrainingArguments

    from modeling_audiomosaic.pretraining_trainer import AudioMosaicPretrainingTrainer

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    model = AudioMosaicForPreTraining(tiny_pretrain_config())
    AudioMosaicPretrainingTrainer(model=model, args=args, train_dataset=[])  # one device: fine
    args._n_gpu = 4  # what TrainingArguments sets on a node with 4 visible GPUs and no distributed launch
    with pytest.raises(ValueError, match=r"sees 4 GPUs.*DataParallel.*--num_processes 4.*CUDA_VISIBLE_DEVICES"):
        AudioMosaicPretrainingTrainer(model=model, args=args, train_dataset=[])


def test_a_stream_drops_its_last_partial_batch(tmp_path):
    """transformers passes `drop_last` to map-style datasets only: a stream's pass would end with a partial batch, of
    a different size on each rank (the contrastive all-gathers need equal batches). The trainer's loader drops it."""
    import datasets
    from transformers import TrainingArguments

    from modeling_audiomosaic.pretraining_trainer import AudioMosaicPretrainingTrainer

    def rows():
        yield from ({"x": i} for i in range(10))

    stream = datasets.IterableDataset.from_generator(rows)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", per_device_train_batch_size=4,
                             dataloader_drop_last=True, max_steps=5, remove_unused_columns=False)
    trainer = AudioMosaicPretrainingTrainer(model=AudioMosaicForPreTraining(tiny_pretrain_config()), args=args,
                                            train_dataset=stream,
                                            data_collator=lambda items: {"x": torch.tensor([i["x"] for i in items])})
    assert [len(batch["x"]) for batch in trainer.get_train_dataloader()] == [4, 4]
    args.dataloader_drop_last = False
    assert [len(batch["x"]) for batch in trainer.get_train_dataloader()] == [4, 4, 2]


def test_multi_process_streaming_refuses_gradient_accumulation_and_epoch_strategies(tmp_path):
    """Each rank's pass over its shards ends at its own step: accumulation windows and epoch-end logging/saving
    would differ between ranks. Refused with the reason and the alternative; fine with one process or step-based."""
    from transformers import TrainingArguments

    from modeling_audiomosaic.stream_position import check_streaming_layout

    def args(**kw):
        return TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", max_steps=10, **kw)

    check_streaming_layout(args(gradient_accumulation_steps=4, save_strategy="epoch"), world_size=1)
    check_streaming_layout(args(save_strategy="steps", save_steps=5, logging_steps=5), world_size=8)
    with pytest.raises(ValueError, match=r"8 processes.*gradient_accumulation_steps 4 \(use a larger"):
        check_streaming_layout(args(gradient_accumulation_steps=4), world_size=8)
    with pytest.raises(ValueError, match=r"--logging_strategy epoch.*--save_strategy epoch \(use steps: --save_steps"):
        check_streaming_layout(args(logging_strategy="epoch", save_strategy="epoch"), world_size=2)


def test_a_process_whose_stream_pass_is_empty_stops_the_run_with_the_reason():
    """Trainer ends a pass that gave no batch by stopping that process alone (the others would wait for it in a
    collective): in a multi-process stream that is an error naming the process, the pass and the fix."""
    from types import SimpleNamespace

    from modeling_audiomosaic.stream_position import StreamPositionCallback

    callback = StreamPositionCallback(SimpleNamespace(train_dataset=None, data_collator=None))
    args = SimpleNamespace(world_size=2, process_index=1, per_device_train_batch_size=4, gradient_accumulation_steps=1)
    state, control = SimpleNamespace(global_step=0), SimpleNamespace()
    callback.on_train_begin(args, state, control)
    callback.on_epoch_begin(args, state, control)
    callback.on_step_end(args, state, control)
    callback.on_epoch_end(args, state, control)  # a pass with a batch: fine
    callback.on_epoch_begin(args, state, control)
    with pytest.raises(RuntimeError, match=r"process 1's pass 1 .* no full batch of 4 clips.*fewer processes"):
        callback.on_epoch_end(args, state, control)
    callback.on_epoch_end(SimpleNamespace(**{**vars(args), "world_size": 1}), state, control)  # alone: Trainer stops


def test_logged_metrics_average_their_finite_values(tmp_path):
    """Each metric is the mean of its finite values over the logging interval (a non-finite one is left out of the
    sum and of the count); the interval starts afresh after each log."""
    from types import SimpleNamespace

    from transformers import TrainingArguments

    from modeling_audiomosaic.pretraining_trainer import AudioMosaicPretrainingTrainer

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    trainer = AudioMosaicPretrainingTrainer(model=AudioMosaicForPreTraining(tiny_pretrain_config()), args=args,
                                            train_dataset=[])
    for accuracy, loss in ((0.5, 2.0), (float("nan"), 4.0), (0.25, float("inf"))):
        read = trainer._record_metrics(SimpleNamespace(loss=torch.tensor(loss), accuracy=torch.tensor(accuracy),
                                                       contrastive_loss=torch.tensor(loss), num_kept_tokens=(25, 33)))
        assert read == loss  # the loss comes back to the host with the metrics
    trainer.log({"loss": 1.0})
    logged = trainer.state.log_history[-1]
    assert logged["accuracy"] == 0.375 and logged["contrastive_loss"] == 3.0 and logged["kept_tokens_view1"] == 33
    assert logged["data_items_skipped"] == 0
    trainer._record_metrics(SimpleNamespace(loss=torch.tensor(1.0), accuracy=torch.tensor(1.0)))
    trainer.log({"loss": 1.0})
    assert trainer.state.log_history[-1]["accuracy"] == 1.0 and "contrastive_loss" not in trainer.state.log_history[-1]


def test_dwm_curriculum_on_a_stream_is_refused_unless_the_ratio_is_fixed():
    """DWM's hint ratio follows `epoch / epochs`; a stream has no epoch count (it would stay 1.0 all run)."""
    from modeling_audiomosaic.masking import dwm_hint_ratio
    from modeling_audiomosaic.stream_position import check_streaming_curriculum

    assert dwm_hint_ratio(399, 2**63 - 1, start_epoch=50) == 1.0  # what a stream's epoch count would give
    with pytest.raises(ValueError, match=r"dwm with --streaming.*dwm_abs_hint_ratio"):
        check_streaming_curriculum(tiny_pretrain_config(masking_mode="dwm"))
    check_streaming_curriculum(tiny_pretrain_config(masking_mode="dwm", dwm_abs_hint_ratio=0.5))
    check_streaming_curriculum(tiny_pretrain_config())  # the default tf masks have no curriculum
