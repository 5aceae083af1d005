"""Shared pytest set-up: offline hub, a private remote-code cache, run_scripts/ importable, and small helpers."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest
import torch

# before any test module imports transformers / huggingface_hub, which read them at import
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("HF_MODULES_CACHE", tempfile.mkdtemp(prefix="hf_modules_"))

# The packages come from the installed distribution (`pip install -e .`), never from the repository root. The one path
# edit of the test suite: the command-line scripts, so that tests can import their modules (`import run_demo`).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "run_scripts"))

# datasets sleeps SLEEP_TIME_ON_THREADS_SHUTDOWN (5 s) at the end of every pass over interleaved parquet shards (its
# shuffle's default `max_buffer_input_shards`; the pre-training runs read one shard at a time, `--shuffle_input_shards
# 1`), a guard against an Arrow crash at exit with read-ahead threads still running. The tests of datasets' own
# streams end a pass every few rows; half a second is plenty for their tiny files.
from datasets import config as datasets_config  # noqa: E402 (after the environment above, which datasets reads)

datasets_config.SLEEP_TIME_ON_THREADS_SHUTDOWN = 0.5


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test (run with RUN_SLOW=1 or -m slow)")
    config.addinivalue_line("markers", "dist: multi-process test (run serially)")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("RUN_SLOW") == "1" or "slow" in (config.getoption("-m") or ""):
        return
    skip_slow = pytest.mark.skip(reason="slow test: set RUN_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield
