#!/usr/bin/env bash
# Create .venv and install var_utils with its test tools. Idempotent: a second run
# only checks that the installed set still matches pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP="$VENV/.install-stamp"
fingerprint=$(cat pyproject.toml install.sh | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$fingerprint" ] && "$VENV/bin/python" -c "import var_utils, torch" 2>/dev/null; then
    exit 0
fi

echo "install.sh: installing into $VENV (torch 2.14.1 first, then var_utils[dev,notebooks])" >&2
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# torch and torchvision first and pinned: they decide which wheel (CPU/CUDA) the rest builds on.
"$VENV/bin/python" -m pip install --quiet torch==2.14.1 torchvision==0.29.1
"$VENV/bin/python" -m pip install --quiet -e ".[dev,notebooks]"

# Fashion-MNIST for the grid pointing game: Debian's package when we can install it
# (root, apt available); otherwise torchvision downloads the same files on first use.
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } \
        || echo "install.sh: could not install dataset-fashion-mnist; Fashion-MNIST will be downloaded on first use" >&2
fi

"$VENV/bin/python" -c "import var_utils, torch, captum, quantus, nbval, cv2; print('install.sh: ok, torch', torch.__version__)" >&2
echo "$fingerprint" > "$STAMP"
