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

# ensure_venv [extra]: create .venv and (re)install the package when pyproject.toml changed.
ensure_venv() {
  local extra="${1:-}" spec="$ROOT" stamp
  [ -n "$extra" ] && spec="$ROOT[$extra]"
  if [ ! -x "$VENV/bin/python" ]; then
    "$(pick_python)" -m venv "$VENV"
  fi
  stamp="$VENV/.installed-${extra:-base}"
  local want
  want="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "==> installing mmstudio${extra:+[$extra]} into .venv (first run builds llama.cpp for the tests: several minutes)"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e "$spec"
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
