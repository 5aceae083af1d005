# Copyright 2026 The AudioMosaic for Transformers authors. Licensed under the Apache License, Version 2.0.
"""AudioMosaic model configuration.

This file is copied next to saved models and loaded as remote code (``trust_remote_code=True``), so it imports only the
standard library and ``transformers``.
"""

from __future__ import annotations

import copy
from typing import Any

from transformers.configuration_utils import PreTrainedConfig

POOLING_MODES = ("mean", "cls", "mean_patches")
CLASSIFIER_HEADS = ("linear", "layer", "weighted_sum", "attentive")
MASKING_MODES = ("tf", "tt", "ff", "random", "dwm", "inverse_block", "none", "custom")
OBJECTIVES = ("contrastive", "mae", "distill")
DECODER_POSITION_EMBEDDINGS = ("1d", "2d")
DISTILL_ALIGNMENTS = ("bilinear", "pool")
DISTILL_DISTANCES = ("l2", "cosine")
SUPERVISED_LOSSES = ("bce", "ce")

# Released input sizes (frames x mel bins); see the feature extractor presets for the matching normalisation.
INPUT_PRESETS: dict[str, dict[str, Any]] = {
    "audioset": {"max_length": 1024},  # 10 s, 64 x 8 patches, AudioSet / pre-training / LTU
    "esc50": {"max_length": 512},  # 5 s, 32 x 8 patches
    "speechcommands": {"max_length": 128},  # 1 s (padded to 1.28 s), 8 x 8 patches
}

# Input presets whose released label set is multi-label (several labels per clip), with that set's size: a preset
# config with exactly these labels scores them with sigmoids (BCE), see `AudioMosaicConfig.from_preset`.
MULTI_LABEL_PRESETS: dict[str, int] = {"audioset": 527}  # the AudioSet ontology

# Encoder sizes. "base" is the released ViT-B/16; the smaller ones are for CPU experiments and tests.
SIZE_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"hidden_size": 192, "num_hidden_layers": 12, "num_attention_heads": 3, "intermediate_size": 768},
    "small": {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6, "intermediate_size": 1536},
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
}


