"""What happens to bad items: the skip reasons, the errors that carry them and the per-reason [`SkipCounter`].

Bad items never stop a run: missing, undecodable, empty, non-finite or too short items are skipped and counted per
reason (one of [`SKIP_REASONS`]), with a ``logging.warning`` for the first few. Counts are per process (each
DataLoader worker counts in its own copy of the counter).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from typing import Any

logger = logging.getLogger(__name__)

RECENT_SKIPS_KEPT = 1024
"""How many ids of the latest skipped items a [`SkipCounter`] keeps in ``recent_ids``."""

SKIP_REASONS: tuple[str, ...] = (
    "missing_audio",  # the audio field is empty / None
    "missing_file",  # a path that does not exist
    "undecodable",  # soundfile could not read the bytes / file
    "empty",  # zero bytes or zero samples
    "non_finite",  # NaN or inf samples
    "bad_dtype",  # a decoded array of bool / complex / unknown integer dtype
    "too_short",  # fewer than `min_samples` samples after resampling
    "bad_label",  # the label field could not be interpreted
    "error",  # anything else (unexpected exception while preparing the example)
)


class AudioDecodeError(ValueError):
    """An item could not be turned into a usable waveform. ``reason`` is one of [`SKIP_REASONS`]."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"[{reason}] {message}")
        self.reason = reason


class EmptyDatasetError(ValueError):
    """A source contains no items, or no item could be decoded."""


class SkipCounter:
    """Counts decoded and skipped items, per skip reason, with a few example ids per reason.

    The first ``max_warnings`` skips are logged with ``logging.warning`` (then one notice that further skips are only
    counted); every ``summary_every`` skips a summary line is logged. ``summary()`` / ``log()`` / ``as_dict()``
    report the totals. Thread-safe; picklable (each DataLoader worker then counts in its own copy).
    """

    def __init__(
        self,
        name: str = "audio",
        *,
        max_warnings: int = 5,
        max_examples: int = 5,
        summary_every: int | None = 1000,
        log: logging.Logger | None = None,
    ):
        self.name = name
        self.max_warnings = max_warnings
        self.max_examples = max_examples
        self.summary_every = summary_every
        self.logger = log or logger
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}
        self.num_ok = 0
        self._num_warned = 0
        self._lock = threading.Lock()
        # ids of the latest skips, newest last: a caller that notes `num_skipped` before a decode can read which items
        # it skipped (the last `num_skipped` increase entries), as `EpochTaggedDataset` does to report them per example
        self.recent_ids: deque[str] = deque(maxlen=RECENT_SKIPS_KEPT)

    # pickling (DataLoader workers): a Lock cannot be pickled
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        if "recent_ids" not in state:  # pickled by an older version
            self.recent_ids = deque(maxlen=RECENT_SKIPS_KEPT)

    @property
    def num_skipped(self) -> int:
        return sum(self.counts.values())

    @property
    def num_seen(self) -> int:
        return self.num_ok + self.num_skipped

    def record_ok(self) -> None:
        with self._lock:
            self.num_ok += 1

    def record_skip(self, reason: str, example_id: str | None, detail: str = "") -> None:
        """Count one skipped item and warn about the first few."""
        with self._lock:
            self.counts[reason] += 1
            self.recent_ids.append(str(example_id))
            ids = self.examples.setdefault(reason, [])
            if len(ids) < self.max_examples:
                ids.append(str(example_id))
            warn = self._num_warned < self.max_warnings
            if warn:
                self._num_warned += 1
            last_warning = warn and self._num_warned == self.max_warnings
            periodic = bool(self.summary_every) and self.num_skipped % self.summary_every == 0
        if warn:
            self.logger.warning("%s: skipping item %s (%s): %s", self.name, example_id, reason, detail)
            if last_warning:
                self.logger.warning("%s: further skipped items are only counted (see .skip_counter)", self.name)
        if periodic:
            self.logger.warning(self.summary())

    def as_dict(self) -> dict[str, Any]:
        """Totals as a plain dict (for logging to trackers): ok, skipped, per-reason counts and example ids."""
        with self._lock:
            return {
                "ok": self.num_ok,
                "skipped": sum(self.counts.values()),
                "by_reason": dict(self.counts),
                "examples": {k: list(v) for k, v in self.examples.items()},
            }

    def summary(self) -> str:
        d = self.as_dict()
        seen = d["ok"] + d["skipped"]
        if not d["skipped"]:
            return f"{self.name}: {d['ok']} items decoded, none skipped"
        share = 100.0 * d["skipped"] / max(seen, 1)
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(d["by_reason"].items()))
        examples = "; ".join(f"{k}: {v}" for k, v in sorted(d["examples"].items()))
        return f"{self.name}: skipped {d['skipped']} of {seen} items ({share:.1f}%): {reasons} (e.g. {examples})"

    def log(self, log: logging.Logger | None = None, level: int = logging.INFO) -> None:
        (log or self.logger).log(level, self.summary())

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.examples.clear()
            self.recent_ids.clear()
            self.num_ok = 0
            self._num_warned = 0

    def merge(self, other: SkipCounter) -> SkipCounter:
        """Add another counter's totals (e.g. gathered from workers or ranks) into this one; returns self."""
        d = other.as_dict()
        with self._lock:
            self.num_ok += d["ok"]
            self.counts.update(d["by_reason"])
            for k, ids in d["examples"].items():
                mine = self.examples.setdefault(k, [])
                mine.extend(ids[: max(0, self.max_examples - len(mine))])
        return self

    def __repr__(self) -> str:
        return f"SkipCounter({self.summary()})"


__all__ = ["RECENT_SKIPS_KEPT", "SKIP_REASONS", "AudioDecodeError", "EmptyDatasetError", "SkipCounter"]
