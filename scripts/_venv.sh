# Shared by scripts/serve and scripts/test: create .venv if missing and install the project into it.
# Idempotent: a marker file records the hash of pyproject.toml + constraints.txt that was installed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
export PIP_CONSTRAINT="$ROOT/constraints.txt"
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [ ! -x .venv/bin/python ]; then
  echo "[usseg] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
STAMP=".venv/.usseg-installed"
WANT="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)-${USSEG_EXTRAS:-dev}"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "[usseg] installing into .venv (first run takes a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip setuptools wheel
  .venv/bin/python -m pip install -q -e ".[${USSEG_EXTRAS:-dev}]"
  # monailabel pulls torchvision, which has no CPU build matching torch here and cannot be imported;
  # nothing in this project needs it (see README "Known limits").
  if ! .venv/bin/python -c "import torchvision" >/dev/null 2>&1; then
    .venv/bin/python -m pip uninstall -y -q torchvision >/dev/null 2>&1 || true
  fi
  echo "$WANT" > "$STAMP"
fi
export PATH="$ROOT/.venv/bin:$PATH"
export VIRTUAL_ENV="$ROOT/.venv"
