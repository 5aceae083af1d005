"""Run under torchrun with 2 processes: DDP pre-training step with gathered negatives; rank 0 saves loss and grads.

``gather_ntxent.py OUT`` keeps the projector's BatchNorms in eval mode (running statistics); ``gather_ntxent.py OUT
sync_bn`` trains them with synchronised batch statistics (`synchronize_batchnorm`), and also saves every rank's
running statistics after the step."""

import datetime
import os
import sys

import torch
import torch.distributed as dist

from modeling_audiomosaic import AudioMosaicConfig, AudioMosaicForPreTraining, apply_masking


def build(seed=0, sync_bn=False):
    torch.manual_seed(seed)
    config = AudioMosaicConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                               max_length=64, num_mel_bins=32, drop_path_rate=0.0, projection_hidden_size=16,
                               projection_dim=8)
    model = AudioMosaicForPreTraining(config)
    model.train()
    if sync_bn:
        model.synchronize_batchnorm(True)  # batch statistics of the global batch: those of one process
    else:
        model.projector.eval()  # running statistics: per-process batch statistics would differ
    return model


def global_batch(batch=8):
    g = torch.Generator().manual_seed(123)
    x = torch.randn(batch, 2, 64, 32, generator=g)
    ids = [apply_masking(name, (4, 2), batch, ratio, generator=g).ids_keep
           for name, ratio in (("time", 0.6), ("freq", 0.4))]
    return x, ids


def main(out_path, mode=""):
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank, world = dist.get_rank(), dist.get_world_size()
    model = build(sync_bn=mode == "sync_bn")
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    x, ids = global_batch()
    n = x.shape[0] // world
    sl = slice(rank * n, (rank + 1) * n)
    out = ddp(x[sl], ids_keep=[i[sl] for i in ids])
    out.loss.backward()
    losses = [torch.zeros(()) for _ in range(world)]
    dist.all_gather(losses, out.loss.detach())
    buffers = torch.cat([b.detach().flatten().float() for n, b in model.projector.named_buffers()])
    every_rank = [torch.zeros_like(buffers) for _ in range(world)]
    dist.all_gather(every_rank, buffers)
    if rank == 0:
        grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
        torch.save({"loss": torch.stack(losses).mean(), "grads": grads, "acc": out.accuracy,
                    "uniformity": out.uniformity, "projector_buffers": torch.stack(every_rank)}, out_path)
    dist.barrier()
    # Leave WITHOUT freeing the DDP reducer or destroying the process group. Destroying the group first makes the
    # reducer hold its last reference; freeing the reducer then runs ~ProcessGroupGloo, which joins gloo's worker
    # thread while holding the GIL, and that thread may still be releasing a finished collective whose tensors need
    # the GIL to be freed: a deadlock (py-spy: MainThread in ProcessGroupGloo::~ProcessGroupGloo -> thread::join,
    # gloo runLoop in ~AsyncAllgatherWork -> gil_scoped_acquire). Everything is written, so exit right here.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(*sys.argv[1:])
