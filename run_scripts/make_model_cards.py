#!/usr/bin/env python
"""Write (or check) the model cards of the 15 released AudioMosaic checkpoints.

```bash
python run_scripts/make_model_cards.py                 # writes model_cards/<name>.md + model_cards/README.md
python run_scripts/make_model_cards.py --check         # exit 1 if a committed card differs from the generated text
python run_scripts/make_model_cards.py --out_dir cards --only AudioMosaic-vit-b16-finetune-as20k
python run_scripts/make_model_cards.py --original      # cards for the original-format releases instead
```

The cards come from `modeling_audiomosaic/releases.py`, which is loaded by file path so that this script needs
neither torch nor transformers.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[1]
RELEASES_FILE = REPO_ROOT / "modeling_audiomosaic" / "releases.py"
DEFAULT_OUT_DIR = REPO_ROOT / "model_cards"
INDEX_NAME = "README.md"


def load_releases_module() -> ModuleType:
    """Import `modeling_audiomosaic/releases.py` standalone (without the package's torch-importing `__init__`)."""
    spec = importlib.util.spec_from_file_location("audiomosaic_releases", RELEASES_FILE)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {RELEASES_FILE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the module by name
    spec.loader.exec_module(module)
    return module


def expected_files(names: list[str] | None = None, converted: bool = True) -> dict[str, str]:
    """File name -> generated text for the selected releases (all by default) plus the index."""
    releases = load_releases_module()
    selected = list(releases.RELEASES) if not names else names
    unknown = [name for name in selected if name not in releases.RELEASES]
    if unknown:
        raise SystemExit(f"unknown release(s): {unknown}; known: {sorted(releases.RELEASES)}")
    files = {f"{name}.md": releases.render_model_card(name, converted=converted) for name in selected}
    if not names:
        files[INDEX_NAME] = releases.render_index()
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
