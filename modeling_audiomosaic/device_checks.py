# Copyright 2026 The AudioMosaic for Transformers authors. Licensed under the Apache License, Version 2.0.
"""Validity checks of tensor values that do not read an accelerator's values on the host.

Reading a device value on the host (`bool(t)`, `.item()`, `if t.any():`, boolean indexing `x[mask]`) makes the CPU
wait until the device has run all the work queued before it, which empties the kernel queue of a training step.
[`check_on_device`] raises the usual error for CPU tensors, and on any other device queues `torch._assert_async`
instead: nothing is read back, and a failed check surfaces as a device-side assert (a `RuntimeError` carrying the
message at the next synchronisation), as torch's own `cross_entropy` does for out-of-range class indices. On the
`meta` device the check is a no-op (meta tensors have no values).

Imports only torch (copied next to saved models as remote code).
"""

from __future__ import annotations

import torch


def check_on_device(condition: torch.Tensor, message: str, error: type[Exception] = ValueError) -> None:
    """Check that the boolean 0-dim tensor `condition` is `True`.

    CPU tensors (outside torch.compile) are read and `error(message)` is raised when the check fails; on another
    device, or while torch.compile traces (a data-dependent branch would break its graph), the check is queued with
    `torch._assert_async(condition, message)` and nothing is read on the host.
    """
    if condition.device.type == "cpu" and not torch.compiler.is_compiling():
        if not bool(condition):
            raise error(message)
        return
    torch._assert_async(condition, message)


__all__ = ["check_on_device"]
