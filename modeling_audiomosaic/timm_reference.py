"""An independent reference of the ORIGINAL AudioMosaic forward, built from timm's VisionTransformer.

The original `AudioMosaicTransformer` subclasses timm's `VisionTransformer` (pre_norm=True, LayerNorm eps 1e-6,
qkv/proj biases) and replaces the patch embedding by Conv2d(+bias) -> LayerNorm over patch tokens. Its classifier
deletes the final norm, averages ALL tokens (CLS included), applies `fc_norm` and a Linear head. This file rebuilds
exactly that from timm modules (the encoder blocks, position handling and attention are timm's own code).

Used by the parity tests (tests/test_modeling.py, tests/test_convert_release.py) and run_scripts/run_benchmarks.py.
timm is imported when a reference is first built, from its reference folder (`reference_packages.import_timm`).

timm 1.0.x imports `torchvision.ops.misc.FrozenBatchNorm2d` at import time, but torchvision cannot be installed beside
the CPU torch 2.13 wheel used here. ViTs never use that class, so a stub module stands in for it when torchvision is
missing (it raises if anything actually uses it).
"""

from __future__ import annotations

import sys
import types
from functools import partial

import torch
from torch import nn


def _install_torchvision_stub() -> None:
    """Make `import torchvision...` succeed with placeholder modules when torchvision is not installed.

    Any attribute of a stub module is a placeholder class that raises when instantiated or called, so nothing can
    silently use it; timm's ViT code path never does.
    """
    try:
        import torchvision  # noqa: F401

        return
    except Exception:
        pass
    import importlib.abc
    import importlib.machinery

    class _PlaceholderMeta(type):
        def __getattr__(cls, name):
            if name.startswith("__"):
                raise AttributeError(name)
            value = _PlaceholderMeta(name, (_Placeholder,), {})
            setattr(cls, name, value)
            return value

    class _Placeholder(metaclass=_PlaceholderMeta):
        def __init__(self, *args, **kwargs):  # pragma: no cover - never used by ViTs
            raise RuntimeError("torchvision is not installed; this placeholder cannot be used")

        def __init_subclass__(cls, **kwargs):
            pass

    class _StubModule(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            value = _PlaceholderMeta(name, (_Placeholder,), {})
            setattr(self, name, value)
            return value

    class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, fullname, path=None, target=None):
            if fullname == "torchvision" or fullname.startswith("torchvision."):
                return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
            return None

        def create_module(self, spec):
            module = _StubModule(spec.name)
            module.__path__ = []
            module.__version__ = "0.0.0+stub"
            return module

        def exec_module(self, module):
            pass

    sys.meta_path.insert(0, _Finder())


def _timm_classes():
    """timm's `PatchEmbed` and `VisionTransformer` (torchvision stubbed if missing; timm from its reference folder)."""
    _install_torchvision_stub()
    from .reference_packages import import_timm

    import_timm()
    from timm.layers import PatchEmbed
    from timm.models.vision_transformer import VisionTransformer

    return PatchEmbed, VisionTransformer


