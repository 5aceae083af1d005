"""One import root: the installed `modeling_audiomosaic` package (its data side is the subpackage
`modeling_audiomosaic.feature_extraction`, from the repository's `feature_extraction/` folder), no generic top-level
`feature_extraction` module, no import-path edits, and scripts that import packages only (never each other or tests)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import modeling_audiomosaic
from modeling_audiomosaic import feature_extraction

REPO = Path(__file__).resolve().parents[1]
SKIPPED_DIRS = {".git", ".cache", ".venv", "venv", "build", "dist", "outputs", "runs", "__pycache__"}


def _python_files() -> list[Path]:
    files = []
    for root, dirs, names in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info")]
        files += [Path(root) / n for n in names if n.endswith(".py")]
    return sorted(files)


def _imported_roots(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, top-level module name) of every absolute import in `tree`, nested ones included."""
    roots = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.append((node.lineno, node.module.split(".")[0]))
    return roots


def _is_path_edit(node: ast.AST) -> bool:
    """A call of a method of the interpreter's import path list (insert, append, ...), or an assignment (plain,
    augmented or to a slice) to it."""
    def is_import_path(expr: ast.AST) -> bool:
        if isinstance(expr, ast.Subscript):
            expr = expr.value
        return isinstance(expr, ast.Attribute) and expr.attr == "path" and ast.unparse(expr.value) == "sys"

    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return is_import_path(node.func.value)
    if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return any(is_import_path(t) for t in targets)
    return False


CLEAN_PROCESS = textwrap.dedent(
    """
    import json, sys
    result = {}
    try:
        import feature_extraction
    except ModuleNotFoundError as err:
        result["top_level"] = "missing" if err.name == "feature_extraction" else repr(err)
    else:
        result["top_level"] = feature_extraction.__file__
    import modeling_audiomosaic
    import modeling_audiomosaic.feature_extraction as fe
    import modeling_audiomosaic.feature_extraction.offline_corpus as corpus
    from modeling_audiomosaic import (
        AudioMosaicFeatureExtractor, ContrastiveViewGenerator, DecodeOptions, load_audio_dataset,
    )
    result["same_objects"] = (
        AudioMosaicFeatureExtractor is fe.AudioMosaicFeatureExtractor
        and ContrastiveViewGenerator is fe.ContrastiveViewGenerator
        and DecodeOptions is fe.DecodeOptions and load_audio_dataset is fe.load_audio_dataset
    )
    result["fe_file"] = fe.__file__
    result["corpus_file"] = corpus.__file__
    result["extractor_module"] = AudioMosaicFeatureExtractor.__module__
    result["in_dir"] = "load_audio_dataset" in dir(modeling_audiomosaic)
    result["in_all"] = "DecodeOptions" in modeling_audiomosaic.__all__
    result["old_name_loaded"] = sorted(m for m in sys.modules if m.split(".")[0] == "feature_extraction")
    print("@@" + json.dumps(result))
    """
)


def test_installed_package_in_a_clean_process(tmp_path):
    """Outside the repository (another working directory, no PYTHONPATH), `import feature_extraction` fails while the
    subpackage and the data-side names of `modeling_audiomosaic` import: the installed package is the one root."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", CLEAN_PROCESS], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("@@", 1)[1])
    assert result["top_level"] == "missing", f"a top-level `feature_extraction` is importable: {result['top_level']}"
    assert result["same_objects"] and result["in_dir"] and result["in_all"]
    assert Path(result["fe_file"]) == REPO / "feature_extraction" / "__init__.py"
    assert Path(result["corpus_file"]) == REPO / "feature_extraction" / "offline_corpus" / "__init__.py"
    assert result["extractor_module"] == "modeling_audiomosaic.feature_extraction.feature_extraction_audiomosaic"
    assert result["old_name_loaded"] == []


def test_lazy_data_names_are_the_subpackage_api():
    assert tuple(feature_extraction.__all__) == modeling_audiomosaic._DATA_API_NAMES
    for name in modeling_audiomosaic._DATA_API_NAMES:
        assert getattr(modeling_audiomosaic, name) is getattr(feature_extraction, name), name
        assert name in modeling_audiomosaic.__all__ and name in dir(modeling_audiomosaic)
    with pytest.raises(AttributeError, match="has no attribute 'not_a_name'"):
        _ = modeling_audiomosaic.not_a_name


def test_no_import_path_edits_outside_conftest():
    """The packages come from the installation; the one path edit is tests/conftest.py's (exposing run_scripts/)."""
    samples = ["sys.path.insert(0, 'x')", "sys.path.append('x')", "sys.path[:] = []", "sys.path = []",
               "sys.path += ['x']", "print(sys.path)", "os.path.join('a')"]
    assert [any(_is_path_edit(n) for n in ast.walk(ast.parse(code))) for code in samples] == [True] * 5 + [False] * 2
    edits = []
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        edits += [f"{path.relative_to(REPO)}:{n.lineno}" for n in ast.walk(tree) if _is_path_edit(n)]
    assert len(edits) == 1 and edits[0].startswith("tests/conftest.py:"), edits


def test_nothing_imports_the_old_top_level_name():
    old = [f"{path.relative_to(REPO)}:{line}" for path in _python_files()
           for line, root in _imported_roots(ast.parse(path.read_text(encoding="utf-8")))
           if root == "feature_extraction"]
    assert not old, f"absolute `feature_extraction` imports (use modeling_audiomosaic.feature_extraction): {old}"


def test_scripts_import_packages_only():
    """A script never imports another script or a test module: shared code lives in the packages."""
    scripts = sorted((REPO / "run_scripts").glob("*.py"))
    forbidden = {p.stem for p in scripts} | {p.stem for p in (REPO / "tests").rglob("*.py")} | {"tests", "dist_scripts"}
    found = []
    for script in scripts:
        tree = ast.parse(script.read_text(encoding="utf-8"))
        found += [f"{script.name}:{line} imports {root}" for line, root in _imported_roots(tree) if root in forbidden]
        found += [f"{script.name}:{n.lineno} relative import" for n in ast.walk(tree)
                  if isinstance(n, ast.ImportFrom) and n.level > 0]
    assert not found, found
