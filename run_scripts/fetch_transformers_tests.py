#!/usr/bin/env python
"""Fetch transformers' own generic model tests for the installed transformers version (set-up step, stdlib only).

    python run_scripts/fetch_transformers_tests.py            # idempotent: does nothing when already fetched
    python run_scripts/fetch_transformers_tests.py --force    # download and extract again
    python run_scripts/fetch_transformers_tests.py --sdist transformers-5.25.0.tar.gz   # offline, from a local sdist

`tests/test_transformers_conformance.py` runs `ModelTesterMixin`, `ConfigTester` and
`SequenceFeatureExtractionTestMixin` against the AudioMosaic classes. Those mixins are not part of the transformers
wheel, so this script downloads the source distribution of the *installed* version from PyPI
(`pip download --no-binary :all: --no-deps transformers==<version>`) and lays the few files the tests need out as an
importable package (never committed):

    .cache/transformers_tests/<version>/transformers-<version>.tar.gz      the sdist (kept: reruns do not download)
    .cache/transformers_tests/<version>/transformers_generic_tests/       the package the test module imports
        test_modeling_common.py, test_configuration_common.py, test_feature_extraction_common.py,
        test_sequence_feature_extraction_common.py                          verbatim from the sdist's tests/
        exporters/, generation/, utils/                                     helper modules they import (see below)
        FETCHED.json                                                        version, sdist sha256, origin of each file

The sdist ships only the top-level `tests/*.py` files, not the sub-folders the common files import from
(`tests/exporters/test_export.py`, `tests/generation/test_utils.py`, `tests/utils/test_configuration_utils.py`) nor
the per-model tests (`tests/models/...`). A helper module the sdist lacks is written as a small stand-in instead,
listed as such in FETCHED.json:

* `exporters.test_export.ExportTesterMixin`: empty, so the torch.export / ONNX / ExecuTorch export tests of the
  mixin are not run (this project tests its ONNX export in tests/test_compile_onnx.py);
* `generation.test_utils.GenerationTesterMixin`: empty (only used for `issubclass` checks; the AudioMosaic classes do
  not generate);
* `utils.test_configuration_utils.config_common_kwargs`: one non-default value for each common argument of the
  installed `PreTrainedConfig`, which `ConfigTester.check_config_arguments_init` sets and reads back.

Only the standard library and pip (of the interpreter running this script) are used, so it runs before anything else
is installed. The cache location can be moved with `--cache_dir` or the `AUDIOMOSAIC_TRANSFORMERS_TESTS_CACHE`
environment variable (the test module reads the same variable).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
CACHE_ENV = "AUDIOMOSAIC_TRANSFORMERS_TESTS_CACHE"
DEFAULT_CACHE_DIR = REPO / ".cache" / "transformers_tests"
PACKAGE = "transformers_generic_tests"
MANIFEST = "FETCHED.json"
# the generic test files the conformance tests use, from the sdist's top-level tests/ folder
COMMON_FILES = (
    "test_modeling_common.py",
    "test_configuration_common.py",
    "test_feature_extraction_common.py",
    "test_sequence_feature_extraction_common.py",
)
FETCH_COMMAND = "python run_scripts/fetch_transformers_tests.py"

# Stand-ins for helper modules the common files import but the sdist does not ship (module path -> source).
_STAND_IN_NOTE = "Stand-in written by run_scripts/fetch_transformers_tests.py: the transformers sdist does not ship"
STAND_INS: dict[str, str] = {
    "exporters.test_export": f'''"""{_STAND_IN_NOTE} tests/exporters/,
so the export tests of `ModelTesterMixin` (torch.export / ONNX / ExecuTorch) are not run."""


class ExportTesterMixin:
    """Empty: no export tests."""
''',
    "generation.test_utils": f'''"""{_STAND_IN_NOTE} tests/generation/.
`test_modeling_common` only uses `GenerationTesterMixin` in `issubclass` checks (a tester of a model that cannot
generate must not inherit it)."""


class GenerationTesterMixin:
    """Empty: no generation tests."""
''',
    "utils.test_configuration_utils": f'''"""{_STAND_IN_NOTE} tests/utils/.
