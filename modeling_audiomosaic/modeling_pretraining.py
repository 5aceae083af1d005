# Copyright 2026 The AudioMosaic for Transformers authors. Licensed under the Apache License, Version 2.0.
"""AudioMosaic pre-training model: masked views -> shared encoder -> objective heads -> one loss.

One framework for the method and the compared systems it is compared with (masking strategy x objective x supervision):

* `contrastive` (AudioMosaic): projector + NT-Xent between two masked views (negatives all-gathered with gradient);
* `mae` (MSM-MAE): a light decoder with mask tokens reconstructs the masked patches' log-mel pixels (MSE);
* `distill` (MAM-CLAP): the decoder regresses a frozen teacher's patch features at masked and visible positions;
* `supervised_weight > 0` (SupMAM): a classifier on the pooled features, trained with the clip labels.

The masks of every view come from `modeling_audiomosaic.masking` (any strategy with any objective); the encoder is
always the same `AudioMosaicModel`, so every checkpoint loads into `AudioMosaicModel` and
`AudioMosaicForAudioClassification`.

Imports only torch, transformers and sibling modules (copied next to saved models as remote code).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.modeling_outputs import ModelOutput

from .configuration_audiomosaic import AudioMosaicConfig
from .distributed import sum_with_grad
from .distributed import world_size as distributed_world_size
from .masking import apply_masking, dispersion_weights, dwm_hint_ratio, get_masking_strategy, mask_from_ids_keep
from .modeling_audiomosaic import AUTO_MAP, AudioMosaicModel, AudioMosaicPreTrainedModel, pool_tokens
from .modeling_decoder import AudioMosaicDecoder
from .objective_contrastive import (
    LearnableTemperature,
    alignment_uniformity,
    local_intrinsic_dimension,
    nt_xent_loss,
)
from .objective_distill import DistillationTeacher, distillation_loss
from .objective_mae import mae_reconstruction_loss, patchify
from .objective_supervised import supervised_loss

PRETRAINING_AUTO_MAP = {**AUTO_MAP, "AutoModelForPreTraining": "modeling_pretraining.AudioMosaicForPreTraining"}


@dataclass
class AudioMosaicForPreTrainingOutput(ModelOutput):
    """Output of [`AudioMosaicForPreTraining`].

    Args:
        loss (`torch.FloatTensor` of shape `()`): weighted sum of the objectives' losses (+ λ_cls x supervised).
        contrastive_loss, mae_loss, distill_loss, supervised_loss (`torch.FloatTensor` of shape `()`): each term
            (unweighted; `None` when the objective is off); MAE / distillation / supervised terms average the views.
        distill_loss_masked, distill_loss_visible (`torch.FloatTensor` of shape `()`): the two distillation terms.
        z (`torch.FloatTensor` of shape `(num_views, batch_size, projection_dim)`): projector outputs (contrastive).
        pooled_output (`torch.FloatTensor` of shape `(num_views, batch_size, hidden_size)`): `fc_norm(pool(tokens))`.
        reconstruction (`torch.FloatTensor` of shape `(num_views, batch_size, num_patches, patch_size**2)`): MAE
            pixel predictions (in the normalised target space if `norm_pix_loss`); `None` with
            `return_reconstruction=False`.
        logits (`torch.FloatTensor` of shape `(num_views, batch_size, num_labels)`): supervised branch.
        accuracy (`torch.FloatTensor` of shape `()`): contrastive top-1 accuracy of picking the positive.
        alignment, uniformity (`torch.FloatTensor` of shape `()`): Wang & Isola metrics of the normalised `z`.
        lid_mean, lid_var (`torch.FloatTensor` of shape `()`): local intrinsic dimension of the pooled features.
        temperature (`torch.FloatTensor` of shape `()`): the temperature used.
        num_kept_tokens (`tuple(int)`): tokens (CLS included) each view's encoder saw.
        ids_keep (`tuple(torch.LongTensor)`): kept patch indices of each view (`None` for an unmasked view).
        mask (`tuple(torch.BoolTensor)`): `(batch_size, num_patches)` dropped patches of each view (`None` if unmasked).
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states=True`): the
            encoder's embedding output and every block's output on each (masked) view, `num_hidden_layers + 1` tensors
            of shape `(num_views, batch_size, max_tokens, hidden_size)`: entry `[l][v]` is what
            [`AudioMosaicModel`] returns as `hidden_states[l]` for view `v` with that view's `ids_keep`. Views that
            keep fewer tokens than the longest (e.g. time vs frequency masks) are zero-padded at the end of the token
            axis; `num_kept_tokens[v]` is view `v`'s real length (see
            [`~AudioMosaicForPreTrainingOutput.view_hidden_states`]).
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned with `output_attentions=True`): attention
            probabilities of every block on each view, `num_hidden_layers` tensors of shape `(num_views, batch_size,
            num_heads, max_tokens, max_tokens)`, zero-padded like `hidden_states`.
    """

    loss: torch.FloatTensor | None = None
    contrastive_loss: torch.FloatTensor | None = None
    mae_loss: torch.FloatTensor | None = None
    distill_loss: torch.FloatTensor | None = None
    distill_loss_masked: torch.FloatTensor | None = None
    distill_loss_visible: torch.FloatTensor | None = None
    supervised_loss: torch.FloatTensor | None = None
    z: torch.FloatTensor | None = None
    pooled_output: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    accuracy: torch.FloatTensor | None = None
    alignment: torch.FloatTensor | None = None
    uniformity: torch.FloatTensor | None = None
    lid_mean: torch.FloatTensor | None = None
    lid_var: torch.FloatTensor | None = None
    temperature: torch.FloatTensor | None = None
    num_kept_tokens: tuple[int, ...] | None = None
    ids_keep: tuple[torch.LongTensor | None, ...] | None = None
    mask: tuple[torch.BoolTensor | None, ...] | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None

    def view_hidden_states(self, view: int) -> tuple[torch.FloatTensor, ...]:
        """View `view`'s hidden states without padding: `num_hidden_layers + 1` tensors `(batch, tokens, hidden)`."""
        if self.hidden_states is None:
            raise ValueError("no hidden states in this output: call the model with output_hidden_states=True.")
        length = self.num_kept_tokens[view]
        return tuple(layer[view, :, :length] for layer in self.hidden_states)

    def view_attentions(self, view: int) -> tuple[torch.FloatTensor, ...]:
        """View `view`'s attention probabilities without padding: `num_hidden_layers` tensors `(batch, heads, tokens,
        tokens)`."""
        if self.attentions is None:
            raise ValueError("no attentions in this output: call the model with output_attentions=True.")
        length = self.num_kept_tokens[view]
        return tuple(layer[view, :, :, :length, :length] for layer in self.attentions)


def stack_views(per_view: list[torch.Tensor], token_dims: tuple[int, ...]) -> torch.Tensor:
    """Stack one tensor per view on a new leading axis, zero-padding the `token_dims` (negative dimensions) of the views
    that keep fewer tokens to the longest view's length."""
    longest = max(tensor.shape[token_dims[0]] for tensor in per_view)
    padded = []
    for tensor in per_view:
        pad = [0, 0] * tensor.ndim  # F.pad order: last dimension first, (before, after) each
        for dim in token_dims:
            pad[2 * (-dim - 1) + 1] = longest - tensor.shape[dim]
        padded.append(nn.functional.pad(tensor, pad) if any(pad) else tensor)
    return torch.stack(padded)


class ProjectorLinear(nn.Linear):
    """`nn.Linear` that computes in its input's dtype, casting its weights on the fly (a no-op when they match).

    Under FSDP2 mixed precision (`MixedPrecisionPolicy(param_dtype=bfloat16)`, accelerate's FSDP with
    `mixed_precision: bf16`) the gathered weights are bf16 while the contrastive head computes in fp32
    (`AudioMosaicForPreTraining.project`).
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(input.dtype)
        return nn.functional.linear(input, self.weight.to(input.dtype), bias)


class ProjectorBatchNorm1d(nn.BatchNorm1d):
    """`nn.BatchNorm1d` of the contrastive projector: optionally synchronised over processes, and dtype-robust.

    * ``synchronize = True`` (set by `AudioMosaicForPreTraining.synchronize_batchnorm`; run_pretrain.py does it for
      multi-process training): in training mode the batch statistics are those of the global batch, all processes
      together, as torch's `SyncBatchNorm` (the original's choice on GPUs), but on any backend (gloo on CPU too)
      and under FSDP2. The sums are all-reduced differentiably, so each process's gradient includes the other
      processes' losses through the shared statistics; the running statistics stay equal on every process.
    * FSDP2 mixed precision casts parameters, not buffers: the gathered weight and bias are bf16 while the running
      statistics stay fp32, which `F.batch_norm` refuses. The head computes in the running statistics' dtype
      (`AudioMosaicForPreTraining.project`) and the affine parameters are cast to the input's dtype here.

    Unsynchronised with matching dtypes (one process, eval mode) this is `nn.BatchNorm1d.forward` itself.
    """

    synchronize: bool = False

    def _momentum_for_this_batch(self) -> float:
        """`nn.BatchNorm1d`'s exponential-average factor; counts the batch as its forward does in training mode."""
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked)
        return momentum

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        synchronized = self.synchronize and self.training and distributed_world_size() > 1
        if not synchronized and (self.weight is None or self.weight.dtype == input.dtype):
            return super().forward(input)
        self._check_input_dim(input)
        weight = None if self.weight is None else self.weight.to(input.dtype)
        bias = None if self.bias is None else self.bias.to(input.dtype)
        momentum = self._momentum_for_this_batch()
        if synchronized:
            return self._synchronized_forward(input, weight, bias, momentum)
        batch_statistics = self.training or (self.running_mean is None and self.running_var is None)
        keep_running = not self.training or self.track_running_stats
        return nn.functional.batch_norm(
            input,
            self.running_mean if keep_running else None,
            self.running_var if keep_running else None,
            weight,
            bias,
            batch_statistics,
            momentum,
            self.eps,
        )

    def _synchronized_forward(self, input, weight, bias, momentum: float) -> torch.Tensor:
        # traced by torch.compile, collectives included (as the contrastive all-gather): an eager island here would
        # break the graph inside `forward`'s per-view loop, where dynamo cannot resume, and run the whole forward
        # after the masking eagerly (21 graphs per step instead of 2 in the paper recipe's multi-GPU runs)
        if input.ndim != 2 or input.shape[0] == 0:
            raise ValueError(
                f"the projector's BatchNorm takes non-empty (batch, features) inputs; got {tuple(input.shape)}."
            )
        # the global count stays on the device (no host sync); every rank has >= 1 row, so it is >= 2
        count = torch.full((1,), float(input.shape[0]), dtype=torch.float32, device=input.device)
        torch.distributed.all_reduce(count)
        count = count.to(input.dtype)
        mean = sum_with_grad(input.sum(dim=0)) / count  # two passes: no E[x^2] - E[x]^2 cancellation
        centered = input - mean
        var = sum_with_grad((centered * centered).sum(dim=0)) / count  # biased, as batch_norm normalises with
        out = centered * torch.rsqrt(var + self.eps)
        if weight is not None:
            out = out * weight + bias
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.running_mean.mul_(1 - momentum).add_(mean.detach().to(self.running_mean.dtype), alpha=momentum)
                unbiased = var.detach() * count / (count - 1)
                self.running_var.mul_(1 - momentum).add_(unbiased.to(self.running_var.dtype), alpha=momentum)
        return out


class BatchNorm1dNoBias(ProjectorBatchNorm1d):
    """BatchNorm1d whose bias stays at 0 (kept in the state dict, never trained), as the original projector's last
    BN."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.bias.requires_grad = False


def build_projector(config: AudioMosaicConfig) -> nn.Sequential:
    """SimCLR projector: Linear -> BN -> ReLU -> Linear -> BN(no bias); 768 -> 512 -> 128 for the base model.

    The module indices (`projector.0/1/3/4`) match the original state-dict keys. The layers compute in their input's
    dtype (see `ProjectorLinear`, `ProjectorBatchNorm1d`).
    """
    return nn.Sequential(
        ProjectorLinear(config.hidden_size, config.projection_hidden_size, bias=False),
        ProjectorBatchNorm1d(config.projection_hidden_size),
        nn.ReLU(inplace=True),
        ProjectorLinear(config.projection_hidden_size, config.projection_dim, bias=False),
        BatchNorm1dNoBias(config.projection_dim),
    )


class AudioMosaicForPreTraining(AudioMosaicPreTrainedModel):
    """AudioMosaic pre-training with any combination of objectives (see the module docstring).

    Each clip gives `config.pretraining_num_views` spectrograms (differently augmented waveforms; 2 for the contrastive
    objective). View `v` is masked by `config.view_masking_specs()[v]` (training mode, or `apply_masking=True`); the
    dropped patch tokens never enter the encoder. Then, per `config.objective`:

    * `contrastive`: the projected mean-pooled embeddings of a clip's two views are pulled together against every other
      view in the (all-gathered) batch (NT-Xent);
    * `mae`: `decoder` + `mae_head` predict every patch's pixels; MSE on the masked patches of each view;
    * `distill`: `decoder` + `distill_head` predict the frozen teacher's features (attach it with
      [`~AudioMosaicForPreTraining.set_distillation_teacher`]; it is not part of the checkpoint) at masked and visible
      positions;
    * `supervised_weight > 0`: `supervised_head` classifies the pooled features of every view (needs `labels`).

    The DWM hint curriculum is driven by [`~AudioMosaicForPreTraining.set_masking_epoch`] (called every epoch by the
    pre-training Trainer); until then DWM masks at hint ratio 1 (plain random masking), as at epoch 0.

    The encoder lives under `self.audiomosaic` (the shared `base_model_prefix`), so a checkpoint of this model loads
    into [`AudioMosaicModel`] and [`AudioMosaicForAudioClassification`] (the pretrained `fc_norm` included).
    """

    accepts_loss_kwargs = False  # per-batch mean loss; do not let Trainer rescale it by num_items_in_batch
    _full_auto_map = PRETRAINING_AUTO_MAP

    def __init__(self, config: AudioMosaicConfig) -> None:
        super().__init__(config)
        objectives = config.objectives
        self.audiomosaic = AudioMosaicModel(config)
        self.projector = build_projector(config) if "contrastive" in objectives else None
        self.learnable_temperature = (
            LearnableTemperature(config.temperature)
            if config.learnable_temperature and "contrastive" in objectives
            else None
        )
        needs_decoder = "mae" in objectives or "distill" in objectives
        self.decoder = AudioMosaicDecoder(config) if needs_decoder else None
        self.mae_head = (
            nn.Linear(config.decoder_hidden_size, config.patch_size**2) if "mae" in objectives else None
        )
        self.distill_head = (
            nn.Linear(config.decoder_hidden_size, config.distill_teacher_hidden_size)
            if "distill" in objectives
            else None
        )
        self.supervised_head = (
            nn.Linear(config.hidden_size, config.num_labels) if config.supervised_weight > 0 else None
        )
        self._teacher: list[DistillationTeacher] = []  # a list: the frozen teacher is not a submodule / not saved
        self.masking_hint_ratio = dwm_hint_ratio(
            0, 1, config.dwm_start_epoch, config.dwm_hint_k, config.dwm_abs_hint_ratio
        )
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, AudioMosaicDecoder):
            init.normal_(module.mask_token, std=0.02)
            # a non-persistent buffer: `from_pretrained` builds the model on the meta device and leaves it empty
            # (under FSDP's RAM-efficient loading, zeros on the other ranks); refilled here from the config
            init.copy_(module.position_embeddings, module.position_table())

    # ------------------------------------------------------------------ teacher / curriculum
    def set_distillation_teacher(self, teacher: nn.Module | DistillationTeacher | None, **teacher_kwargs) -> None:
        """Attach the frozen teacher of the `distill` objective (any model [`DistillationTeacher`] can read).

        The teacher is kept outside the module tree: it is neither trained, nor saved, nor wrapped by DDP/FSDP.
        """
        if teacher is None:
            self._teacher = []
            return
        if not isinstance(teacher, DistillationTeacher):
            teacher = DistillationTeacher(teacher, layer=self.config.distill_teacher_layer, **teacher_kwargs)
        if self.config.distill_teacher_hidden_size != teacher.feature_dim:
            raise ValueError(
                f"the teacher's features are {teacher.feature_dim}-d but config.distill_teacher_hidden_size is "
                f"{self.config.distill_teacher_hidden_size}."
            )
        self._teacher = [teacher]

    @property
    def distillation_teacher(self) -> DistillationTeacher | None:
        return self._teacher[0] if self._teacher else None

    def set_masking_epoch(self, epoch: int, total_epochs: int) -> float:
        """Set the DWM hint ratio for `epoch` (0-based) of `total_epochs` from the config's curriculum; returns it."""
        config = self.config
        self.masking_hint_ratio = dwm_hint_ratio(
            epoch, total_epochs, config.dwm_start_epoch, config.dwm_hint_k, config.dwm_abs_hint_ratio
        )
        return self.masking_hint_ratio

    def get_temperature(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The NT-Xent temperature τ as a 0-dim tensor: the learnable one, or the config's made on `device` (a fill,
        not a copy from the host: a blocking copy would make a GPU step wait for the device)."""
        if self.learnable_temperature is not None:
            return self.learnable_temperature()
        return torch.full((), self.config.temperature, device=device)

    def synchronize_batchnorm(self, enabled: bool = True) -> None:
        """Make the projector's BatchNorms use the statistics of the global batch (all processes) in training mode,
        as `SyncBatchNorm` does, on any backend and under FSDP2 (see `ProjectorBatchNorm1d`). A no-op in a single
        process; not saved with the model."""
        for module in self.modules():
            if isinstance(module, ProjectorBatchNorm1d):
                module.synchronize = enabled

    def parameters_outside_the_loss(self) -> list[str]:
        """Names of the trainable parameters that the configured objectives never reach in a training step: the
        encoder's `pooler.fc_norm` for `mae` / `distill` without the contrastive objective or SupMAM (their decoders
        read the tokens, not the pooled features), and the decoder's `mask_token` when no view is masked (it fills
        the dropped positions). Empty for the contrastive objective with its masks.

        Such parameters get no gradient, which DDP must be told (``find_unused_parameters=True``, an extra traversal
        of the autograd graph every step); otherwise its second step fails with "Expected to have finished reduction
        in the prior iteration". `AudioMosaicPretrainingTrainer` sets `ddp_find_unused_parameters` from this list
        when it is left unset (transformers would turn it off under activation checkpointing and on otherwise).
        """
        unused = []
        if "contrastive" not in self.config.objectives and self.supervised_head is None:
            unused.append("audiomosaic.pooler.")
        if self.decoder is not None and all(name == "none" for name, _ in self.config.view_masking_specs()):
            unused.append("decoder.mask_token")
        return [name for name, param in self.named_parameters()
                if param.requires_grad and any(name.startswith(prefix) for prefix in unused)]

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        """The contrastive projector on `fc_norm`-ed pooled features, always in fp32 (autocast off).

        Under bf16 autocast the projector's Linear layers would run in bf16 and its BatchNorms would normalise bf16
        activations (batch statistics of 8-bit-mantissa values, the last BN's output feeding NT-Xent directly). The
        head is ~1 MFLOP per view against ~246 GFLOP per clip for two masked ViT-B views, forward + backward (counted
        by run_scripts/gpu_check.py), so fp32 costs nothing measurable. Without autocast this is exactly
        `self.projector(pooled)`; a model cast to bf16 as a whole (`model.to(torch.bfloat16)`) stays in bf16.

        The head computes in the dtype of its BatchNorms' running statistics: fp32, unless the whole model was cast.
        Under FSDP2 mixed precision the gathered weights are bf16 while buffers stay fp32; the projector's layers
        cast their weights to the input's dtype, so the head still runs in fp32 there (on bf16-rounded weights).
        """
        with torch.autocast(device_type=pooled.device.type, enabled=False):
            return self.projector(pooled.to(self.projector[1].running_mean.dtype))

    # ------------------------------------------------------------------ masking
    def _split_views(self, input_values: torch.Tensor) -> list[torch.Tensor]:
        num_views = self.config.pretraining_num_views
        if input_values.ndim == 4 and input_values.shape[1] == num_views:
            return list(input_values.unbind(dim=1))
        if input_values.ndim == 3 or (input_values.ndim == 4 and input_values.shape[1] == 1):
            spec = input_values if input_values.ndim == 3 else input_values[:, 0]
            return [spec] * num_views  # one spectrogram for all views: views differ only by their masks
        raise ValueError(
            f"input_values must be (batch, {num_views} views, frames, mel_bins) or one spectrogram per clip "
            f"(batch, frames, mel_bins); got {tuple(input_values.shape)}."
        )

    def masking_options(self, strategy: str) -> dict:
        """Extra keyword arguments of a masking strategy, from the config (and the DWM curriculum state)."""
        if strategy == "dwm":
            return {"hint_ratio": self.masking_hint_ratio, "probabilistic": self.config.dwm_probabilistic}
        if strategy == "inverse_block":
            return {"block_size": self.config.block_mask_size, "mask_prob_adjust": self.config.block_mask_prob_adjust}
        return {}

    @torch.compiler.disable  # random draws from a torch.Generator and data-dependent sampling: eager, cheap
    def draw_masks(self, views, generator: torch.Generator | None = None) -> list:
        """`mask_view` for every view, in order, in one call (so that torch.compile breaks its graph once, outside
        the per-view loop)."""
        return [self.mask_view(spec, view, generator) for view, spec in enumerate(views)]

    @torch.compiler.disable
    def mask_view(self, spec: torch.Tensor, view: int, generator: torch.Generator | None = None):
        """Draw view `view`'s mask for spectrograms `spec` (B, T, F) → `MaskingOutput` (or `None` if unmasked)."""
        strategy, ratio = self.config.view_masking_specs()[view]
        if strategy == "none":
            return None
        frames = spec.shape[-2]
        grid = (frames // self.config.patch_size, self.config.num_freq_patches)
        weights = None
        options = self.masking_options(strategy)
        # DWM at hint ratio >= 1 (the curriculum's first epochs) is plain random masking: no weights to compute
        unread = strategy == "dwm" and options["hint_ratio"] >= 1
        if getattr(get_masking_strategy(strategy), "uses_patch_weights", False) and not unread:
            weights = dispersion_weights(spec.detach(), self.config.patch_size, self.config.dwm_metric)
        return apply_masking(
            strategy, grid, spec.shape[0], ratio, patch_weights=weights, generator=generator, device=spec.device,
            **options,
        )

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        teacher_inputs: dict | None = None,
        ids_keep: list[torch.LongTensor | None] | None = None,
        apply_masking: bool | None = None,
        generator: torch.Generator | None = None,
        return_loss: bool = True,
        return_reconstruction: bool = True,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> AudioMosaicForPreTrainingOutput | tuple:
        r"""
        Args:
            input_values (`torch.FloatTensor` of shape `(batch_size, num_views, frames, num_mel_bins)`): the views'
                normalised log-mel features (e.g. from `modeling_audiomosaic.ContrastiveViewGenerator`); a
                `(batch_size, frames, num_mel_bins)` tensor is used for every view.
            attention_mask (`torch.LongTensor` of shape `(batch_size, frames)`, *optional*): frame padding mask.
            labels (`torch.Tensor`, *optional*): clip labels of the supervised branch: `(batch_size, num_labels)`
                multi-hot (`supervised_loss="bce"`) or `(batch_size,)` class indices (`"ce"`); -100 marks unlabelled.
            teacher_inputs (`dict`, *optional*): inputs of a distillation teacher that cannot read the spectrogram
                (e.g. CLAP's `input_features`); an AudioMosaic teacher reads view 0 unmasked.
            ids_keep (`list` of `torch.LongTensor`, *optional*): explicit kept patch indices per view (overrides the
                configured masking; `None` entries mean no masking).
            apply_masking (`bool`, *optional*): mask even in eval mode (default: mask only in training mode, as the
                original).
            generator (`torch.Generator`, *optional*): source of randomness for the masks.
            return_loss (`bool`, defaults to `True`): compute the losses and metrics.
            return_reconstruction (`bool`, defaults to `True`): return the MAE pixel predictions (`reconstruction`);
                `False` leaves it `None` (the losses are unchanged). Training never reads it, so the pre-training
                Trainer passes `False` in training: no stacked `(views, batch, patches, patch_size**2)` copy and, under
                mixed precision, no float32 copy of it by accelerate's output conversion.
            output_attentions (`bool`, *optional*): return every view's attention probabilities (computed eagerly for
                that call); defaults to `config.output_attentions`.
            output_hidden_states (`bool`, *optional*): return every view's embedding output and block outputs;
                defaults to `config.output_hidden_states`.
            kwargs: passed to the encoder (its attention function), as [`AudioMosaicForAudioClassification`] does.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        # the encoder runs once per view, so its outputs are requested per call and stacked here (the hooks of
        # transformers' `capture_outputs` collect one flat list per forward, which would interleave the views)
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        config = self.config
        objectives = config.objectives
        views = self._split_views(input_values)
        masking = self.training if apply_masking is None else apply_masking
        if ids_keep is not None and len(ids_keep) != len(views):
            raise ValueError(f"ids_keep has {len(ids_keep)} entries for {len(views)} views.")
        frames = views[0].shape[-2]
        grid = (frames // config.patch_size, config.num_freq_patches)
        num_patches = grid[0] * grid[1]
        full_token_mask = None
        if attention_mask is not None:
            full_token_mask = self.audiomosaic.token_mask_from_attention_mask(
                attention_mask.to(views[0].device), frames
            )
        valid = full_token_mask[:, 1:] if full_token_mask is not None else None

        teacher_map = None
        if return_loss and "distill" in objectives:
            teacher = self.distillation_teacher
            if teacher is None:
                raise ValueError("the distill objective needs a teacher: call model.set_distillation_teacher(...).")
            if next(teacher.model.parameters()).device != views[0].device:
                teacher.to(views[0].device)  # once, not every step
            teacher_map = teacher(input_values=views[0], teacher_inputs=teacher_inputs)

        drawn_masks = self.draw_masks(views, generator) if ids_keep is None and masking else [None] * len(views)
        zs, pooled, features, kept, kept_ids, masks, view_hidden, view_attentions = [], [], [], [], [], [], [], []
        reconstructions, logits, mae_terms, distill_terms, supervised_terms = [], [], [], [], []
        for view, spec in enumerate(views):
            if ids_keep is not None:
                ids = ids_keep[view]
                mask = mask_from_ids_keep(ids.to(spec.device), num_patches) if ids is not None else None
            else:
                drawn = drawn_masks[view]
                ids = drawn.ids_keep if drawn is not None else None
                mask = drawn.mask if drawn is not None else None
            out = self.audiomosaic(
                spec,
                attention_mask=attention_mask,
                ids_keep=ids,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
                return_dict=True,
                **kwargs,
            )
            view_hidden.append(out.hidden_states)
            view_attentions.append(out.attentions)
            feature = pool_tokens(out.last_hidden_state, config.pooling, out.token_mask)
            normed = self.audiomosaic.pooler.fc_norm(feature)
            pooled.append(normed)
            features.append(feature)
            kept.append(out.last_hidden_state.shape[1])
            kept_ids.append(ids)
            masks.append(mask)
            if self.projector is not None:
                zs.append(self.project(normed))
            if self.decoder is not None:
                decoded = self.decoder(out.last_hidden_state, ids, num_patches, full_token_mask)
                view_mask = mask if mask is not None else torch.zeros(
                    spec.shape[0], num_patches, dtype=torch.bool, device=spec.device
                )
                if self.mae_head is not None:
                    prediction = self.mae_head(decoded)
                    if return_reconstruction:
                        reconstructions.append(prediction)
                    if return_loss:
                        target = patchify(spec, config.patch_size)
                        mae_terms.append(
                            mae_reconstruction_loss(prediction, target, view_mask, config.norm_pix_loss, valid)
                        )
                if self.distill_head is not None and teacher_map is not None:
                    distill_terms.append(
                        distillation_loss(
                            self.distill_head(decoded), teacher_map, grid, view_mask,
                            alignment=config.distill_alignment, distance=config.distill_distance,
                            masked_weight=config.distill_masked_weight, visible_weight=config.distill_visible_weight,
                            valid=valid,
                        )
                    )
            if self.supervised_head is not None:
                view_logits = self.supervised_head(normed)
                logits.append(view_logits)
                if return_loss and labels is not None:
                    supervised_terms.append(supervised_loss(view_logits, labels, config.supervised_loss))

        fields = {
            "z": torch.stack(zs) if zs else None,
            "pooled_output": torch.stack(pooled),
            "reconstruction": torch.stack(reconstructions) if reconstructions else None,
            "logits": torch.stack(logits) if logits else None,
            "num_kept_tokens": tuple(kept),
            "ids_keep": tuple(kept_ids),
            "mask": tuple(masks),
        }
        if output_hidden_states:
            fields["hidden_states"] = tuple(stack_views(list(layer), (-2,)) for layer in zip(*view_hidden))
        if output_attentions:
            fields["attentions"] = tuple(stack_views(list(layer), (-2, -1)) for layer in zip(*view_attentions))
        if return_loss:
            total = 0.0
            if "contrastive" in objectives:
                if len(views) != 2:
                    raise ValueError(f"the contrastive objective needs exactly 2 views, got {len(views)}.")
                z = fields["z"]
                temperature = self.get_temperature(z.device).to(z.device)
                result = nt_xent_loss(z[0], z[1], temperature, gather_distributed=config.gather_distributed)
                fields["contrastive_loss"] = result.loss
                fields["accuracy"] = result.accuracy
                fields["temperature"] = temperature.detach()
                fields["alignment"], fields["uniformity"] = alignment_uniformity(z[0], z[1])
                total = total + config.contrastive_weight * result.loss
            if mae_terms:
                fields["mae_loss"] = torch.stack(mae_terms).mean()
                total = total + config.mae_weight * fields["mae_loss"]
            if distill_terms:
                fields["distill_loss"] = torch.stack([term.loss for term in distill_terms]).mean()
                for part in ("masked", "visible"):  # the two terms, for logging
                    terms = [getattr(term, f"loss_{part}") for term in distill_terms]
                    fields[f"distill_loss_{part}"] = torch.stack(terms).mean().detach()
                total = total + config.distill_weight * fields["distill_loss"]
            if self.supervised_head is not None:
                if labels is None:
                    raise ValueError(
                        f"supervised_weight={config.supervised_weight} needs labels (the SupMAM branch); pass labels "
                        "or set supervised_weight=0."
                    )
                fields["supervised_loss"] = torch.stack(supervised_terms).mean()
                total = total + config.supervised_weight * fields["supervised_loss"]
            fields["loss"] = total
            fields["lid_mean"], fields["lid_var"] = local_intrinsic_dimension(torch.cat(features).detach())
        # built once, so that `to_tuple()` follows the field order (loss first, hidden states and attentions last)
        output = AudioMosaicForPreTrainingOutput(**fields)
        return output if return_dict else output.to_tuple()


__all__ = [
    "AudioMosaicForPreTraining",
    "AudioMosaicForPreTrainingOutput",
    "BatchNorm1dNoBias",
    "ProjectorBatchNorm1d",
    "ProjectorLinear",
    "build_projector",
    "stack_views",
]
