"""Import the reference packages that run_scripts/setup_env.sh installs OUTSIDE site-packages.

Two third-party packages serve only as independent references for the parity tests and the benchmarks, and must not
be importable by default:

* timm 1.0.31 (``<venv>/timm_reference``): when it is importable, `accelerate launch` imports it at start-up and dies
  on the missing torchvision;
* audiomentations 0.43.1 and its dependencies (``<venv>/audiomentations_reference``): the original code's waveform
  augmentations, installed with ``--no-deps`` so that their pins stay out of the venv.

`import_reference_package` imports such a package from its folder without adding the folder to the import path: a
finder bound to that one folder is added to ``sys.meta_path``. With ``prefer_folder=False`` it is asked after the
regular path finder, so the venv's own packages (numpy, scipy, soxr, ...) stay first and only what the venv lacks
(audiomentations, librosa, ...) comes from the folder.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import sys
from types import ModuleType

TIMM_PATH_VARIABLE = "AUDIOMOSAIC_TIMM_PATH"
AUDIOMENTATIONS_PATH_VARIABLE = "AUDIOMOSAIC_AUDIOMENTATIONS_PATH"


class _FolderFinder(importlib.abc.MetaPathFinder):
    """Finds top-level modules (and their submodules, through the packages' own ``__path__``) in one folder."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def find_spec(self, fullname, path=None, target=None):
        if path is not None:  # a submodule: its package's own __path__ finds it
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, [self.folder])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.folder!r})"


def reference_folder(variable: str, default_name: str) -> str:
    """The folder named by the environment variable `variable`, else ``<sys.prefix>/<default_name>``."""
    return os.environ.get(variable) or os.path.join(sys.prefix, default_name)


def import_reference_package(name: str, folder: str, prefer_folder: bool = False) -> ModuleType:
    """Import the top-level package `name`, also looking in `folder` (idempotent: one finder per folder).

    ``prefer_folder=True`` asks the folder before the installed packages, ``False`` after them. Raises
    ``ImportError`` naming the folder and run_scripts/setup_env.sh when the package is in neither place."""
    folder = os.path.abspath(folder)
    if os.path.isdir(folder) and not any(isinstance(f, _FolderFinder) and f.folder == folder for f in sys.meta_path):
        finder = _FolderFinder(folder)
        if prefer_folder:
            sys.meta_path.insert(0, finder)
        else:
            sys.meta_path.append(finder)
        importlib.invalidate_caches()
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name != name:
            raise
        raise ImportError(
            f"{name} is not installed and not in {folder}: run run_scripts/setup_env.sh, which installs it there, "
            "or point the folder's environment variable at another copy"
        ) from err


def import_timm() -> ModuleType:
    """timm from ``$AUDIOMOSAIC_TIMM_PATH`` (default ``<venv>/timm_reference``), before any installed copy."""
    return import_reference_package("timm", reference_folder(TIMM_PATH_VARIABLE, "timm_reference"), prefer_folder=True)


def import_audiomentations() -> ModuleType:
    """audiomentations from ``$AUDIOMOSAIC_AUDIOMENTATIONS_PATH`` (default ``<venv>/audiomentations_reference``),
    after the installed packages."""
    folder = reference_folder(AUDIOMENTATIONS_PATH_VARIABLE, "audiomentations_reference")
    return import_reference_package("audiomentations", folder, prefer_folder=False)
