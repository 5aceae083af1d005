"""Labels: raw label fields to label lists, the label vocabulary (ids, multi-hot) and the one label-CSV reader.

[`read_label_csv`] is the only reader of label index files in the project: [`LabelVocabulary.from_class_labels_csv`],
``modeling_audiomosaic.load_label_file`` (the released label sets) and ``run_audio_classification.py --label_file``
all go through it.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from .skips import EmptyDatasetError

PathLike = Union[str, os.PathLike]  # noqa: UP007 (a runtime alias)

DEFAULT_LABEL_KEYS: tuple[str, ...] = ("labels", "label")
"""Fields (and JSON keys) read as labels when none is named."""

LABEL_KEY_COLUMNS: tuple[str, ...] = ("mid", "label", "name", "class", "display_name", "labels")
"""Header names that mark the first row of a label CSV as a header, in the order tried as the label key."""


# ---------------------------------------------------------------------------------------------------------------------
# Label CSV files
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelTable:
    """The rows of a label CSV, as read by [`read_label_csv`].

    Args:
        path: the file read.
        columns: lower-cased header names; ``("label",)`` for a file without a header (one label per line).
        rows: one dict per data row (column -> stripped cell), in ``index`` order when the file has that column.
        has_header: whether the first row was a header.
    """

    path: str
    columns: tuple[str, ...]
    rows: tuple[dict[str, str], ...]
    has_header: bool

    def column(self, name: str) -> list[str]:
        """The cells of one column, in row order."""
        key = name.strip().lower()
        if key not in self.columns:
            raise ValueError(f"{self.path} has no column {name!r}; its columns are {list(self.columns)}.")
        return [row[key] for row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)


def read_label_csv(
    path: PathLike,
    *,
    required_columns: Sequence[str] = (),
    index_column: str | None = "index",
) -> LabelTable:
    """Read a label index file: AudioSet's ``index,mid,display_name``, any CSV with a header, or one label per line.

    The first non-empty row is a header when it holds one of [`LABEL_KEY_COLUMNS`] or of ``required_columns``
    (compared case-insensitively; headers are lower-cased and cells stripped). Without a header every row is one label
    (its first cell) under the column ``"label"``. When the header has ``index_column``, rows are ordered by it and the
    indices must be exactly ``0 .. n-1``. Short rows are padded with empty cells.

    Raises:
        EmptyDatasetError: the file has no data rows (a `ValueError`).
        ValueError: a required column is missing, or the index column is not ``0 .. n-1``.
    """
    path = os.fspath(path)
    with open(path, newline="", encoding="utf-8") as handle:
        lines = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if not lines:
        raise EmptyDatasetError(f"label file {path} is empty")
    required = [name.strip().lower() for name in required_columns if name]
    first = [cell.strip().lower() for cell in lines[0]]
    has_header = any(name in first for name in (*LABEL_KEY_COLUMNS, *required))
    if not has_header:
        columns: tuple[str, ...] = ("label",)
        rows = [{"label": line[0].strip()} for line in lines]
    else:
        columns = tuple(first)
        padding = [""] * len(columns)  # short rows get empty cells
        rows = [dict(zip(columns, [cell.strip() for cell in line] + padding)) for line in lines[1:]]
    missing = [name for name in required if name not in columns]
    if missing:
        raise ValueError(f"{path} lacks the column(s) {missing}; its columns are {list(columns)}.")
    if not rows:
        raise EmptyDatasetError(f"label file {path} has a header but no rows")
    index = index_column.strip().lower() if index_column else None
    if index and index in columns:
        try:
            rows.sort(key=lambda row: int(row[index]))
        except ValueError as err:
            raise ValueError(f"{path}: the {index_column!r} column holds a non-integer value ({err}).") from err
        if [int(row[index]) for row in rows] != list(range(len(rows))):
            raise ValueError(f"{path}: the indices are not 0..{len(rows) - 1} (the {index_column!r} column).")
    return LabelTable(path=path, columns=columns, rows=tuple(rows), has_header=has_header)


# ---------------------------------------------------------------------------------------------------------------------
# Label fields
# ---------------------------------------------------------------------------------------------------------------------


def normalize_labels(
    value: Any,
    *,
    delimiter: str | None = ",",
    class_names: Sequence[str] | None = None,
    json_keys: Sequence[str] = DEFAULT_LABEL_KEYS,
) -> list[str | int | float] | None:
    """Turn a raw label field into a list of labels (or ``None`` when there is no label information).

    * ``str``: split on ``delimiter`` (AudioSet manifests: ``"mid1,mid2"``), whitespace stripped, empties dropped;
      ``delimiter=None`` keeps the string whole.
    * ``int`` (e.g. a ``ClassLabel`` or a WebDataset ``.cls``): ``[class_names[i]]`` when ``class_names`` are given
      (``-1``, ClassLabel's "no label", gives ``None``), else ``[i]``.
    * lists / arrays: each element normalised and concatenated.
    * dicts (WebDataset ``.json``): the first of ``json_keys`` present.
    """
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8")
    if isinstance(value, str):
        parts = value.split(delimiter) if delimiter else [value]
        return [p.strip() for p in parts if p.strip()]
    if isinstance(value, Mapping):
        for key in json_keys:
            if key in value:
                return normalize_labels(value[key], delimiter=delimiter, class_names=class_names, json_keys=json_keys)
        return None
    if isinstance(value, (bool, np.bool_, int, np.integer)):
        i = int(value)
        if class_names is not None:
            if i < 0:
                return None
            return [class_names[i]]
        return [i]
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        return (
            normalize_labels(int(value), delimiter=delimiter, class_names=class_names)
            if float(value).is_integer()
            else [float(value)]
        )
    if isinstance(value, (list, tuple, np.ndarray)):
        out: list = []
        for item in value:
            sub = normalize_labels(item, delimiter=delimiter, class_names=class_names, json_keys=json_keys)
            if sub:
                out.extend(sub)
        return out
    raise TypeError(f"cannot interpret a label of type {type(value).__name__}: {value!r}")


# ---------------------------------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class LabelVocabulary:
    """Label strings ↔ ids, with single-label (class id) or multi-label (multi-hot) encoding.

    ``labels[i]`` is the key of class ``i`` (e.g. an AudioSet mid); ``display_names`` optionally holds readable names
    (used by [`config_kwargs`] for ``id2label``).
    """

    labels: list[str]
    multi_label: bool = False
    display_names: list[str] | None = None
    label2id: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.labels = [str(label) for label in self.labels]
        self.label2id = {}
        for i, label in enumerate(self.labels):
            if label in self.label2id:
                raise ValueError(f"duplicate label {label!r} in the vocabulary")
            self.label2id[label] = i
        if self.display_names is not None and len(self.display_names) != len(self.labels):
            raise ValueError("display_names must have one entry per label")

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    def _id(self, label: str | int, unknown: str) -> int | None:
        if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
            i = int(label)
            if 0 <= i < self.num_labels:
                return i
            key = str(i)
        else:
            key = str(label)
        if key in self.label2id:
            return self.label2id[key]
        if unknown == "ignore":
            return None
        raise KeyError(f"label {label!r} is not in the vocabulary of {self.num_labels} labels")

    def encode(self, labels: Sequence[str | int] | str | int | None, *, unknown: str = "error") -> int | np.ndarray:
        """Single-label: the class id (exactly one label required). Multi-label: a float32 multi-hot vector
        (``None`` → all zeros). ``unknown="ignore"`` drops labels missing from the vocabulary (multi-label only)."""
        if labels is None:
            labels = []
        elif isinstance(labels, (str, int, np.integer)):
            labels = [labels]
        if self.multi_label:
            vec = np.zeros(self.num_labels, dtype=np.float32)
            for label in labels:
                i = self._id(label, unknown)
                if i is not None:
                    vec[i] = 1.0
            return vec
        if len(labels) != 1:
            raise ValueError(f"a single-label vocabulary needs exactly one label per example, got {list(labels)!r}")
        return self._id(labels[0], "error")

    def decode(self, encoded: int | Sequence[float] | np.ndarray, threshold: float = 0.5) -> list[str]:
        """Inverse of [`encode`]: a class id or a multi-hot/score vector (entries > ``threshold``) → labels."""
        if np.ndim(encoded) == 0:
            return [self.labels[int(encoded)]]
        return [self.labels[i] for i in np.flatnonzero(np.asarray(encoded) > threshold)]

    def config_kwargs(self) -> dict[str, Any]:
        """``num_labels``, ``id2label``, ``label2id`` and ``problem_type`` for ``AutoConfig``/``from_pretrained``."""
        names = self.display_names or self.labels
        return {
            "num_labels": self.num_labels,
            "id2label": dict(enumerate(names)),
            "label2id": {name: i for i, name in enumerate(names)},
            "problem_type": "multi_label_classification" if self.multi_label else "single_label_classification",
        }

    @classmethod
    def from_class_labels_csv(
        cls,
        path: PathLike,
        *,
        key_column: str = "mid",
        name_column: str | None = "display_name",
        index_column: str | None = "index",
        multi_label: bool = True,
    ) -> LabelVocabulary:
        """Read an AST/AudioSet ``class_labels_indices.csv`` (columns ``index,mid,display_name``) with
        [`read_label_csv`]: rows in ``index_column`` order (``None``: file order)."""
        table = read_label_csv(
            path, required_columns=[c for c in (key_column, name_column, index_column) if c], index_column=index_column
        )
        names = table.column(name_column) if name_column else None
        return cls(table.column(key_column), multi_label=multi_label, display_names=names)


def build_label_vocabulary(
    source: Iterable[Any],
    *,
    multi_label: bool | None = None,
    labels: Sequence[str] | None = None,
    sort: bool = True,
) -> LabelVocabulary:
    """Collect the labels of ``source`` into a [`LabelVocabulary`].

    ``source`` may be an ``AudioDataset`` / ``AudioIterableDataset`` (labels are read without decoding audio, via
    ``iter_labels()``), an iterable of examples (dicts with ``"labels"``), or an iterable of label lists/strings.
    ``multi_label=None`` chooses multi-label if any example has zero or several labels. With a fixed ``labels`` list
    (e.g. the 527 AudioSet mids) only ``multi_label`` is inferred and unknown labels raise ``KeyError``.
    Integer labels without names give the vocabulary ``["0", ..., str(max)]`` (ids used as is).
    """
    if hasattr(source, "iter_labels"):
        items: Iterable[Any] = source.iter_labels()
    else:
        items = source
    seen: dict[str, None] = {}
    max_int = -1
    any_multi = False
    count = 0
    for item in items:
        count += 1
        if isinstance(item, Mapping):
            item = item.get("labels")
        if item is None:
            lab = []
        elif isinstance(item, (str, int, np.integer)):
            lab = [item]
        else:
            lab = list(item)
        if len(lab) != 1:
            any_multi = True
        for label in lab:
            if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
                max_int = max(max_int, int(label))
            else:
                seen.setdefault(str(label), None)
    if count == 0:
        raise EmptyDatasetError("cannot build a label vocabulary from an empty source")
    if multi_label is None:
        multi_label = any_multi
    if labels is not None:
        vocab = LabelVocabulary(list(labels), multi_label=multi_label)
        missing = [label for label in seen if label not in vocab.label2id]
        if missing:
            raise KeyError(f"{len(missing)} labels are not in the given label list, e.g. {missing[:5]}")
        return vocab
    if seen and max_int >= 0:
        raise ValueError("mixed integer and string labels: pass an explicit `labels` list")
    if max_int >= 0:
        return LabelVocabulary([str(i) for i in range(max_int + 1)], multi_label=multi_label)
    if not seen:
        raise EmptyDatasetError("no labels found in the source")
    names = sorted(seen) if sort else list(seen)
    return LabelVocabulary(names, multi_label=multi_label)


__all__ = [
    "DEFAULT_LABEL_KEYS",
    "LABEL_KEY_COLUMNS",
    "LabelTable",
    "LabelVocabulary",
    "build_label_vocabulary",
    "normalize_labels",
    "read_label_csv",
]
