#!/usr/bin/env python
"""Pre-train AudioMosaic (or another objective of `AudioMosaicForPreTraining`) with 🤗 Trainer.

Works the same on one CPU, several CPU processes (gloo) and GPUs (DDP / FSDP through accelerate):

    python run_scripts/run_pretrain.py --config run_scripts/recipes/pretrain_cpu_demo.yaml --train_path data/
    # CPU, 2 processes:
    accelerate launch --multi_gpu --num_processes 2 run_scripts/run_pretrain.py --config ... --use_cpu true
    accelerate launch --config_file run_scripts/accelerate/multi_gpu_ddp.yaml run_scripts/run_pretrain.py \
        --config run_scripts/recipes/pretrain_paper.yaml --dataset_name <hub audio dataset>
    # N nodes: the same command on every node with its own --machine_rank (README "Multi-node pre-training"):
    accelerate launch --config_file run_scripts/accelerate/multi_node_ddp.yaml --machine_rank <k> \
        --main_process_ip <node-0 address> run_scripts/run_pretrain.py --config ... --output_dir <shared folder>

Arguments: a YAML recipe (``--config``) sets defaults; any command-line flag overrides it. The three argument groups
are `ModelArguments`, `DataArguments` (`modeling_audiomosaic.pretraining_run`) and `transformers.TrainingArguments`.

Data: ``--train_path`` (folder of audio, AudioSet-style JSON manifest, CSV, parquet, webdataset shards) or
``--dataset_name`` (``datasets.load_dataset``; Hub ids stream with ``--streaming``). Bad files are skipped and counted
(``data_items_skipped`` in the logs, per process; ``pretrain_summary.json`` → ``data``: examples trained on, skip
events and distinct bad items with their ids, over all ranks and workers). Views (augmentation + fbank) are built in
DataLoader workers.
"""

from __future__ import annotations

import os
import sys

from modeling_audiomosaic.pretraining_run import run_pretraining


def main(argv: list[str] | None = None) -> dict:
    """Pre-train as the module docstring describes (`modeling_audiomosaic.pretraining_run.run_pretraining`)."""
    return run_pretraining(argv)


if __name__ == "__main__":
    main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Everything is saved and every rank has passed the final barrier; leave without freeing the process group
        # or the DDP model (see the end of `run_pretraining`: freeing them can deadlock in gloo's destructor).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
