#!/usr/bin/env bash
# Rewrites constraints.txt from the active environment: the exact version of every installed
# dependency, except torch and its CUDA libraries (install.sh chooses torch per machine) and
# packaging tools. Refresh it only after a green test run against the latest releases:
#   python3 -m venv /tmp/latest && . /tmp/latest/bin/activate \
#     && bash scripts/install.sh --dev --latest && python -m pytest && bash scripts/lock.sh
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
{
  echo "# Exact versions the test suite passed with; scripts/install.sh installs with -c this file"
  echo "# (--latest ignores it). Written by scripts/lock.sh on $(date -u +%Y-%m-%d), Python $("$py" -c 'import platform; print(platform.python_version())')."
  "$py" -m pip freeze --exclude-editable --disable-pip-version-check \
    | grep -v -i -E '^(torch|triton|nvidia-(cu|nccl|nvjitlink|nvtx|cufile|cusparselt|nvshmem)[a-z0-9-]*|pip|setuptools|wheel)([=@ ]|$)' \
    | LC_ALL=C sort -f
} > constraints.txt
echo "lock.sh: constraints.txt pins $(grep -vc '^#' constraints.txt) packages"
