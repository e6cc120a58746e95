#!/usr/bin/env bash
# Build .venv-compat: exactly the locked third-party packages (tools/compat/requirements.txt,
# made by tools/compat/lock.sh) + accel's wheels + the `accelerate` compat wheel, built here,
# and no real accelerate. Used by .ci/run; see docs/compat.md.
#
#   tools/compat/make_env.sh                # .venv-compat (or $COMPAT_VENV)
#   tools/compat/make_env.sh --reference    # .venv-compat-ref: the same locked packages with the
#                                           # real accelerate 1.15.0 instead of accel (benchmarks)
set -euo pipefail
cd "$(dirname "$0")/../.."
reference=0
[ "${1:-}" = "--reference" ] && reference=1
lock=tools/compat/requirements.txt
if [ $reference = 1 ]; then venv=${COMPAT_REF_VENV:-.venv-compat-ref}; else venv=${COMPAT_VENV:-.venv-compat}; fi
[ -d "$venv" ] || uv venv --quiet "$venv" --python 3.11
py="$venv/bin/python"

# Both sides of each comparison must run the same torch: the lock's and the dev lock's.
locked_torch=$(sed -n 's/^torch==//p' "$lock")
dev_torch=$(uv run --no-sync python -c 'from importlib.metadata import version; print(version("torch").split("+")[0])')
if [ "$locked_torch" != "$dev_torch" ]; then
    echo "make_env.sh: $lock has torch $locked_torch but the dev environment has torch $dev_torch;" \
         "set torch==$dev_torch in tools/compat/requirements.in and run tools/compat/lock.sh" >&2
    exit 1
fi

uv pip sync --quiet --python "$py" "$lock"
if [ $reference = 1 ]; then
    uv pip install --quiet --python "$py" accelerate==1.15.0
else
    dist=dist-compat
    rm -rf "$dist"
    uv build --quiet --all-packages --wheel -o "$dist"
    uv build --quiet --wheel -o "$dist" packages/accel-compat
    rm -f "$dist"/accel_xla-*.whl
    uv pip install --quiet --python "$py" --no-deps --reinstall "$dist"/*.whl
fi
if ! check=$(uv pip check --python "$py" 2>&1); then
    echo "$check" >&2
    echo "make_env.sh: the locked packages ($lock) no longer satisfy what is installed beside" \
         "them (an accel package's dependencies changed?); run tools/compat/lock.sh" >&2
    exit 1
fi
"$py" -c 'import accelerate, transformers; print("compat env:", accelerate.__version__, "transformers", transformers.__version__)'