`ConfigTester.check_config_arguments_init` builds a config from `config_common_kwargs` and checks that every value is
set: one non-default value for each common argument of `PreTrainedConfig`."""

config_common_kwargs = {{
    "return_dict": False,
    "output_hidden_states": True,
    "output_attentions": True,
    "dtype": "float16",
    "chunk_size_feed_forward": 4,
    "architectures": ["PreTrainedModel"],
    "id2label": {{0: "first"}},
    "label2id": {{"first": 0}},
    "problem_type": "regression",
}}
''',
}

# Fingerprint of what this script lays out: a layout written by another revision of the script is redone (from the kept
# sdist) instead of being reused.
LAYOUT_ID = hashlib.sha256(json.dumps([COMMON_FILES, STAND_INS], sort_keys=True).encode()).hexdigest()[:16]


class FetchError(RuntimeError):
    """The generic tests could not be fetched or laid out (the message says why and what to do)."""


class GenericTestsMissingError(FileNotFoundError):
    """The fetched generic tests are not in the cache for the installed transformers version."""


# ----------------------------------------------------------------------------------------------------------------------
# Locations
# ----------------------------------------------------------------------------------------------------------------------
def installed_transformers_version() -> str:
    """The version of the transformers distribution installed for this interpreter."""
    try:
        return importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError as err:
        raise FetchError(
            f"transformers is not installed for {sys.executable}; install the project first "
            "(bash run_scripts/setup_env.sh) or pass --version."
        ) from err


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir`, else `$AUDIOMOSAIC_TRANSFORMERS_TESTS_CACHE`, else `<repo>/.cache/transformers_tests`."""
    return Path(cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR)


