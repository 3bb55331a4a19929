#!/usr/bin/env bash
# Hardness Explorer: set everything up, then run the app or the tests.
#   ./run.sh app     set up, then open the app on the twins task (the first start also
#                    trains three small demo runs into models/demo; HCL_NO_DEMO=1 skips them)
#   ./run.sh test    set up, then run the whole test suite (what CI runs)
#   ./run.sh setup   only set up (.venv, Python packages, Debian's chromium for browser tests)
# A second run is quick: packages are reinstalled only when a requirements file changes.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3.11}
VENV=.venv

log() { printf '\033[1m[run.sh]\033[0m %s\n' "$*" >&2; }

need_root() {  # run a command as root (directly, or through sudo when we are not root)
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root to run: $*"; return 1; fi
}

setup_python() {
  if ! command -v "$PYTHON" >/dev/null; then
    log "$PYTHON not found: install Python 3.11 (torch 2.14.1 wheels on this machine are for 3.11)"; exit 1
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  local want stamp=$VENV/.requirements.sha256
  want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing Python packages (first time: about a minute)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements-dev.txt
    echo "$want" > "$stamp"
  fi
}

setup_chromium() {  # Debian's chromium drives the browser tests; never a downloaded browser
  [ -x /usr/bin/chromium ] && return 0
  log "installing Debian's chromium for the browser tests"
  need_root apt-get install -y -q chromium >/dev/null 2>&1 || {
    need_root apt-get update -q >/dev/null && need_root apt-get install -y -q chromium >/dev/null; }
}

demo_runs() {  # first start only: three small runs, so that every page has something to show
  local models=${HCL_MODELS_DIR:-models}
  [ -n "${HCL_NO_DEMO:-}" ] && return 0
  [ -e "$models/demo" ] && return 0
  compgen -G "$models/*/config.json" >/dev/null && return 0  # runs of the user's own: leave them be
  log "first start: training three demo runs into $models/demo (SimCLR, HCL, H-SCL on twins; about 20 s)"
  "$VENV/bin/python" -m hcl_core sweep --dataset twins --losses info_nce,hcl,hard_supcon --betas 1 \
      --seeds 0 --epochs 30 --workers 2 --out "$models" --sweep-name demo --quiet >/dev/null \
    || log "the demo runs could not be trained: the app opens without them"
}

cmd=${1:-app}
shift || true
case "$cmd" in
  setup)
    setup_python; setup_chromium ;;
  app)
    setup_python; setup_chromium  # Chromium also draws the PNG/SVG downloads of the charts (kaleido)
    demo_runs
    log "opening the app at http://localhost:8501"
    exec "$VENV/bin/python" -m streamlit run app.py "$@" ;;
  test)
    setup_python; setup_chromium
    "$VENV/bin/ruff" check .
    set +e
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
    rc=$?
    set -e
    [ "$rc" -eq 5 ] && { log "pytest collected no tests: failing"; exit 1; }
    exit "$rc" ;;
  *)
    echo "usage: ./run.sh [app|test|setup] [args...]" >&2; exit 2 ;;
esac
