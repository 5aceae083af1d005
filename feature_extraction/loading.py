"""Loading audio datasets: [`load_audio_dataset`] for every source, [`wrap_hf_dataset`] for `datasets` objects.

Every source yields the examples ``{"audio", "labels", "id", "group"}`` described in ``records.py``. Sources:

* ``dataset_name=...``: anything `datasets.load_dataset` accepts -- a Hub repository ("org/repo"), a local dataset
  folder, or a packaged builder ("parquet", "webdataset", ...) with ``data_files``. All go through one code path.
* ``path=...`` (local, type auto-detected or given with ``source_type``): ``"folder"``, ``"manifest"``, ``"csv"``
  (see ``sources.py``), ``"parquet"`` (an audio bytes column: struct ``{bytes, path}`` or plain binary) and
  ``"webdataset"`` (``.tar`` shards with ``key.wav|flac|ogg|mp3|opus`` members and optional
  ``key.json``/``key.cls``/``key.txt`` labels). Local parquet and webdataset sources are read by `datasets`' own
  builders.

Decoding never uses `datasets`' ``Audio`` feature: in datasets 5.x it decodes (and even *encodes*) through torchcodec,
which cannot be loaded with CPU torch builds. What works here, verified with datasets 5.2.0 and no torchcodec:

* Parquet written without HF metadata has a plain struct column ``audio: {bytes: binary, path: string}``; it is read
  as-is, in both map-style and streaming mode.
* Parquet/Hub datasets whose metadata declares ``Audio`` load fine, but iterating them raises ``ImportError``
  (torchcodec). ``cast_column(col, Audio(decode=False))`` works for `Dataset` and `IterableDataset` (no torchcodec
  call on the read path) and returns ``{"bytes", "path"}`` dicts; this module applies it to every top-level ``Audio``
  column. (``IterableDataset.decode(False)`` works too, but also disables ``Json`` decoding, so it is not used.)
* The ``webdataset`` builder infers ``Audio`` for ``.wav`` members and its inference fails outright when examples
  have different member types (``.wav`` here, ``.flac`` there). Explicit ``features=`` (see [`webdataset_features`])
  with ``Value("binary")`` audio fields and ``Json()`` for ``.json`` avoid both; missing members become ``None`` and
  undeclared members are dropped.
* The ``audiofolder`` builder fails even with ``Audio(decode=False)`` (its generator *encodes* through torchcodec). It
  works with ``load_kwargs={"features": Features({"audio": Value("string"), "label": ClassLabel(names=[...])})}``
  (the column then holds file paths). Local folders are scanned by ``sources.py`` instead.

`datasets` is imported lazily.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Union

from .audio_datasets import AudioDataset, AudioIterableDataset, require_datasets
from .labels import DEFAULT_LABEL_KEYS
from .records import AUTO, DEFAULT_ID_KEYS, DecodeOptions, ExampleDecoder, check_columns
from .skips import EmptyDatasetError, SkipCounter
from .sources import SOURCE_TYPES, detect_source_type, expand_paths, read_csv_manifest, read_manifest, scan_audio_folder

PathLike = Union[str, os.PathLike]  # noqa: UP007 (a runtime alias)

WEBDATASET_AUDIO_FIELDS: tuple[str, ...] = ("wav", "flac", "ogg", "mp3", "opus")
"""WebDataset member extensions read as audio (first non-empty one wins)."""

WEBDATASET_LABEL_FIELDS: tuple[str, ...] = ("json", "cls", "txt")
"""WebDataset member extensions read as labels, in priority order."""


def webdataset_features(
    audio_fields: Sequence[str] = WEBDATASET_AUDIO_FIELDS,
    *,
    json_field: bool = True,
    cls_field: bool = True,
    txt_field: bool = True,
    extra: Mapping[str, Any] | None = None,
):
    """Explicit ``datasets.Features`` for the ``webdataset`` builder that keep audio members as raw bytes.

    ``__key__``/``__url__`` strings, ``Value("binary")`` for each audio extension, ``Json()`` for ``.json``,
    ``Value("int64")`` for ``.cls`` and ``Value("string")`` for ``.txt``. Members an example lacks become ``None``;
    members not declared here are dropped (add them with ``extra``).
    """
    datasets = require_datasets()
    from datasets import Features, Value

    feats: dict[str, Any] = {"__key__": Value("string"), "__url__": Value("string")}
    for name in audio_fields:
        feats[name] = Value("binary")
    if json_field:
        feats["json"] = datasets.Json()
    if cls_field:
        feats["cls"] = Value("int64")
    if txt_field:
        feats["txt"] = Value("string")
    feats.update(extra or {})
    return Features(feats)


def _disable_audio_decoding(ds: Any) -> Any:
    """Cast every top-level ``Audio`` column to ``Audio(decode=False)`` (no torchcodec needed on that path)."""
    import datasets

    features = getattr(ds, "features", None)
    if not features:
        return ds
    for name, feature in features.items():
        if isinstance(feature, datasets.Audio) and feature.decode:
            ds = ds.cast_column(name, datasets.Audio(sampling_rate=None, decode=False))
    return ds


def _class_names(feature: Any) -> list[str] | None:
    import datasets

    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    inner = getattr(feature, "feature", None)
    if isinstance(inner, datasets.ClassLabel):
        return list(inner.names)
    return None


def _resolve_audio_columns(ds: Any, columns: list[str], requested: Any, is_wds: bool, where: str) -> Any:
    datasets = require_datasets()
    if requested != AUTO:
        names = (requested,) if isinstance(requested, str) else tuple(requested)
        check_columns(columns, names, where)
        return names
    if is_wds:
        return tuple(c for c in WEBDATASET_AUDIO_FIELDS if c in columns)
    if "audio" in columns:
        return "audio"
    features = ds.features or {}
    for col in columns:
        feat = features.get(col)
        if (
            isinstance(feat, datasets.Audio)
            or (isinstance(feat, Mapping) and "bytes" in feat)
            or (isinstance(feat, datasets.Value) and feat.dtype in ("binary", "large_binary"))
        ):
            return col
    raise ValueError(f"no audio column found in {where}; available columns: {columns}; pass audio_column=")


def _resolve_label_columns(columns: list[str], requested: Any, is_wds: bool, where: str) -> tuple[str, ...] | None:
    if requested is None:
        return None
    if requested != AUTO:
        names = (requested,) if isinstance(requested, str) else tuple(requested)
        check_columns(columns, names, where)
        return names
    if is_wds:
        found = tuple(c for c in WEBDATASET_LABEL_FIELDS if c in columns)
    else:
        found = tuple(c for c in DEFAULT_LABEL_KEYS if c in columns)[:1]
    return found or None


def wrap_hf_dataset(
    ds: Any,
    options: DecodeOptions | None = None,
    *,
    skip_counter: SkipCounter | None = None,
    max_retries: int = 10,
    name: str = "audio",
    **decode_options: Any,
) -> AudioDataset | AudioIterableDataset:
    """Wrap a `datasets.Dataset` / `datasets.IterableDataset` of audio records as an [`AudioDataset`] /
    [`AudioIterableDataset`].

    Decoding follows the [`DecodeOptions`] (``options`` and/or its field names as keyword arguments, e.g.
    ``label_column="category"``, ``max_seconds=10``). ``Audio`` columns are cast to ``Audio(decode=False)`` first.
    ``"auto"`` columns:

    * audio: WebDataset-like data (a ``__key__`` column) → the present members of [`WEBDATASET_AUDIO_FIELDS`]; else
      ``audio`` if present; else the first ``Audio``, ``{bytes, path}`` struct or binary column.
    * labels: WebDataset → ``json`` (key ``labels``/``label``), ``cls``, ``txt``; else ``labels`` or ``label`` if
      present; else no labels. ``ClassLabel`` ids become names when ``decode_class_labels``.
    * id: ``id`` or ``__key__`` if present; else the audio path; else a hash of the audio bytes.

    Unknown explicit columns raise ``ValueError`` listing the available columns; unknown keyword arguments raise
    ``TypeError``.
    """
    options = DecodeOptions.build(options, caller="wrap_hf_dataset", **decode_options)
    datasets = require_datasets()
    if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        raise ValueError(f"got a dict of splits {list(ds.keys())}; pass split=... to select one")
    if not isinstance(ds, (datasets.Dataset, datasets.IterableDataset)):
        raise TypeError(f"expected a datasets.Dataset or datasets.IterableDataset, got {type(ds).__name__}")
    if isinstance(ds, datasets.IterableDataset) and ds.features is None and hasattr(ds, "_resolve_features"):
        ds = ds._resolve_features()  # peeks at the first example to learn the columns
    ds = _disable_audio_decoding(ds)
    features = ds.features or {}
    columns = list(ds.column_names or features.keys())
    where = f"the dataset (split {getattr(ds, 'split', None)})"
    is_wds = "__key__" in columns and any(c in columns for c in WEBDATASET_AUDIO_FIELDS)

    audio_cols = _resolve_audio_columns(ds, columns, options.audio_column, is_wds, where)
    label_cols = _resolve_label_columns(columns, options.label_column, is_wds, where)
    if options.id_column == AUTO:
        id_col = next((c for c in DEFAULT_ID_KEYS if c in columns), None)
    else:
        id_col = options.id_column
        check_columns(columns, [id_col], where)
    check_columns(columns, [options.group_column], where)

    class_names = options.class_names
    if class_names is None and options.decode_class_labels and label_cols:
        for col in label_cols:
            class_names = class_names or _class_names(features.get(col))

    decoder = ExampleDecoder(
        options.replace(audio_column=audio_cols, label_column=label_cols, id_column=id_col, class_names=class_names),
        skip_counter=skip_counter if skip_counter is not None else SkipCounter(name),
    )
    if isinstance(ds, datasets.IterableDataset):
        return AudioIterableDataset(ds, decoder, name=name)
    return AudioDataset(ds, decoder, max_retries=max_retries, name=name)


def _is_local_webdataset_folder(name: str, data_dir: str | None) -> bool:
    """A local folder (``load_dataset("<dir>")``) whose data files are ``.tar`` shards and no parquet: `datasets`
    then picks its ``webdataset`` builder, which needs [`webdataset_features`] as the ``"webdataset"`` name does."""
    folder = os.path.join(name, data_dir) if data_dir else name
    if not os.path.isdir(folder):
        return False
    suffixes = {os.path.splitext(f)[1].lower() for _, _, files in os.walk(folder) for f in files}
    return ".tar" in suffixes and ".parquet" not in suffixes


def _local_webdataset_tars(folder: str) -> dict[str, list[str]] | None:
    """The ``.tar`` files of a local WebDataset folder per split (as `datasets` resolves the folder's files into
    splits) when the folder also holds other data files -- e.g. the ``transcode_summary.json`` of
    ``transcode_shards.py`` or a ``shards.json`` -- which `datasets` would otherwise count when it picks the builder
    (one ``.json`` beside one ``.tar`` selects its ``json`` builder) and hand to the ``webdataset`` builder as shards.
    ``None`` when every data file is a ``.tar`` (the folder is then loaded as before)."""
    from datasets.data_files import DataFilesDict, get_data_patterns

    files = DataFilesDict.from_patterns(get_data_patterns(folder), base_path=folder)
    if all(str(f).lower().endswith(".tar") for split_files in files.values() for f in split_files):
        return None
    tars = {split: [str(f) for f in split_files if str(f).lower().endswith(".tar")]
            for split, split_files in files.items()}
    return {split: split_files for split, split_files in tars.items() if split_files} or None


def _load_with_datasets(
    name: str,
    *,
    split: str,
    streaming: bool,
    config_name: str | None,
    data_files: Any,
    data_dir: str | None,
    revision: str | None,
    token: str | bool | None,
    cache_dir: str | None,
    load_kwargs: Mapping[str, Any] | None,
) -> Any:
    """``datasets.load_dataset`` for Hub repos, local dataset folders and packaged builders alike."""
    datasets = require_datasets()
    kwargs = dict(load_kwargs or {})
    local_wds = _is_local_webdataset_folder(name, data_dir)
    if "features" not in kwargs and (name == "webdataset" or local_wds):
        kwargs["features"] = webdataset_features()  # inference would pick Audio (torchcodec) or fail on mixed members
    if local_wds and data_files is None:
        tars = _local_webdataset_tars(os.path.join(name, data_dir) if data_dir else name)
        if tars is not None:  # other files beside the shards: read the shards only, with the webdataset builder
            name, data_files, data_dir = "webdataset", tars, None
    for key, value in (
        ("data_files", data_files),
        ("data_dir", data_dir),
        ("revision", revision),
        ("token", token),
        ("cache_dir", cache_dir),
    ):
        if value is not None:
            kwargs[key] = value
    try:
        ds = datasets.load_dataset(name, config_name, split=split, streaming=streaming, **kwargs)
    except ImportError as err:
        if "torchcodec" in str(err):
            raise ImportError(
                f"loading {name!r} needs torchcodec because its builder encodes audio (e.g. 'audiofolder'). Pass "
                "explicit non-Audio features, e.g. "
                "load_kwargs={'features': Features({'audio': Value('string'), ...})}, "
                "or load local files with path=..."
            ) from err
        raise
    except Exception as err:
        if "torchcodec" in repr(getattr(err, "__cause__", None)):
            raise ImportError(
                f"loading {name!r} failed because its builder encodes audio through torchcodec; pass explicit "
                "non-Audio features with load_kwargs={'features': ...} or load local files with path=..."
            ) from err
        raise
    return ds


def load_audio_dataset(
    path: PathLike | Sequence[PathLike] | None = None,
    *,
    dataset_name: str | None = None,
    source_type: str = AUTO,
    split: str = "train",
    streaming: bool = False,
    config_name: str | None = None,
    data_files: Any = None,
    data_dir: str | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | None = None,
    load_kwargs: Mapping[str, Any] | None = None,
    folder_labels: bool = True,
    num_shards: int | None = None,
    skip_counter: SkipCounter | None = None,
    max_retries: int = 10,
    options: DecodeOptions | None = None,
    **decode_options: Any,
) -> AudioDataset | AudioIterableDataset:
    """Load audio examples ``{"audio", "labels", "id", "group"}`` from a local source or through `datasets`.

    Give exactly one of:

    * ``dataset_name``: passed to ``datasets.load_dataset(dataset_name, config_name, split=..., streaming=...,
      data_files=..., ...)`` -- a Hub id (``"org/repo"``), a local dataset folder, or a builder such as
      ``"parquet"``/``"webdataset"`` with ``data_files``; ``load_kwargs`` are forwarded (e.g. ``features=``).
      ``"webdataset"`` gets [`webdataset_features`] unless ``features`` is given; for a Hub repository stored as
      WebDataset shards pass ``load_kwargs={"features": webdataset_features()}`` yourself (feature inference picks
      ``Audio`` and fails when examples carry different member types).
    * ``path``: a local file, folder, glob or list of them; ``source_type`` ``"auto"`` (see [`detect_source_type`]),
      ``"folder"``, ``"manifest"``, ``"csv"``, ``"parquet"``, ``"webdataset"`` or ``"hub"`` (= ``dataset_name=path``).
      Parquet and WebDataset files are read with the same ``load_dataset`` call (``data_files={split: files}``);
      folder/manifest/CSV records become an in-memory `datasets.Dataset` (``split`` is then ignored).

    Args:
        streaming: ``False`` → [`AudioDataset`] (map-style); ``True`` → [`AudioIterableDataset`]. For local
            folder/manifest/CSV sources the stream has ``num_shards`` shards (default ``min(#items, 64)``).
        folder_labels: folder source: label = parent folder name.
        skip_counter: share one [`SkipCounter`] between datasets (a new one by default).
        max_retries: map-style: consecutive bad items tolerated when substituting a bad index.
        options / **decode_options: the [`DecodeOptions`] -- as an object and/or as keyword arguments named like its
            fields: ``audio_column`` / ``label_column`` / ``id_column`` / ``group_column`` (``"auto"``: see
            [`wrap_hf_dataset`], [`read_manifest`], [`read_csv_manifest`]; ``label_column=None`` gives
            ``labels=None``), ``group_fn``, ``label_delimiter`` (``"m1,m2"`` → ``["m1", "m2"]``; ``None`` keeps
            labels whole), ``json_label_keys``, ``decode_class_labels``, ``sampling_rate`` / ``min_samples`` (output
            rate and the minimum length; shorter items are skipped), ``max_seconds`` / ``crop`` / ``pad`` /
            ``crop_seed`` (crop longer clips to ``max_seconds``: ``"random"`` start from a numpy Generator seeded
            with ``crop_seed`` mixed with the DataLoader worker id, ``"start"`` or ``"center"``; ``pad=True`` also
            zero-pads shorter ones).

    Raises:
        ValueError: unknown ``source_type``, both/neither of ``path``/``dataset_name``, unknown columns (the message
            lists the available ones), invalid option values.
        TypeError: a keyword argument that is neither a parameter nor a [`DecodeOptions`] field.
        EmptyDatasetError: a source without items.
        FileNotFoundError: a missing local path.
    """
    options = DecodeOptions.build(options, caller="load_audio_dataset", **decode_options)
    if (path is None) == (dataset_name is None):
        raise ValueError("give exactly one of `path` (local files) or `dataset_name` (datasets.load_dataset)")
    if source_type != AUTO and source_type not in SOURCE_TYPES:
        raise ValueError(f"unknown source_type {source_type!r}; expected 'auto' or one of {SOURCE_TYPES}")
    load_args = dict(
        split=split,
        streaming=streaming,
        config_name=config_name,
        data_dir=data_dir,
        revision=revision,
        token=token,
        cache_dir=os.fspath(cache_dir) if cache_dir is not None else None,
        load_kwargs=load_kwargs,
    )
    wrap_args = dict(skip_counter=skip_counter, max_retries=max_retries)

    if dataset_name is not None:
        if source_type not in (AUTO, "hub"):
            raise ValueError(f"source_type={source_type!r} needs `path`, not `dataset_name`")
        ds = _load_with_datasets(dataset_name, data_files=data_files, **load_args)
        return wrap_hf_dataset(ds, options, name=str(dataset_name), **wrap_args)

    kind = detect_source_type(path) if source_type == AUTO else source_type
    name = os.fspath(path) if isinstance(path, (str, os.PathLike)) else f"{len(list(path))} paths"
    if kind == "hub":
        ds = _load_with_datasets(os.fspath(path), data_files=data_files, **load_args)
        return wrap_hf_dataset(ds, options, name=name, **wrap_args)
    if kind in ("parquet", "webdataset"):
        suffix = ".parquet" if kind == "parquet" else ".tar"
        files = expand_paths(path, (suffix,))
        if not files:
            raise EmptyDatasetError(f"no {suffix} files in {name}")
        ds = _load_with_datasets(kind, data_files={split: files}, **load_args)
        return wrap_hf_dataset(ds, options, name=name, **wrap_args)

    # folder / manifest / csv → records → in-memory datasets.Dataset
    if kind == "folder":
        records = scan_audio_folder(path, folder_labels=folder_labels)
    elif kind in ("manifest", "csv"):
        reader = read_manifest if kind == "manifest" else read_csv_manifest
        files = expand_paths(path, (".json", ".jsonl") if kind == "manifest" else (".csv", ".tsv"))
        records = [record for f in files for record in reader(f, options)]
    else:  # pragma: no cover - guarded above
        raise ValueError(f"unknown source_type {kind!r}")
    if not records:
        raise EmptyDatasetError(f"no audio items found in {name} (source type {kind!r})")
    return _records_to_dataset(records, options, streaming=streaming, num_shards=num_shards, name=name, **wrap_args)


def _records_to_dataset(
    records: list[dict[str, Any]],
    options: DecodeOptions,
    *,
    streaming: bool,
    num_shards: int | None,
    name: str,
    skip_counter: SkipCounter | None,
    max_retries: int,
) -> AudioDataset | AudioIterableDataset:
    datasets = require_datasets()
    from datasets import Features, List, Value

    features = Features(
        {"audio": Value("string"), "labels": List(Value("string")), "id": Value("string"), "group": Value("string")}
    )
    columns = {key: [r[key] for r in records] for key in ("audio", "labels", "id", "group")}
    values = [x for labels in columns["labels"] if labels for x in labels]
    if values and all(isinstance(x, int) and not isinstance(x, bool) for x in values):
        features["labels"] = List(Value("int64"))
    else:  # strings (or a mix, stored as strings)
        columns["labels"] = [None if labels is None else [str(x) for x in labels] for labels in columns["labels"]]
    raw = datasets.Dataset.from_dict(columns, features=features)
    decoder = ExampleDecoder(
        options.replace(
            audio_column="audio",
            label_column="labels",
            id_column="id",
            group_column="group" if any(g is not None for g in columns["group"]) else None,
            label_delimiter=None,  # the records' labels are already split
            class_names=None,
        ),
        skip_counter=skip_counter if skip_counter is not None else SkipCounter(name),
    )
    dataset = AudioDataset(raw, decoder, max_retries=max_retries, name=name)
    if streaming:
        shards = num_shards if num_shards is not None else min(len(records), 64)
        return dataset.to_iterable_dataset(num_shards=max(1, min(shards, len(records))))
    return dataset


__all__ = [
    "WEBDATASET_AUDIO_FIELDS",
    "WEBDATASET_LABEL_FIELDS",
    "load_audio_dataset",
    "webdataset_features",
    "wrap_hf_dataset",
]
