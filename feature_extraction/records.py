"""Record → example: the decoding options ([`DecodeOptions`]) and the decoder of one raw record ([`ExampleDecoder`]).

Every source yields the same example format::

    {"audio": np.ndarray  # float32, mono, 16 kHz, 1-D
     "labels": list[str | int] | None,
     "id": str,
     "group": str | None}

[`DecodeOptions`] is the one place where the options of that conversion are declared (where the audio, labels, id and
group are in a record, how labels are split, the output rate, the minimum length and the crop). The loaders
(``load_audio_dataset``, ``wrap_hf_dataset``, the manifest readers) and [`ExampleDecoder`] take ``options=`` and/or the
same names as keyword arguments; an unknown name raises a `TypeError` that lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch.utils.data

from .audio_io import (
    CROP_MODES,
    MIN_NUM_SAMPLES,
    TARGET_SAMPLING_RATE,
    crop_or_pad,
    decode_audio,
    read_crop_window,
)
from .labels import DEFAULT_LABEL_KEYS, normalize_labels
from .skips import AudioDecodeError, SkipCounter
from .stream_rows import RowSkip

AUTO = "auto"
"""Column value meaning "find the field": see [`DecodeOptions`]."""

DEFAULT_AUDIO_KEYS: tuple[str, ...] = ("audio", "wav", "path", "filename", "file", "audio_path")
"""Fields tried (in order) for the audio when ``audio_column="auto"``."""

DEFAULT_ID_KEYS: tuple[str, ...] = ("id", "__key__")
"""Fields tried (in order) for the example id when ``id_column="auto"``."""

Columns = Union[str, tuple[str, ...], None]  # noqa: UP007 (a runtime alias)
Example = dict[str, Any]


def _as_columns(value: Any) -> Columns:
    """A column option as ``None``, one name, or a tuple of candidate names."""
    if value is None or isinstance(value, str):
        return value
    return tuple(value)


@dataclass(frozen=True)
class DecodeOptions:
    """How a raw record becomes an example (frozen: share one between loaders; derive with [`replace`]).

    Where things are in a record (``"auto"``: the loaders resolve it from the source's columns; a decoder given
    ``"auto"`` tries the default fields record by record):

    Args:
        audio_column: the audio field, or a tuple of candidates (first non-empty wins; WebDataset members).
            ``"auto"``: WebDataset audio members, else ``audio``, else the first ``Audio`` / ``{bytes, path}`` /
            binary column (datasets), or [`DEFAULT_AUDIO_KEYS`] (manifests, CSV files, records).
        label_column: the label field, a tuple of candidates (first non-``None`` wins), or ``None`` (no labels).
            ``"auto"``: ``labels`` or ``label`` (WebDataset: ``json``, ``cls``, ``txt``); none present: no labels.
        id_column: the id field (``"auto"``: ``id`` or ``__key__``); without one the id is the audio path, else a hash
            of the audio bytes.
        group_column: an optional grouping field (speaker, recording, fold...).
        group_fn: computes the group from the id when ``group_column`` is ``None``.

    Labels:

    Args:
        label_delimiter: splits string labels (``"m1,m2"`` → ``["m1", "m2"]``); ``None`` keeps them whole.
        json_label_keys: keys read from dict labels (WebDataset ``.json``), first present wins.
        class_names: names for integer labels (a ``ClassLabel`` feature); set by ``wrap_hf_dataset`` when
            ``decode_class_labels`` and the label column is a ``ClassLabel``.
        decode_class_labels: turn ``ClassLabel`` ids into their names (``wrap_hf_dataset``).

    Waveform:

    Args:
        sampling_rate: output rate (every example is resampled to it).
        min_samples: minimum length after resampling; shorter items are skipped as ``too_short``.
        max_seconds: crop longer clips to this length (``None``: keep the whole clip).
        crop: where the crop starts: ``"random"``, ``"start"`` or ``"center"``.
        pad: also zero-pad shorter clips to ``max_seconds``.
        crop_seed: seed (mixed with the DataLoader worker id) or numpy Generator of the random crops; ``None``: a fresh
            unseeded generator.
    """

    audio_column: Columns = AUTO
    label_column: Columns = AUTO
    id_column: str | None = AUTO
    group_column: str | None = None
    group_fn: Callable[[str], str | None] | None = None
    label_delimiter: str | None = ","
    json_label_keys: tuple[str, ...] = DEFAULT_LABEL_KEYS
    class_names: tuple[str, ...] | None = None
    decode_class_labels: bool = True
    sampling_rate: int = TARGET_SAMPLING_RATE
    min_samples: int = MIN_NUM_SAMPLES
    max_seconds: float | None = None
    crop: str = "random"
    pad: bool = False
    crop_seed: int | np.random.Generator | None = None

    def __post_init__(self) -> None:
        set_field = object.__setattr__  # frozen: normalise the field values once, here
        if self.audio_column is None:
            raise ValueError("audio_column cannot be None; name the audio field, or use 'auto'")
        set_field(self, "audio_column", _as_columns(self.audio_column))
        set_field(self, "label_column", _as_columns(self.label_column))
        set_field(self, "json_label_keys", tuple(self.json_label_keys))
        if self.class_names is not None:
            set_field(self, "class_names", tuple(str(name) for name in self.class_names))
        if self.sampling_rate <= 0:
            raise ValueError(f"sampling_rate must be positive, got {self.sampling_rate}")
        set_field(self, "sampling_rate", int(self.sampling_rate))
        set_field(self, "min_samples", int(self.min_samples))
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {self.max_seconds}")
        if self.crop not in CROP_MODES:
            raise ValueError(f"crop must be 'random', 'start' or 'center', got {self.crop!r}")

    @property
    def max_samples(self) -> int | None:
        """``max_seconds`` in samples at ``sampling_rate`` (``None`` without a crop)."""
        return None if self.max_seconds is None else int(round(self.max_seconds * self.sampling_rate))

    def replace(self, **changes: Any) -> DecodeOptions:
        """A copy with some fields changed (unknown names raise `TypeError`, as in [`build`])."""
        return DecodeOptions.build(self, caller="DecodeOptions.replace", **changes)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def build(
        cls, options: DecodeOptions | None = None, *, caller: str = "DecodeOptions", **changes: Any
    ) -> DecodeOptions:
        """``options`` (default: all defaults) with the keyword arguments ``changes`` applied.

        This is how the loaders accept decoding options both as ``options=DecodeOptions(...)`` and as plain keyword
        arguments (``max_seconds=10``); keyword arguments win over ``options``.

        Raises:
            TypeError: ``options`` is not a `DecodeOptions`, or a keyword is not one of its fields (the message names
                ``caller``, the unknown keywords, close matches and the valid names).
        """
        if options is None:
            options = cls()
        elif not isinstance(options, DecodeOptions):
            raise TypeError(f"{caller}(): options must be a DecodeOptions, got {type(options).__name__}")
        names = cls.field_names()
        unknown = [key for key in changes if key not in names]
        if unknown:
            close = {key: difflib.get_close_matches(key, names, n=1) for key in unknown}
            hints = "".join(f" Did you mean {match[0]!r} (not {key!r})?" for key, match in close.items() if match)
            raise TypeError(
                f"{caller}() got unknown keyword argument(s) {unknown}: neither a parameter of {caller} nor a "
                f"DecodeOptions field.{hints} Decoding options are: {', '.join(names)}."
            )
        return dataclasses.replace(options, **changes) if changes else options


class ExampleDecoder:
    """Turns one raw record (a dict from a `datasets` dataset or a manifest) into an example, or ``None`` if bad.

    Also usable as a batched ``datasets.map`` function (``__call__``): bad rows are dropped from the output batch.
    Picklable (it travels to DataLoader workers); the crop generator is re-seeded per worker from ``crop_seed``.

    Args:
        options: the [`DecodeOptions`] (columns, labels, rate, crop); keyword arguments override its fields, e.g.
            ``ExampleDecoder(max_seconds=2.0, crop="start")``. ``"auto"`` columns are looked up record by record:
            the first non-empty field of [`DEFAULT_AUDIO_KEYS`], the first non-``None`` of ``labels`` / ``label``,
            ``id`` / ``__key__``.
        skip_counter: where bad items are counted (a new [`SkipCounter`] by default).
    """

    def __init__(
        self, options: DecodeOptions | None = None, *, skip_counter: SkipCounter | None = None, **decode_options: Any
    ):
        self.options = DecodeOptions.build(options, caller="ExampleDecoder", **decode_options)
        opts = self.options
        self.audio_columns = DEFAULT_AUDIO_KEYS if opts.audio_column == AUTO else _candidates(opts.audio_column)
        self.label_columns = DEFAULT_LABEL_KEYS if opts.label_column == AUTO else _candidates(opts.label_column)
        self.id_columns = DEFAULT_ID_KEYS if opts.id_column == AUTO else _candidates(opts.id_column)
        self.max_samples = opts.max_samples
        self.skip_counter = skip_counter if skip_counter is not None else SkipCounter()
        self._rng: np.random.Generator | None = None
        self._rng_owner: tuple[int, int | None] | None = None
        self.row_skip: RowSkip | None = None  # records passed over undecoded in a resumed pass (`skip_rows`)

    @property
    def output_columns(self) -> list[str]:
        return ["audio", "labels", "id", "group"]

    def _crop_rng(self) -> np.random.Generator:
        seed = self.options.crop_seed
        if isinstance(seed, np.random.Generator):
            return seed
        info = torch.utils.data.get_worker_info()
        owner = (os.getpid(), None if info is None else info.id)
        if self._rng is None or self._rng_owner != owner:
            if seed is None:
                self._rng = np.random.default_rng()
            else:
                entropy = [int(seed)] + ([] if info is None else [int(info.id) + 1])
                self._rng = np.random.default_rng(np.random.SeedSequence(entropy))
            self._rng_owner = owner
        return self._rng

    def _audio_value(self, record: Mapping[str, Any]) -> Any:
        for col in self.audio_columns:
            value = record.get(col)
            if value is None:
                continue
            if (
                isinstance(value, Mapping)
                and not value.get("bytes")
                and not value.get("path")
                and value.get("array") is None
            ):
                continue
            return value
        return None

    def example_id(self, record: Mapping[str, Any]) -> str:
        """The id of a record: the id field, else the audio path, else ``sha1:`` of the audio bytes."""
        for col in self.id_columns:
            if record.get(col) is not None:
                return str(record[col])
        value = self._audio_value(record)
        if isinstance(value, (str, os.PathLike)):
            return os.fspath(value)
        if isinstance(value, Mapping):
            if value.get("path"):
                return str(value["path"])
            value = value.get("bytes")
        if isinstance(value, (bytes, bytearray, memoryview)):
            return "sha1:" + hashlib.sha1(bytes(value)).hexdigest()[:16]
        return "<unknown>"

    def labels_of(self, record: Mapping[str, Any]) -> list | None:
        """The normalised labels of a record (no audio decoding)."""
        opts = self.options
        for col in self.label_columns:
            value = record.get(col)
            if value is None:
                continue
            labels = normalize_labels(
                value, delimiter=opts.label_delimiter, class_names=opts.class_names, json_keys=opts.json_label_keys
            )
            if labels is not None:
                return labels
        return None

    def group_of(self, record: Mapping[str, Any], example_id: str) -> str | None:
        opts = self.options
        if opts.group_column is not None:
            value = record.get(opts.group_column)
            return None if value is None else str(value)
        if opts.group_fn is not None:
            return opts.group_fn(example_id)
        return None

    def decode(self, record: Mapping[str, Any]) -> Example | None:
        """Decode one record; returns ``None`` (and counts the reason) for a bad item. Never raises on bad data."""
        opts = self.options
        example_id = "<unknown>"
        try:
            example_id = self.example_id(record)
            value = self._audio_value(record)
            if value is None:
                raise AudioDecodeError("missing_audio", f"no audio in fields {list(self.audio_columns)}")
            window = None
            if self.max_samples is not None:  # a long file: read only around the crop
                rng = self._crop_rng() if opts.crop == "random" else None
                window = read_crop_window(value, self.max_samples, opts.sampling_rate, mode=opts.crop, rng=rng)
            source = window if window is not None else value
            wave = decode_audio(source, opts.sampling_rate, min_samples=opts.min_samples)
            try:
                labels = self.labels_of(record)
            except Exception as err:
                raise AudioDecodeError("bad_label", f"{type(err).__name__}: {err}") from err
            group = self.group_of(record, example_id)
            if window is not None:  # already positioned: cut the resampler's margin off the end
                wave = crop_or_pad(wave, self.max_samples, mode="start", pad=opts.pad)
            elif self.max_samples is not None:
                rng = self._crop_rng() if opts.crop == "random" and wave.shape[0] > self.max_samples else None
                wave = crop_or_pad(wave, self.max_samples, mode=opts.crop, rng=rng, pad=opts.pad)
        except AudioDecodeError as err:
            self.skip_counter.record_skip(err.reason, example_id, str(err))
            return None
        except Exception as err:  # never let one item kill the run
            self.skip_counter.record_skip("error", example_id, f"{type(err).__name__}: {err}")
            return None
        self.skip_counter.record_ok()
        return {"audio": wave, "labels": labels, "id": example_id, "group": group}

    @property
    def skips_rows_exactly(self) -> bool:
        """Whether passing over records undecoded leaves the following ones as they would have been: not with random
        crops of long files, drawn from one generator per worker in record order."""
        return not (self.max_samples is not None and self.options.crop == "random")

    def skip_rows(self, epoch: int, rows_per_worker: Sequence[int]) -> None:
        """Resume a stream: in pass ``epoch`` DataLoader worker ``w`` passes over its first ``rows_per_worker[w]``
        records (``stream_row`` below that) without decoding or counting them (see `.stream_rows`). Call it before
        the DataLoader starts its workers, and `set_epoch` at the start of every pass."""
        if not self.skips_rows_exactly:
            raise ValueError(
                "this decoder crops long files at random positions drawn in record order, so records passed over "
                "undecoded would change the crops of the following ones: skip by decoding instead"
            )
        self.row_skip = RowSkip(epoch, rows_per_worker)

    def set_epoch(self, epoch: int) -> None:
        """The stream's pass now starting (only a resumed stream's `skip_rows` reads it)."""
        if self.row_skip is not None:
            self.row_skip.set_epoch(epoch)

    def __call__(self, batch: Mapping[str, list], indices: Sequence[int] | None = None) -> dict[str, list]:
        """Batched ``datasets.map`` function: decodes every row and drops the bad ones.

        With ``indices`` (``with_indices=True``: each record's index in this worker's pass) the rows carry it as
        ``stream_row``, and the records before `skip_rows`' position are passed over undecoded."""
        keys = list(batch.keys())
        size = len(batch[keys[0]]) if keys else 0
        out: dict[str, list] = {name: [] for name in self.output_columns}
        # bad items dropped since the previous emitted row, and their ids (so streams can report skips)
        out["num_skipped"] = []
        out["skipped_ids"] = []
        if indices is not None:
            out["stream_row"] = []
        first = 0
        if indices is not None and self.row_skip is not None and size:
            below = self.row_skip.rows_to_skip()
            while first < size and int(indices[first]) < below:
                first += 1
        pending: list[str] = list(getattr(self, "_pending_skip_ids", []))
        for i in range(first, size):
            example = self.decode({k: batch[k][i] for k in keys})
            if example is None:
                pending.append(self.skip_counter.recent_ids[-1])  # `decode` recorded exactly this one skip
                continue
            for name in self.output_columns:
                out[name].append(example[name])
            out["num_skipped"].append(len(pending))
            out["skipped_ids"].append(pending)
            if indices is not None:
                out["stream_row"].append(int(indices[i]))
            pending = []
        self._pending_skip_ids = pending
        return out


def _candidates(columns: Columns) -> tuple[str, ...]:
    """Column option → the fields tried in order (``None``: none)."""
    if columns is None:
        return ()
    return (columns,) if isinstance(columns, str) else tuple(columns)


def check_columns(available: Sequence[str], requested: Sequence[str | None], where: str) -> None:
    """Raise a `ValueError` listing the available columns when one of ``requested`` (``None`` ignored) is missing."""
    available = list(available)
    for name in requested:
        if name is not None and name not in available:
            raise ValueError(f"column {name!r} not found in {where}; available columns: {available}")


__all__ = [
    "AUTO",
    "DEFAULT_AUDIO_KEYS",
    "DEFAULT_ID_KEYS",
    "DecodeOptions",
    "ExampleDecoder",
    "check_columns",
]
