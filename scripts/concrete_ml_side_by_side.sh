#!/usr/bin/env bash
# Concrete ML 1.9.0 on this machine, on the benchmark splits (see concrete_ml_side_by_side.py),
# so that `cargo xtask bench --anchors bench/concrete_ml_here.jsonl` compares in one sitting.
#
# Creates its own Python environment in .venv-concrete-ml/ (gitignored) with the versions
# ../shared/ANCHORS.md names (concrete-ml 1.9.0 pins torch, scikit-learn and xgboost).
# Extra arguments go to the Python script (e.g. --datasets breast_cancer --models mlp).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${FHEML_CONCRETE_VENV:-$root/.venv-concrete-ml}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check concrete-ml==1.9.0 pandas
cd "$root"
exec "$venv/bin/python" "$root/scripts/concrete_ml_side_by_side.py" "$@"