class AudioMosaicConfig(PreTrainedConfig):
    r"""Configuration of an AudioMosaic encoder (a ViT over 16x16 patches of a log-mel spectrogram) and its heads.

    The defaults reproduce the released ViT-B/16 with 1024x128 inputs (AudioSet). Use [`~AudioMosaicConfig.from_preset`]
    for the other released input sizes (`"esc50"`: 512 frames, `"speechcommands"`: 128 frames) and for smaller
    encoders (`"tiny"`, `"small"`).

    Args:
        hidden_size (`int`, defaults to 768): width of the transformer.
        num_hidden_layers (`int`, defaults to 12): number of transformer blocks.
        num_attention_heads (`int`, defaults to 12): attention heads per block.
        intermediate_size (`int`, defaults to 3072): MLP hidden width.
        hidden_act (`str`, defaults to `"gelu"`): MLP activation (`"gelu"` is the exact erf GELU of the original).
        hidden_dropout_prob (`float`, defaults to 0.0): dropout after attention/MLP projections and on embeddings.
        attention_probs_dropout_prob (`float`, defaults to 0.0): dropout on attention probabilities.
        drop_path_rate (`float`, defaults to 0.1): stochastic depth; block `i` gets `drop_path_rate * i / (L - 1)`.
        initializer_range (`float`, defaults to 0.02): std of the truncated normal init of Linear/Conv weights.
        layer_norm_eps (`float`, defaults to 1e-6): epsilon of every LayerNorm in the encoder.
        max_length (`int`, defaults to 1024): number of spectrogram frames the position table covers (time axis).
        num_mel_bins (`int`, defaults to 128): number of mel bins (frequency axis).
        patch_size (`int`, defaults to 16): square, non-overlapping patch size (stride = patch size).
        qkv_bias (`bool`, defaults to `True`): bias of the fused query/key/value projection.
        proj_bias (`bool`, defaults to `True`): biases of the attention output projection and of both MLP layers.
        use_final_norm (`bool`, defaults to `False`): a LayerNorm after the last block (absent in the released
            classifier / pre-training models; present in the LTU audio encoder).
        pooling (`str`, defaults to `"mean"`): `"mean"` averages ALL tokens including CLS (the original), `"cls"` takes
            the CLS token, `"mean_patches"` averages patch tokens only (AudioMAE style).
        use_fc_norm (`bool`, defaults to `True`): LayerNorm applied after pooling (`pooler_output = fc_norm(pool(x))`).
        classifier_head (`str`, defaults to `"linear"`): head of [`AudioMosaicForAudioClassification`]: `"linear"`
            (pooled output -> Linear), `"layer"` (probe of block `probe_layer`), `"weighted_sum"` (softmax-weighted sum
            of the block outputs) or `"attentive"` (single-query attention over per-layer pooled vectors).
        probe_layer (`int`, defaults to -1): block index read by the `"layer"` head (negative counts from the end).
        attentive_probe_heads (`int`, defaults to 1): heads of the `"attentive"` head.
        classifier_dropout (`float`, defaults to 0.0): dropout before the classification Linear.
        token_drop_time (`float`, defaults to 0.0), token_drop_freq (`float`, defaults to 0.0): fine-tuning 2-D token
            drop of [`AudioMosaicForAudioClassification`] in training mode (the original uses 0.2 / 0.2: whole time
            columns and frequency bands of patches are dropped before the encoder); 0 disables it.
        projection_hidden_size (`int`, defaults to 512): hidden width of the contrastive projector (pre-training).
        projection_dim (`int`, defaults to 128): output width of the contrastive projector (pre-training).
        objective (`str`, defaults to `"contrastive"`): pre-training objective(s) of [`AudioMosaicForPreTraining`],
            `"+"`-joined: `"contrastive"` (AudioMosaic: NT-Xent between two masked views), `"mae"` (MSM-MAE: a decoder
            reconstructs the masked patches' log-mel pixels), `"distill"` (MAM-CLAP: a decoder regresses a frozen
            teacher's patch features at masked and visible positions), e.g. `"contrastive+mae"`.
        contrastive_weight, mae_weight, distill_weight (`float`, defaults to 1.0): weights of the objectives' losses.
        supervised_weight (`float`, defaults to 0.0): λ_cls of the SupMAM supervised branch (a Linear classifier on the
            pooled, `fc_norm`-ed features of every view, `num_labels` outputs); 0 disables it. Needs `labels`.
        supervised_loss (`str`, defaults to `"bce"`): `"bce"` (multi-label, AudioSet) or `"ce"` (single-label).
        num_views (`int`, *optional*): views per clip; defaults to 2 with the contrastive objective, else 1.
        masking_mode (`str`, *optional*): masks of the views: `"tf"` (view 0 time, view 1 frequency — the method),
            `"tt"`, `"ff"`, `"random"` (unstructured MAE masking, `mask_ratio`), `"dwm"` (dispersion-weighted,
            `mask_ratio`), `"inverse_block"` (EAT-style, `mask_ratio`), `"none"`, or `"custom"` (`view_masking`).
            Defaults to `"tf"` with the contrastive objective, else `"random"`.
        mask_grid (`str`, defaults to `"true"`): `"true"` masks real time columns / frequency bands; `"original"`
            reproduces the released code's swapped-grid masks (193 / 305 tokens for 1024 frames).
        mask_ratio_time (`float`, defaults to 0.6), mask_ratio_freq (`float`, defaults to 0.4): stripe mask ratios.
        mask_ratio (`float`, defaults to 0.75): ratio of the `"random"`, `"dwm"` and `"inverse_block"` modes (MSM-MAE
            0.75; M2D/DWM 0.7; EAT inverse block and MAM-CLAP 0.8).
        dwm_metric (`str`, defaults to `"mad"`): DWM patch weight (`"mad"` mean absolute deviation or `"variance"`).
        dwm_probabilistic (`bool`, defaults to `True`): sample the DWM masked set ∝ weight (`False`: top-k ablation).
        dwm_start_epoch (`int`, defaults to 50), dwm_hint_k (`float`, defaults to 2.0), dwm_abs_hint_ratio (`float`,
            defaults to -1.0): DWM hint curriculum `h = 1` before `dwm_start_epoch`, then `1 - (epoch / epochs) ** k`;
            `dwm_abs_hint_ratio >= 0` fixes `h` (see `masking.dwm_hint_ratio`; set per epoch by the Trainer callback).
        block_mask_size (`int`, defaults to 5), block_mask_prob_adjust (`float`, defaults to 0.07): inverse-block
            masking's square size and centre-count adjustment (EAT / data2vec 2.0 values).
        decoder_hidden_size (`int`, defaults to 384), decoder_num_hidden_layers (`int`, defaults to 4),
            decoder_num_attention_heads (`int`, defaults to 6), decoder_intermediate_size (`int`, defaults to 1536):
            the MAE / distillation decoder (MSM-MAE's `dec384d4b`; MAM-CLAP's unverified default is 512-d, 8 blocks).
        decoder_position_embedding (`str`, defaults to `"1d"`): fixed sin-cos decoder positions, `"1d"` over the
            token index (MSM-MAE) or `"2d"` on the (time, frequency) grid.
        norm_pix_loss (`bool`, defaults to `False`): MAE targets normalised per patch (mean / sqrt(var + 1e-6)).
        distill_teacher_hidden_size (`int`, *optional*): width of the teacher's features (required for `"distill"`).
        distill_teacher_layer (`int`, defaults to -1): teacher hidden state used as the target (-1: last).
        distill_alignment (`str`, defaults to `"bilinear"`): `"bilinear"` resizes the teacher's (time, freq) map to the
            student's patch grid; `"pool"` average-pools the student's predictions to the teacher's grid.
        distill_distance (`str`, defaults to `"l2"`): `"l2"` (MSE of L2-normalised features) or `"cosine"` (2 - 2 cos).
        distill_masked_weight (`float`, defaults to 1.0), distill_visible_weight (`float`, defaults to 1.0): weights
            of the masked-position and visible-position distillation terms.
        view_masking (`list`, *optional*): with `masking_mode="custom"`, one `[strategy, ratio]` per view, strategies
            from `modeling_audiomosaic.masking.MASKING_STRATEGIES`.
        temperature (`float`, defaults to 0.1): NT-Xent temperature (initial value if `learnable_temperature`).
        learnable_temperature (`bool`, defaults to `False`): learn τ (CLIP-style, clamped to [0.01, 1]).
        gather_distributed (`bool`, defaults to `True`): all-gather negatives across processes (with gradient).
        checkpointing_fraction (`float`, defaults to 1.0): with activation checkpointing on, the fraction of blocks
            (the first ones) that are checkpointed; the recipe uses 0.7 (8 of 12 blocks).

    Example:

    ```python
    >>> from modeling_audiomosaic import AudioMosaicConfig, AudioMosaicModel
    >>> config = AudioMosaicConfig.from_preset("esc50", size="small")
    >>> model = AudioMosaicModel(config)
    ```
    """

    model_type = "audiomosaic"

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    drop_path_rate: float = 0.1
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-6
    max_length: int = 1024
    num_mel_bins: int = 128
    patch_size: int = 16
    qkv_bias: bool = True
    proj_bias: bool = True
    use_final_norm: bool = False
    pooling: str = "mean"
    use_fc_norm: bool = True
    classifier_head: str = "linear"
    probe_layer: int = -1
    attentive_probe_heads: int = 1
    classifier_dropout: float = 0.0
    token_drop_time: float = 0.0
    token_drop_freq: float = 0.0
    projection_hidden_size: int = 512
    projection_dim: int = 128
    # ---- pre-training (AudioMosaicForPreTraining) ----
    objective: str = "contrastive"
    contrastive_weight: float = 1.0
    mae_weight: float = 1.0
    distill_weight: float = 1.0
    supervised_weight: float = 0.0
    supervised_loss: str = "bce"
    num_views: int | None = None
    masking_mode: str | None = None
    mask_grid: str = "true"
    mask_ratio_time: float = 0.6
    mask_ratio_freq: float = 0.4
    mask_ratio: float = 0.75
    view_masking: list | None = None
    temperature: float = 0.1
    learnable_temperature: bool = False
    gather_distributed: bool = True
    checkpointing_fraction: float = 1.0
    # ---- compared systems: DWM / inverse-block masking, MAE / distillation decoder ----
    dwm_metric: str = "mad"
    dwm_probabilistic: bool = True
    dwm_start_epoch: int = 50
    dwm_hint_k: float = 2.0
    dwm_abs_hint_ratio: float = -1.0
    block_mask_size: int = 5
    block_mask_prob_adjust: float = 0.07
    decoder_hidden_size: int = 384
    decoder_num_hidden_layers: int = 4
    decoder_num_attention_heads: int = 6
    decoder_intermediate_size: int = 1536
    decoder_position_embedding: str = "1d"
    norm_pix_loss: bool = False
    distill_teacher_hidden_size: int | None = None
    distill_teacher_layer: int = -1
    distill_alignment: str = "bilinear"
    distill_distance: str = "l2"
    distill_masked_weight: float = 1.0
    distill_visible_weight: float = 1.0

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        self._validate_audiomosaic()

    # ------------------------------------------------------------------ helpers
    def _validate_audiomosaic(self) -> None:
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads})."
            )
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"pooling={self.pooling!r} is not supported; choose one of {POOLING_MODES}.")
        if self.classifier_head not in CLASSIFIER_HEADS:
            raise ValueError(
                f"classifier_head={self.classifier_head!r} is not supported; choose one of {CLASSIFIER_HEADS}."
            )
        for name in ("max_length", "num_mel_bins"):
            value = getattr(self, name)
            if value % self.patch_size != 0:
                raise ValueError(f"{name} ({value}) must be a multiple of patch_size ({self.patch_size}).")
        if not -self.num_hidden_layers <= self.probe_layer < self.num_hidden_layers:
            raise ValueError(
                f"probe_layer={self.probe_layer} is out of range for {self.num_hidden_layers} hidden layers."
            )
        unknown = [name for name in self.objectives if name not in OBJECTIVES]
        if unknown or not self.objectives or len(set(self.objectives)) != len(self.objectives):
            raise ValueError(
                f"objective={self.objective!r} is not supported; join one or more of {OBJECTIVES} with '+' "
                f"(e.g. 'contrastive+mae')."
            )
        if self.masking_mode is not None and self.masking_mode not in MASKING_MODES:
            raise ValueError(f"masking_mode={self.masking_mode!r} is not supported; choose one of {MASKING_MODES}.")
        if self.num_views is not None and self.num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {self.num_views}.")
        if "contrastive" in self.objectives and self.pretraining_num_views != 2:
            raise ValueError(f"the contrastive objective needs num_views=2, got {self.num_views}.")
        for name, value, allowed in (
            ("supervised_loss", self.supervised_loss, SUPERVISED_LOSSES),
            ("decoder_position_embedding", self.decoder_position_embedding, DECODER_POSITION_EMBEDDINGS),
            ("distill_alignment", self.distill_alignment, DISTILL_ALIGNMENTS),
            ("distill_distance", self.distill_distance, DISTILL_DISTANCES),
            ("dwm_metric", self.dwm_metric, ("mad", "variance")),
        ):
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not supported; choose one of {allowed}.")
        for name in ("contrastive_weight", "mae_weight", "distill_weight", "supervised_weight",
                     "distill_masked_weight", "distill_visible_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.decoder_hidden_size % self.decoder_num_attention_heads != 0:
            raise ValueError(
                f"decoder_hidden_size ({self.decoder_hidden_size}) must be divisible by decoder_num_attention_heads "
                f"({self.decoder_num_attention_heads})."
            )
        if "distill" in self.objectives and not self.distill_teacher_hidden_size:
            raise ValueError(
                "the distill objective needs distill_teacher_hidden_size (the width of the teacher's features)."
            )
        if self.resolved_masking_mode == "custom" and not self.view_masking:
            raise ValueError('masking_mode="custom" needs view_masking=[[strategy, ratio], ...] (one per view).')
        if self.mask_grid not in ("true", "original"):
            raise ValueError(f'mask_grid must be "true" or "original", got {self.mask_grid!r}.')
        if not 0.0 <= self.checkpointing_fraction <= 1.0:
            raise ValueError(f"checkpointing_fraction must be in [0, 1], got {self.checkpointing_fraction}.")
        if self.hidden_size % self.attentive_probe_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by attentive_probe_heads "
                f"({self.attentive_probe_heads})."
            )

    @property
    def objectives(self) -> tuple[str, ...]:
        """The pre-training objectives named by `objective` (e.g. `("contrastive", "mae")`)."""
        return tuple(part.strip() for part in str(self.objective).split("+") if part.strip())

    @property
    def pretraining_num_views(self) -> int:
        """Views per clip in pre-training: `num_views`, else 2 for the contrastive objective and 1 otherwise."""
        if self.num_views is not None:
            return int(self.num_views)
        if self.masking_mode == "custom" and self.view_masking and "contrastive" not in self.objectives:
            return len(self.view_masking)
        return 2 if "contrastive" in self.objectives else 1

    @property
    def resolved_masking_mode(self) -> str:
        """`masking_mode`, or its default: `"tf"` with the contrastive objective, `"random"` otherwise."""
        if self.masking_mode is not None:
            return self.masking_mode
        return "tf" if "contrastive" in self.objectives else "random"

    def view_masking_specs(self) -> list[tuple[str, float]]:
        """The `(strategy, ratio)` of each pre-training view, from `masking_mode` / `mask_grid` / ratios."""
        views = self.pretraining_num_views
        prefix = "original_" if self.mask_grid == "original" else ""
        time = (prefix + "time", self.mask_ratio_time)
        freq = (prefix + "freq", self.mask_ratio_freq)
        modes = {
            "tf": [time, freq],
            "tt": [time, time],
            "ff": [freq, freq],
            "random": [("random", self.mask_ratio)] * views,
            "dwm": [("dwm", self.mask_ratio)] * views,
            "inverse_block": [("inverse_block", self.mask_ratio)] * views,
            "none": [("none", 0.0)] * views,
        }
        mode = self.resolved_masking_mode
        if mode == "custom":
            specs = [(str(name), ratio) for name, ratio in self.view_masking]
            if len(specs) != views:
                raise ValueError(f"view_masking has {len(specs)} entries for {views} views.")
            return specs
        if mode in ("tf", "tt", "ff"):  # the pair, repeated if more views are asked for
            return [modes[mode][index % 2] for index in range(views)]
        return modes[mode]

    @property
    def num_time_patches(self) -> int:
        """Number of patches along time covered by the position table (`max_length // patch_size`)."""
        return self.max_length // self.patch_size

    @property
    def num_freq_patches(self) -> int:
        """Number of patches along frequency (`num_mel_bins // patch_size`)."""
        return self.num_mel_bins // self.patch_size

    @property
    def num_patches(self) -> int:
        """Patch tokens for a full-length input (CLS excluded). Tokens are time-major: `index = t * F + f`."""
        return self.num_time_patches * self.num_freq_patches

    @classmethod
    def from_preset(cls, input_preset: str = "audioset", size: str = "base", **kwargs: Any) -> "AudioMosaicConfig":
        """Build a config from a released input size and an encoder size.

        `problem_type` decides how [`AudioMosaicForAudioClassification`] is trained and how the audio-classification
        pipeline scores it: `"multi_label_classification"` (BCE loss, independent sigmoid scores: a clip may carry
        several labels) or `"single_label_classification"` (cross-entropy, softmax over the labels: exactly one label
        per clip). If you do not pass `problem_type`, a preset given its own multi-label label set gets
        `"multi_label_classification"`: `"audioset"` with the 527 AudioSet labels (`id2label` or `num_labels` of
        size 527, e.g. `id2label=load_label_file("audioset")`). Any other labels keep the transformers default (no
        `problem_type`: the pipeline uses softmax, and the first loss call infers the type from the labels: integer
        class ids -> single-label, multi-hot rows -> multi-label), e.g. the 2-class EnvSDD heads on the `"audioset"`
        input size, or ESC-50. Pass `problem_type` explicitly to choose; note that the original
        Speech Commands fine-tunes were trained with BCE on one-hot targets (`problem_type=
        "multi_label_classification"` reproduces them), although each clip has a single keyword.

        Args:
            input_preset: `"audioset"` (1024 frames), `"esc50"` (512) or `"speechcommands"` (128).
            size: `"tiny"`, `"small"` or `"base"` (the released ViT-B/16).
            **kwargs: any other config field, overriding the presets.
        """
        if input_preset not in INPUT_PRESETS:
            raise ValueError(f"Unknown input preset {input_preset!r}; choose one of {sorted(INPUT_PRESETS)}.")
        if size not in SIZE_PRESETS:
            raise ValueError(f"Unknown size preset {size!r}; choose one of {sorted(SIZE_PRESETS)}.")
        values = {**copy.deepcopy(SIZE_PRESETS[size]), **INPUT_PRESETS[input_preset], **kwargs}
        num_labels = len(kwargs["id2label"]) if kwargs.get("id2label") else kwargs.get("num_labels")
        if "problem_type" not in kwargs and num_labels and MULTI_LABEL_PRESETS.get(input_preset) == int(num_labels):
            values["problem_type"] = "multi_label_classification"
        return cls(**values)


__all__ = ["AudioMosaicConfig", "INPUT_PRESETS", "MULTI_LABEL_PRESETS", "SIZE_PRESETS", "POOLING_MODES",
           "CLASSIFIER_HEADS", "OBJECTIVES"]
