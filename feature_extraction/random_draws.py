# coding=utf-8
"""Random draws shared by the augmentations of pre-training and fine-tuning.

Every augmentation in ``modeling_audiomosaic.feature_extraction`` and ``modeling_audiomosaic.finetuning`` takes its
randomness from one CPU ``torch.Generator`` (or an ``int`` seed, or ``None`` for torch's global generator, which the
DataLoader seeds per worker), so that a seed fixes the output exactly. This module is the one place that turns such
an argument into a generator (:func:`as_generator`) and that draws uniform, Bernoulli and Beta numbers from it.

It imports only ``numpy`` and ``torch``, so both packages can use it without import cycles.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["GeneratorLike", "as_generator", "bernoulli", "sample_beta", "uniform"]

#: What the augmentations accept as a source of randomness.
GeneratorLike = torch.Generator | int | None


def as_generator(generator: GeneratorLike) -> torch.Generator | None:
    """Turns a ``torch.Generator``, an integer seed or ``None`` into the generator to draw from.

    Args:
        generator: A CPU ``torch.Generator`` (returned as is), an ``int`` seed (a new generator seeded with it) or
            ``None`` (returned as is: torch's global generator).

    Raises:
        ValueError: a generator on another device (all draws are CPU tensors).
        TypeError: anything else, e.g. a ``bool``, a float or a numpy generator.
    """
    if generator is None or isinstance(generator, torch.Generator):
        if generator is not None and generator.device.type != "cpu":
            raise ValueError(
                f"The generator must be a CPU torch.Generator, got one on {generator.device}; the augmentations draw "
                "on the CPU (create it with torch.Generator() or pass an int seed)."
            )
        return generator
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, (bool, np.bool_)):
        return torch.Generator().manual_seed(int(generator))
    raise TypeError(
        f"generator must be a torch.Generator, an int seed or None, got {type(generator).__name__} (numpy generators "
        "are not supported: all randomness of the augmentations comes from torch)."
    )


def uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    """``n`` float64 draws from ``U(low, high)``; always consumes ``n`` numbers, also when ``low == high``."""
    u = torch.rand(n, dtype=torch.float64, generator=generator)
    return low + (high - low) * u


def bernoulli(n: int, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """``n`` boolean draws that are True with probability ``p``; always consumes ``n`` uniform numbers."""
    return torch.rand(n, dtype=torch.float64, generator=generator) < p


def sample_beta(n: int, alpha: float, beta: float, generator: GeneratorLike = None) -> torch.Tensor:
    """``n`` draws of ``Beta(alpha, beta)`` (float64) from a torch generator.

    Integer parameters use an exact order statistic: ``Beta(a, b)`` is the distribution of the ``a``-th smallest of
    ``a + b - 1`` independent ``U(0, 1)`` numbers (this consumes ``n * (a + b - 1)`` numbers). torch's own Beta and
    Gamma samplers take no generator, so other parameters use numpy's Beta sampler, seeded with one number drawn from
    the generator.

    Args:
        n (`int`): Number of draws.
        alpha, beta (`float`): Positive, finite Beta parameters.
        generator: See :func:`as_generator`.

    Returns:
        `torch.Tensor` of shape ``(n,)``, float64.
    """
    try:
        valid = all(math.isfinite(float(v)) and float(v) > 0 for v in (alpha, beta))
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(f"Beta parameters must be positive finite numbers, got alpha={alpha!r}, beta={beta!r}.")
    generator = as_generator(generator)
    if float(alpha).is_integer() and float(beta).is_integer():
        a, b = int(alpha), int(beta)
        u = torch.rand(n, a + b - 1, dtype=torch.float64, generator=generator)
        return u.kthvalue(a, dim=1).values
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.from_numpy(np.random.default_rng(seed).beta(alpha, beta, size=n))
