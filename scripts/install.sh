#!/usr/bin/env bash
# Installs energyray (editable) into the active Python environment, with the right torch:
#   - torch already importable: kept as it is (e.g. a GPU image's own CUDA build);
#   - an NVIDIA GPU here (nvidia-smi lists one): torch from PyPI, a CUDA build;
#   - no GPU: torch==2.13.0, the CPU build (set TORCH_INDEX_URL to the PyTorch CPU index
#     where plain PyPI would give you a CUDA build; not needed where pip finds a +cpu wheel).
# Every other package is installed at the exact version in constraints.txt (the versions the
# tests last passed with), so a new release cannot break a fresh install unseen.
# Usage: bash scripts/install.sh [--dev] [--latest]
#   --dev     adds pytest, ruff, mypy, playwright, and Debian's snmpd and chromium where they are
#             missing and apt-get can be run as root (the PDU tests' real SNMP agent; the browser
#             that static export and the dashboard's browser test drive)
#   --latest  ignores constraints.txt: the newest releases (to test them; scripts/lock.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="quant,report,pdu,api,serve,data,ecologits,diffusion"
dev=""; pins=(-c constraints.txt)
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1; extras="$extras,dev" ;;
    --latest) pins=() ;;
    *) echo "install.sh: unknown option $arg (use --dev, --latest)" >&2; exit 2 ;;
  esac
done
py=${PYTHON:-python}
command -v "$py" >/dev/null || py=python3
pipi() { "$py" -m pip install -q --disable-pip-version-check "$@"; }

if "$py" -c "import torch" 2>/dev/null; then
  echo "install.sh: keeping torch $("$py" -c 'import torch; print(torch.__version__)')"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; then
  echo "install.sh: NVIDIA GPU found: installing torch (CUDA build)"
  pipi torch
else
  echo "install.sh: no GPU: installing torch==2.13.0 (CPU build)"
  pipi ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch==2.13.0
fi
[ ${#pins[@]} -eq 0 ] && echo "install.sh: --latest: newest releases, constraints.txt not used"
pipi -e ".[$extras]" "${pins[@]}"
"$py" -c "import energyray, torch; print('install.sh: energyray', energyray.__version__, '| torch', torch.__version__, '| cuda', torch.cuda.is_available())"

# tests/integration/test_snmp_pdu.py runs a real SNMP agent (snmpd) on loopback; without it
# those tests are skipped, saying so.
if [ -n "$dev" ] && ! command -v snmpd >/dev/null 2>&1 && [ ! -x /usr/sbin/snmpd ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install.sh: no snmpd and no apt-get: install net-snmp's snmpd yourself, or the PDU tests are skipped"
  elif [ "$(id -u)" = 0 ] || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }; then
    as_root=""; [ "$(id -u)" = 0 ] || as_root="sudo -n"
    echo "install.sh: installing snmpd (apt-get) for the PDU tests"
    { $as_root apt-get install -y -q snmpd >/dev/null 2>&1 \
      || { $as_root apt-get update -q >/dev/null 2>&1 && $as_root apt-get install -y -q snmpd >/dev/null 2>&1; }; } \
      || echo "install.sh: could not install snmpd: the PDU tests will be skipped"
  else
    echo "install.sh: no snmpd, and not root without a password-less sudo: the PDU tests will be skipped (apt-get install snmpd)"
  fi
fi

# report --export (kaleido) and tests/integration/test_dashboard_browser.py (playwright) drive a
# system Chromium; without it those tests are skipped, saying so. No browser is downloaded by pip.
if [ -n "$dev" ] && ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install.sh: no chromium and no apt-get: install Chromium yourself (or set BROWSER_PATH), or the export and browser tests are skipped"
  elif [ "$(id -u)" = 0 ] || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }; then
    as_root=""; [ "$(id -u)" = 0 ] || as_root="sudo -n"
    echo "install.sh: installing chromium (apt-get) for static export and the dashboard's browser test"
    { $as_root apt-get install -y -q chromium >/dev/null 2>&1 \
      || { $as_root apt-get update -q >/dev/null 2>&1 && $as_root apt-get install -y -q chromium >/dev/null 2>&1; }; } \
      || echo "install.sh: could not install chromium: the export and browser tests will be skipped"
  else
    echo "install.sh: no chromium, and not root without a password-less sudo: the export and browser tests will be skipped (apt-get install chromium)"
  fi
elif [ -z "$dev" ] && ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  echo "install.sh: report --export (PNG/PDF) needs Chromium: apt-get install chromium"
fi
