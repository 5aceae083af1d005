"""Local sources: which kind of source a path is, and the records of audio folders, JSON manifests and CSV files.

* ``"folder"``: audio files (recursive, sorted), label = parent folder name ([`scan_audio_folder`]);
* ``"manifest"``: AudioSet/AST-style JSON ``{"data": [{"wav": path, "labels": "mid1,mid2"}]}``, a top-level list, or
  JSON lines ([`read_manifest`]);
* ``"csv"``: a CSV/TSV file with a header row and path / label columns ([`read_csv_manifest`]);
* ``"parquet"`` (an audio bytes column) and ``"webdataset"`` (``.tar`` shards): read by `datasets`' own builders (see
  ``loading.py``).

Records are plain dicts ``{"audio": path, "labels": list | None, "id": str, "group": str | None}``; the loaders turn
them into a `datasets.Dataset` decoded by an ``ExampleDecoder``.
"""

from __future__ import annotations

import csv
import glob
import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

from .labels import DEFAULT_LABEL_KEYS, normalize_labels
from .records import AUTO, DEFAULT_AUDIO_KEYS, DecodeOptions, check_columns
from .skips import EmptyDatasetError

PathLike = Union[str, os.PathLike]  # noqa: UP007 (a runtime alias)

AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif")
"""File extensions collected by the ``"folder"`` source (all readable by soundfile >= 0.12)."""

SOURCE_TYPES: tuple[str, ...] = ("folder", "manifest", "csv", "parquet", "webdataset", "hub")

_SUFFIX_TO_SOURCE = {
    ".json": "manifest",
    ".jsonl": "manifest",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".tar": "webdataset",
    **{ext: "folder" for ext in AUDIO_EXTENSIONS},
}