class OriginalAudioMosaicReference(nn.Module):
    """timm-based re-creation of the original classifier / probes (keys = original state-dict keys)."""

    def __init__(self, frames=1024, mel_bins=128, dim=768, depth=12, heads=12, mlp_ratio=4.0, num_classes=0,
                 pooling="avg", final_norm=False):
        super().__init__()
        PatchEmbed, VisionTransformer = _timm_classes()
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        vit = VisionTransformer(
            img_size=(frames, mel_bins), patch_size=16, in_chans=1, num_classes=0, embed_dim=dim, depth=depth,
            num_heads=heads, mlp_ratio=mlp_ratio, qkv_bias=True, proj_bias=True, pre_norm=True, global_pool="",
            class_token=True, norm_layer=norm_layer, drop_path_rate=0.0, act_layer=nn.GELU,
        )
        # the original's patch embedding: Conv2d with bias + LayerNorm over tokens, time-major flatten
        vit.patch_embed = PatchEmbed(img_size=(frames, mel_bins), patch_size=16, in_chans=1, embed_dim=dim,
                                     norm_layer=norm_layer, bias=True)
        self.cls_token, self.pos_embed = vit.cls_token, vit.pos_embed
        self.patch_embed, self.norm_pre, self.blocks = vit.patch_embed, vit.norm_pre, vit.blocks
        self._pos_embed = vit._pos_embed
        self.norm = norm_layer(dim) if final_norm else nn.Identity()
        self.fc_norm = norm_layer(dim)
        self.head = nn.Linear(dim, num_classes) if num_classes else nn.Identity()
        self.pooling = pooling
        with torch.no_grad():  # random but non-trivial values for every parameter
            for p in self.parameters():
                p.normal_(0.0, 0.05)
            for name, p in self.named_parameters():
                if name.endswith("weight") and p.ndim == 1:  # LayerNorm gains around 1
                    p.add_(1.0)

    def block_outputs(self, x):
        if x.ndim == 3:
            x = x.unsqueeze(1)
        x = self.patch_embed(x)
        x = self._pos_embed(x)  # prepends CLS then adds pos_embed to all tokens
        x = self.norm_pre(x)
        outs = []
        for blk in self.blocks:
            x = blk(x)
            outs.append(x)
        return outs

    def pool(self, x):
        return x[:, 0] if self.pooling == "cls" else x.mean(dim=1)

    def forward(self, x):
        outs = self.block_outputs(x)
        tokens = self.norm(outs[-1])
        return self.head(self.fc_norm(self.pool(tokens))), tokens


class LayerProbeReference(OriginalAudioMosaicReference):
    def __init__(self, probe_layer, **kw):
        super().__init__(**kw)
        self.probe_layer = probe_layer

    def forward(self, x):
        outs = self.block_outputs(x)
        return self.head(self.fc_norm(self.pool(outs[self.probe_layer]))), outs[-1]


class WeightedSumProbeReference(OriginalAudioMosaicReference):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.layer_weights = nn.Parameter(torch.randn(len(self.blocks) + 1))

    def forward(self, x):
        outs = self.block_outputs(x)
        entries = outs + [self.norm(outs[-1])]
        w = torch.softmax(self.layer_weights, 0)
        s = sum(w[i] * entries[i] for i in range(len(entries)))
        return self.head(self.fc_norm(self.pool(s))), outs[-1]


class AttentiveProbeReference(OriginalAudioMosaicReference):
    def __init__(self, num_attn_heads=1, **kw):
        super().__init__(**kw)
        dim = self.fc_norm.normalized_shape[0]
        self.h = num_attn_heads
        n = len(self.blocks) + 1
        self.attn_query = nn.Parameter(torch.randn(1, self.h, 1, dim // self.h) * 0.5)
        self.attn_key = nn.Linear(dim, dim, bias=False)
        self.attn_value = nn.Linear(dim, dim, bias=False)
        self.layer_norms = nn.ModuleList([nn.LayerNorm(dim, eps=1e-6) for _ in range(n)])
        with torch.no_grad():
            for ln in self.layer_norms:
                ln.weight.normal_(1.0, 0.1)
                ln.bias.normal_(0.0, 0.1)

    def forward(self, x):
        outs = self.block_outputs(x)
        entries = outs + [self.norm(outs[-1])]
        p = torch.stack([self.pool(ln(e)) for ln, e in zip(self.layer_norms, entries)], dim=1)  # B, n, D
        b, n, d = p.shape
        k = self.attn_key(p).view(b, n, self.h, d // self.h).permute(0, 2, 1, 3)
        v = self.attn_value(p).view(b, n, self.h, d // self.h).permute(0, 2, 1, 3)
        a = torch.softmax((self.attn_query @ k.transpose(-1, -2)) * (d // self.h) ** -0.5, dim=-1)
        out = (a @ v).permute(0, 2, 1, 3).reshape(b, d)
        return self.head(self.fc_norm(out)), outs[-1]
