#!/usr/bin/env bash
# Set up everything the project needs on a fresh Debian machine: apt packages, a venv, torch (CPU wheel) first,
# then the package with its extras. Idempotent; source it or run it. Honours VENV (default: <repo>/.venv).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$REPO/.venv}"
APT_PACKAGES=(ffmpeg alsa-utils espeak-ng)

need_apt=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "[setup] apt-get install ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
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
"${PIP[@]}" -e "$REPO[dev,train,llm,eval]" "torch==2.13.0"
# timm is only the independent reference of the parity tests. --no-deps keeps torchvision (and another torch) out,
# and --target keeps it off sys.path: an importable timm makes `accelerate launch` crash on the missing torchvision.
[ -d "$VENV/timm_reference/timm" ] || "${PIP[@]}" --no-deps --target "$VENV/timm_reference" "timm==1.0.31"
"$PY" - <<'PYEOF'
import torch, transformers
assert torch.__version__.startswith("2.13.0"), f"torch was replaced: {torch.__version__}"
import importlib.util
assert importlib.util.find_spec("torchaudio") is None, "torchaudio must not be installed"
print(f"[setup] ok: torch {torch.__version__}, transformers {transformers.__version__}")
PYEOF
