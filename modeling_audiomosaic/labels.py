"""Label index files of the released AudioMosaic classifiers, shipped as package data.

Each CSV has the columns ``index,mid,display_name`` in the exact output-unit order of the released heads.
"""

from __future__ import annotations

from pathlib import Path

from .feature_extraction.labels import read_label_csv

LABELS_DIR = Path(__file__).parent / "labels"

LABEL_FILES: dict[str, str] = {
    "audioset": "audioset_class_labels_indices.csv",  # 527 classes, AudioSet ontology order
    "esc50": "esc50_class_labels_indices.csv",  # 50 classes
    "speechcommands_v1": "speechcommands_v1_class_labels_indices.csv",  # 11 = 10 words + _unknown_
    "speechcommands_v2": "speechcommands_v2_class_labels_indices.csv",  # 35 words
}


def load_label_file(name: str) -> dict[int, str]:
    """Return ``id2label`` (output index -> display name) for a released label set.

    Args:
        name: one of ``"audioset"``, ``"esc50"``, ``"speechcommands_v1"``, ``"speechcommands_v2"``, or a path to a CSV
            with the columns ``index,mid,display_name``.
    """
    path = LABELS_DIR / LABEL_FILES[name] if name in LABEL_FILES else Path(name)
    if not path.is_file():
        raise ValueError(f"Unknown label set {name!r}: use one of {sorted(LABEL_FILES)} or a path to a CSV file.")
    table = read_label_csv(path, required_columns=("index", "display_name"))  # rows in index order, 0..n-1 checked
    return dict(enumerate(table.column("display_name")))
