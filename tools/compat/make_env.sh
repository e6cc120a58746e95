#!/usr/bin/env bash
# Build .venv-compat: accel's wheels + the `accelerate` compat wheel + transformers, PEFT, TRL and
# datasets from PyPI, and no real accelerate. Used by .ci/run; see docs/compat.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${COMPAT_VENV:-.venv-compat}
dist=dist-compat
rm -rf "$dist"
uv build --quiet --all-packages --wheel -o "$dist"
uv build --quiet --wheel -o "$dist" packages/accel-compat
rm -f "$dist"/accel_xla-*.whl
[ -d "$venv" ] || uv venv --quiet "$venv" --python 3.11
# torch pinned to the dev lock's version so both sides of each comparison run the same torch.
torch_version=${TORCH_VERSION:-$(uv run --no-sync python -c 'import torch; print(torch.__version__.split("+")[0])')}
uv pip install --quiet --python "$venv/bin/python" --reinstall-package accelerate --reinstall-package accel-state --reinstall-package accel-ops \
    --reinstall-package accel-core --reinstall-package accel-launch --reinstall-package accel-big-model \
    --reinstall-package accel-deepspeed \
    "$dist"/*.whl \
    "torch==${torch_version}" transformers==5.23.0 peft==0.21.2 trl==1.16.0 datasets==5.2.0 \
    pytest pytest-timeout
"$venv/bin/python" -c 'import accelerate, transformers; print("compat env:", accelerate.__version__, "transformers", transformers.__version__)'