def package_dir(version: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Folder of the importable package of `version`'s generic tests."""
    return cache_root(cache_dir) / version / PACKAGE


# ----------------------------------------------------------------------------------------------------------------------
# Download and extraction
# ----------------------------------------------------------------------------------------------------------------------
def download_sdist(version: str, dest: Path) -> Path:
    """`pip download` the transformers sdist of `version` into `dest`; returns the archive's path."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "--disable-pip-version-check",
        "--dest", str(dest), f"transformers=={version}",
    ]
    print(f"[fetch_transformers_tests] {' '.join(cmd)}", flush=True)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as err:
        raise FetchError(f"could not run pip ({err}); is pip installed for {sys.executable}?") from err
    archives = sorted(dest.glob(f"transformers-{version}.tar.gz"))
    if proc.returncode != 0 or not archives:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise FetchError(
            f"pip could not download the transformers {version} source distribution from the package index "
            f"(exit {proc.returncode}):\n  " + "\n  ".join(tail) + "\nCheck the network / index settings, or download "
            f"transformers-{version}.tar.gz elsewhere and pass it with --sdist."
        )
    return archives[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sdist_tests(archive: Path, version: str) -> tuple[tarfile.TarFile, dict[str, tarfile.TarInfo]]:
    """Open the sdist of `version` and index its regular files under `<top>/tests/` by their path relative to
    `tests/`."""
    try:
        tar = tarfile.open(archive, "r:gz")
    except (tarfile.TarError, OSError) as err:
        raise FetchError(f"{archive} is not a readable .tar.gz source distribution ({err}); delete it, rerun.") from err
    members: dict[str, tarfile.TarInfo] = {}
    tops = set()
    for info in tar.getmembers():
        parts = info.name.split("/")
        tops.add(parts[0])
        if info.isfile() and len(parts) >= 3 and parts[1] == "tests" and ".." not in parts:
            members["/".join(parts[2:])] = info
    if tops != {f"transformers-{version}"}:
        tar.close()
        raise FetchError(f"{archive.name} is not the transformers {version} sdist (top folder {sorted(tops)}).")
    if not members:
        tar.close()
        raise FetchError(f"{archive.name} has no tests/ folder; the generic tests cannot be taken from it.")
    return tar, members


def _relative_imports(source: str, module: str) -> set[str]:
    """Modules (dotted, relative to the package root) that `module`'s source imports with relative imports."""
    package_parts = module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = package_parts[: len(package_parts) - (node.level - 1)]
            target = ".".join([*base, node.module] if node.module else base)
            if node.module:
                found.add(target)
            else:  # `from . import x`: x are modules of the package
                found.update(".".join([*base, alias.name]) for alias in node.names)
    return found


def lay_out_package(archive: Path, target: Path, version: str) -> dict:
    """Write the package of generic tests to `target` from the sdist `archive`; returns the manifest written."""
    tar, members = _sdist_tests(archive, version)
    origins: dict[str, str] = {}
    try:
        missing = [name for name in COMMON_FILES if name not in members]
        if missing:
            raise FetchError(
                f"{archive.name} lacks tests/{', tests/'.join(missing)}; the conformance tests need "
                f"{', '.join(COMMON_FILES)}."
            )
        todo = [name[: -len(".py")] for name in COMMON_FILES]
        seen: set[str] = set()
        while todo:
            module = todo.pop()
            if module in seen:
                continue
            seen.add(module)
            relpath = module.replace(".", "/") + ".py"
            if relpath in members:
                source = tar.extractfile(members[relpath]).read().decode("utf-8")
                origins[relpath] = "sdist"
                todo.extend(_relative_imports(source, module))
            elif module in STAND_INS:
                source = STAND_INS[module]
                origins[relpath] = "stand-in"
            else:
                raise FetchError(
                    f"the generic tests import `.{module}`, which {archive.name} does not ship and for which there "
                    "is no stand-in in run_scripts/fetch_transformers_tests.py (STAND_INS): add one."
                )
            out = target / relpath
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(source, encoding="utf-8")
    finally:
        tar.close()
    folders = {target} | {(target / relpath).parent for relpath in origins}
    for folder in sorted(folders):  # every folder of the package is a package
        init = folder / "__init__.py"
        if not init.exists():
            init.write_text(f'"""Generic tests of transformers {version} (fetched, never committed)."""\n')
    reference_tests = sorted(p for p in members if p.startswith("models/audio_spectrogram_transformer/"))
    manifest = {
        "transformers_version": version,
        "layout_id": LAYOUT_ID,
        "sdist": archive.name,
        "sdist_sha256": _sha256(archive),
        "files": dict(sorted(origins.items())),
        "sdist_has_per_model_tests": bool(reference_tests),
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def read_manifest(target: Path, version: str) -> dict | None:
    """The manifest of the package laid out in `target`, or `None` when it is absent or unreadable, is of another
    transformers version or another revision of this script, or names a missing file."""
    try:
        manifest = json.loads((target / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if manifest.get("transformers_version") != version or manifest.get("layout_id") != LAYOUT_ID:
        return None
    if not all((target / relpath).is_file() for relpath in manifest.get("files", {})):
        return None
    return manifest


def fetch(version: str | None = None, cache_dir: str | os.PathLike | None = None, sdist: str | None = None,
          force: bool = False) -> dict:
    """Make sure the generic tests of `version` (default: installed) are laid out in the cache; returns the manifest.

    Idempotent: an existing complete layout is kept unless `force`; a kept sdist is not downloaded again.
    """
    version = version or installed_transformers_version()
    version_dir = cache_root(cache_dir) / version
    target = version_dir / PACKAGE
    manifest = read_manifest(target, version)
    if manifest is not None and not force:
        print(f"[fetch_transformers_tests] transformers {version} generic tests already in {target}")
        return manifest
    version_dir.mkdir(parents=True, exist_ok=True)
    if sdist is not None:
        archive = Path(sdist)
        if not archive.is_file():
            raise FetchError(f"--sdist {sdist}: no such file.")
    else:
        archive = version_dir / f"transformers-{version}.tar.gz"
        if force or not archive.is_file():
            with tempfile.TemporaryDirectory(dir=version_dir) as tmp:
                downloaded = download_sdist(version, Path(tmp))
                os.replace(downloaded, archive)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=version_dir))
    try:
        manifest = lay_out_package(archive, staging / PACKAGE, version)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging / PACKAGE, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    stand_ins = [p for p, origin in manifest["files"].items() if origin == "stand-in"]
    print(f"[fetch_transformers_tests] transformers {version} generic tests in {target} "
          f"({len(manifest['files']) - len(stand_ins)} files from {archive.name}, stand-ins: {', '.join(stand_ins)})")
    return manifest


# ----------------------------------------------------------------------------------------------------------------------
# Loading (used by tests/test_transformers_conformance.py)
# ----------------------------------------------------------------------------------------------------------------------
def load_generic_tests(version: str | None = None, cache_dir: str | os.PathLike | None = None) -> ModuleType:
    """Import the fetched package of generic tests (as `transformers_generic_tests`) and return it.

    The package is loaded from its file location and registered in `sys.modules` so that its relative imports work;
    the import path is not changed. Its modules are then importable as `transformers_generic_tests.<name>`.

    Raises:
        GenericTestsMissingError: the package of `version` (default: installed) is not in the cache; the message
            says how to fetch it.
    """
    version = version or installed_transformers_version()
    target = package_dir(version, cache_dir)
    manifest = read_manifest(target, version)
    if manifest is None:
        raise GenericTestsMissingError(
            f"transformers' generic model tests for the installed transformers {version} are not in {target} (or "
            "were laid out by another revision of the fetch script). "
            f"Fetch them with `{FETCH_COMMAND}` (run_scripts/setup_env.sh does this; it downloads the transformers "
            f"{version} sdist from PyPI, or use --sdist with a local copy)."
        )
    loaded = sys.modules.get(PACKAGE)
    if loaded is not None:
        if Path(loaded.__file__).resolve().parent != target.resolve():
            raise RuntimeError(f"another `{PACKAGE}` ({loaded.__file__}) is already imported; expected {target}.")
        return loaded
    spec = importlib.util.spec_from_file_location(PACKAGE, target / "__init__.py",
                                                  submodule_search_locations=[str(target)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[PACKAGE]
        raise
    module.MANIFEST = manifest
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", default=None,
                        help="transformers version whose tests to fetch (default: the installed one)")
    parser.add_argument("--cache_dir", default=None,
                        help=f"cache folder (default: ${CACHE_ENV} or <repo>/.cache/transformers_tests)")
    parser.add_argument("--sdist", default=None, help="use this local transformers-<version>.tar.gz (no download)")
    parser.add_argument("--force", action="store_true", help="download and lay out again even if already done")
    args = parser.parse_args(argv)
    try:
        fetch(args.version, args.cache_dir, args.sdist, args.force)
    except FetchError as err:
        print(f"[fetch_transformers_tests] error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