def _has_glob(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def expand_paths(path_or_paths: PathLike | Sequence[PathLike], suffixes: Sequence[str]) -> list[str]:
    """Files with one of ``suffixes`` under a directory (recursive), matching a glob, or listed explicitly."""
    items = [path_or_paths] if isinstance(path_or_paths, (str, os.PathLike)) else list(path_or_paths)
    files: list[str] = []
    for item in items:
        p = os.fspath(item)
        if _has_glob(p):
            matches = sorted(glob.glob(p, recursive=True))
            if not matches:
                raise FileNotFoundError(f"no file matches {p!r}")
            files.extend(m for m in matches if os.path.isfile(m))
        elif os.path.isdir(p):
            files.extend(sorted(str(f) for f in Path(p).rglob("*") if f.is_file() and f.suffix.lower() in suffixes))
        elif os.path.isfile(p):
            files.append(p)
        else:
            raise FileNotFoundError(f"{p!r} does not exist (to load a Hub dataset, pass dataset_name=...)")
    return files


def detect_source_type(path: PathLike | Sequence[PathLike]) -> str:
    """Guess the local source type of a path, glob or list of paths (one of [`SOURCE_TYPES`] except ``"hub"``).

    Files: ``.json``/``.jsonl`` → manifest, ``.csv``/``.tsv`` → csv, ``.parquet`` → parquet, ``.tar`` → webdataset,
    audio files → folder. Directories: audio files inside (recursive) → folder, else parquet files → parquet, else
    ``.tar`` files → webdataset.
    """
    items = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not items:
        raise EmptyDatasetError("no path given")
    kinds = set()
    for item in items:
        p = os.fspath(item)
        if os.path.isdir(p):
            found: Counter[str] = Counter()
            for f in Path(p).rglob("*"):  # stops at the first audio file (large folders)
                suffix = f.suffix.lower()
                if suffix in AUDIO_EXTENSIONS and f.is_file():
                    found[suffix] += 1
                    break
                if f.is_file():
                    found[suffix] += 1
            if any(ext in found for ext in AUDIO_EXTENSIONS):
                kinds.add("folder")
            elif ".parquet" in found:
                kinds.add("parquet")
            elif ".tar" in found:
                kinds.add("webdataset")
            else:
                raise EmptyDatasetError(
                    f"no audio, parquet or .tar files under {p!r} (found extensions {dict(found) or 'none'}); "
                    f"audio extensions: {AUDIO_EXTENSIONS}"
                )
            continue
        files = expand_paths(p, tuple(_SUFFIX_TO_SOURCE))
        for f in files:
            suffix = Path(f).suffix.lower()
            if suffix not in _SUFFIX_TO_SOURCE:
                raise ValueError(f"cannot tell the source type of {f!r}; pass source_type= (one of {SOURCE_TYPES})")
            kinds.add(_SUFFIX_TO_SOURCE[suffix])
    if len(kinds) != 1:
        raise ValueError(f"paths of several source types {sorted(kinds)}; load them separately")
    return kinds.pop()


def scan_audio_folder(
    path: PathLike | Sequence[PathLike],
    *,
    folder_labels: bool = True,
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
) -> list[dict[str, Any]]:
    """Records ``{"audio": path, "labels": [parent folder] | None, "id": relative path, "group": None}`` for the
    audio files under ``path`` (recursive, sorted). Files directly in the root folder get no label."""
    items = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    exts = tuple(e.lower() for e in extensions)
    records = []
    for item in items:
        root = Path(os.fspath(item))
        if root.is_dir():
            files = sorted(f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in exts)
        else:
            files = [Path(f) for f in expand_paths(item, exts)]
            root = None
        for f in files:
            rel = f.relative_to(root).as_posix() if root is not None else f.as_posix()
            label = None
            if folder_labels and (root is None or f.parent != root):
                label = [f.parent.name]
            records.append({"audio": str(f), "labels": label, "id": rel, "group": None})
    return records


def _first(columns: Any) -> str | None:
    """One column name of a column option (the first candidate of a tuple)."""
    return columns if columns is None or isinstance(columns, str) else columns[0]


def _pick(
    columns: Sequence[str], requested: str | None, defaults: Sequence[str], what: str, where: str, required: bool
) -> str | None:
    if requested is None:
        return None
    if requested != AUTO:
        check_columns(columns, [requested], where)
        return requested
    for name in defaults:
        if name in columns:
            return name
    if required:
        raise ValueError(
            f"no {what} column found in {where} (tried {list(defaults)}); available columns: {list(columns)}; "
            f"pass {what}_column=..."
        )
    return None


def _table_records(rows: list[Mapping[str, Any]], base_dir: Path, where: str, options: DecodeOptions) -> list[dict]:
    columns = list(rows[0].keys()) if rows else []
    audio_col = _pick(columns, _first(options.audio_column), ("wav",) + DEFAULT_AUDIO_KEYS, "audio", where, True)
    label_col = _pick(columns, _first(options.label_column), DEFAULT_LABEL_KEYS, "label", where, False)
    id_col = _pick(columns, options.id_column, ("id",), "id", where, False)
    group_col = _pick(columns, options.group_column, (), "group", where, False)
    records = []
    for i, row in enumerate(rows):
        raw_path = row.get(audio_col)
        if raw_path in (None, ""):
            audio = None
        else:
            raw_path = str(raw_path)
            is_remote = "://" in raw_path
            audio = raw_path if (is_remote or os.path.isabs(raw_path)) else str(base_dir / raw_path)
        labels = None
        if label_col is not None:
            try:
                labels = normalize_labels(row.get(label_col), delimiter=options.label_delimiter)
            except TypeError:
                labels = None
        example_id = row.get(id_col) if id_col else None
        records.append(
            {
                "audio": audio,
                "labels": labels,
                "id": str(example_id) if example_id is not None else (str(raw_path) if raw_path else f"{where}#{i}"),
                "group": None if group_col is None or row.get(group_col) is None else str(row.get(group_col)),
            }
        )
    return records


def read_manifest(path: PathLike, options: DecodeOptions | None = None, **decode_options: Any) -> list[dict[str, Any]]:
    """Records from an AudioSet/AST-style JSON manifest ``{"data": [{"wav": ..., "labels": "m1,m2"}]}``, a
    top-level JSON list, or JSON lines (``.jsonl``). Relative paths are resolved against the manifest's folder.

    Uses the column and ``label_delimiter`` fields of the [`DecodeOptions`] (``options`` and/or keyword arguments).
    ``"auto"`` columns: audio ``wav``/``audio``/``path``/..., labels ``labels``/``label``, id ``id`` (else the path as
    written); a tuple of candidates uses its first name.
    """
    options = DecodeOptions.build(options, caller="read_manifest", **decode_options)
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".jsonl":
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        obj = json.loads(text)
        if isinstance(obj, Mapping):
            if "data" not in obj:
                raise ValueError(f"{path}: a JSON manifest object needs a 'data' list; keys: {list(obj.keys())}")
            rows = obj["data"]
        else:
            rows = obj
    if not isinstance(rows, list) or not rows:
        raise EmptyDatasetError(f"manifest {path} has no entries")
    return _table_records(rows, path.parent, str(path), options)


def read_csv_manifest(
    path: PathLike, options: DecodeOptions | None = None, *, delimiter: str | None = None, **decode_options: Any
) -> list[dict[str, Any]]:
    """Records from a CSV/TSV file with a header row (``"auto"`` audio column: ``path``/``wav``/``filename``/...,
    label ``labels``/``label``). Relative paths are resolved against the file's folder. Labels are split on
    ``label_delimiter`` (quote multi-label cells: ``"m1,m2"``). ``delimiter`` separates the cells (default: tab for
    ``.tsv``, else comma). Options as in [`read_manifest`]."""
    options = DecodeOptions.build(options, caller="read_csv_manifest", **decode_options)
    path = Path(path)
    if delimiter is None:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter=delimiter))
    if not rows:
        raise EmptyDatasetError(f"CSV file {path} has no rows")
    return _table_records(rows, path.parent, str(path), options)


__all__ = [
    "AUDIO_EXTENSIONS",
    "SOURCE_TYPES",
    "detect_source_type",
    "expand_paths",
    "read_csv_manifest",
    "read_manifest",
    "scan_audio_folder",
]
