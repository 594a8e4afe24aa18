# Shared set-up for scripts/serve and scripts/test: a virtual environment kept in step with
# pyproject.toml, and Debian packages installed only when missing. Safe to run any number of times.

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

pick_python() {
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "mmstudio needs Python 3.11 or newer; none was found on PATH" >&2
  return 1
}

# Installs come from the exact versions in requirements/ (see requirements/README.md); with
# MMSTUDIO_LATEST=1 (scripts/test --latest) from the newest releases pyproject.toml's ranges allow, into
# .venv-latest so the locked .venv is left alone.
LOCK="$ROOT/requirements/lock.txt"
BUILD_LOCK="$ROOT/requirements/build-lock.txt"
if [ "${MMSTUDIO_LATEST:-}" = "1" ]; then
  VENV="$ROOT/.venv-latest"
fi

# ensure_venv [extra]: create the venv and (re)install the package when pyproject.toml or the lock changed.
ensure_venv() {
  local extra="${1:-}" spec="$ROOT" stamp want
  [ -n "$extra" ] && spec="$ROOT[$extra]"
  if [ ! -x "$VENV/bin/python" ]; then
    "$(pick_python)" -m venv "$VENV"
  fi
  stamp="$VENV/.installed-${extra:-base}"
  want="$(cat "$ROOT/pyproject.toml" "$LOCK" "$BUILD_LOCK" | sha256sum | cut -d' ' -f1)"
  # --latest always re-resolves: finding what newer releases changed is its purpose.
  if [ "${MMSTUDIO_LATEST:-}" = "1" ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "==> installing mmstudio${extra:+[$extra]} into ${VENV#"$ROOT"/} (first run builds llama.cpp for the tests: several minutes)"
    if [ "${MMSTUDIO_LATEST:-}" = "1" ]; then
      "$VENV/bin/python" -m pip install --quiet --upgrade pip
      "$VENV/bin/python" -m pip install --quiet --upgrade --upgrade-strategy eager -e "$spec"
    else
      "$VENV/bin/python" -m pip install --quiet "pip==$(sed -n 's/^pip==//p' "$BUILD_LOCK")"
      "$VENV/bin/python" -m pip install --quiet --constraint "$LOCK" --build-constraint "$BUILD_LOCK" -e "$spec"
    fi
    echo "$want" > "$stamp"
  fi
}

# ensure_debian PKG...: apt-get install the packages that are not installed yet.
ensure_debian() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "==> installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
