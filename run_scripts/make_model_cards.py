#!/usr/bin/env python
"""Write (or check) the model cards of the 15 released AudioMosaic checkpoints.

```bash
python run_scripts/make_model_cards.py                 # writes model_cards/<name>.md + model_cards/README.md
python run_scripts/make_model_cards.py --check         # exit 1 if a committed card differs from the generated text
python run_scripts/make_model_cards.py --out_dir cards --only AudioMosaic-vit-b16-finetune-as20k
python run_scripts/make_model_cards.py --original      # cards for the original-format releases instead
```

The cards are rendered by `modeling_audiomosaic/model_cards.py` from the release catalogue in
`modeling_audiomosaic/releases.py`. Both import only the standard library; they are loaded from their folder without
running the package's `__init__` (which imports torch), so this script needs neither torch nor transformers.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.machinery
import sys
import types
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO_ROOT / "modeling_audiomosaic"
DEFAULT_OUT_DIR = REPO_ROOT / "model_cards"
INDEX_NAME = "README.md"
#: name under which the folder `modeling_audiomosaic/` is imported here, without its `__init__.py`
STANDALONE_PACKAGE = "audiomosaic_model_cards_standalone"


def load_model_cards_module() -> ModuleType:
    """Import `modeling_audiomosaic/model_cards.py` (and the catalogue `releases.py` it reads) standalone.

    The folder is registered as a bare package (no `__init__.py` executed), so the relative import
    `from .releases import ...` of `model_cards.py` resolves to the file next to it while torch stays unimported.
    """
    if STANDALONE_PACKAGE not in sys.modules:
        package = types.ModuleType(STANDALONE_PACKAGE)
        package.__path__ = [str(PACKAGE_DIR)]
        package.__spec__ = importlib.machinery.ModuleSpec(STANDALONE_PACKAGE, None, is_package=True)
        package.__spec__.submodule_search_locations = [str(PACKAGE_DIR)]
        sys.modules[STANDALONE_PACKAGE] = package
    return importlib.import_module(f"{STANDALONE_PACKAGE}.model_cards")


def expected_files(names: list[str] | None = None, converted: bool = True) -> dict[str, str]:
    """File name -> generated text for the selected releases (all by default) plus the index."""
    cards = load_model_cards_module()
    selected = list(cards.RELEASES) if not names else names
    unknown = [name for name in selected if name not in cards.RELEASES]
    if unknown:
        raise SystemExit(f"unknown release(s): {unknown}; known: {sorted(cards.RELEASES)}")
    files = {f"{name}.md": cards.render_model_card(name, converted=converted) for name in selected}
    if not names:
        files[INDEX_NAME] = cards.render_index()
    return files


def check(out_dir: Path, files: dict[str, str], verbose: bool = True) -> list[str]:
    """Return the file names whose committed text differs from (or is missing relative to) the generated text."""
    stale = []
    for file_name, text in files.items():
        path = out_dir / file_name
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == text:
            continue
        stale.append(file_name)
        if verbose:
            if current is None:
                print(f"missing: {path}")
            else:
                diff = difflib.unified_diff(
                    current.splitlines(), text.splitlines(), f"{path} (committed)", f"{path} (generated)", lineterm=""
                )
                print("\n".join(list(diff)[:40]))
    return stale


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out_dir", type=Path, default=DEFAULT_OUT_DIR, help="folder of the cards (model_cards/)")
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on differences")
    parser.add_argument("--only", nargs="+", default=None, help="release names (default: all 15 + the index)")
    parser.add_argument("--original", action="store_true", help="cards for the original-format releases")
    args = parser.parse_args(argv)

    files = expected_files(args.only, converted=not args.original)
    if args.check:
        stale = check(args.out_dir, files)
        if stale:
            print(f"{len(stale)} card(s) out of date in {args.out_dir}: {stale}. "
                  "Run `python run_scripts/make_model_cards.py` to regenerate.")
            return 1
        print(f"{len(files)} file(s) in {args.out_dir} are up to date.")
        return 0
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for file_name, text in files.items():
        (args.out_dir / file_name).write_text(text, encoding="utf-8")
    print(f"wrote {len(files)} file(s) to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
