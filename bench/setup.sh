#!/usr/bin/env bash
# Create bench/.venv: the benchmark's Jupyter client, the workshop kernel from
# this checkout (editable) and the peer kernels from PyPI.  Kernelspecs are not
# installed here: bench/kernels.py writes them into a private directory per run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
venv=${BENCH_VENV:-$here/.venv}
python=${PYTHON:-python3}

"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e "$root"
# A peer that fails to install is reported as unavailable by kernels.py.
for peer in bash_kernel==0.10.0 sshkernel==0.11.1; do
    "$venv/bin/python" -m pip install -q "$peer" || echo "setup.sh: could not install $peer" >&2
done
"$venv/bin/python" -m pip list 2>/dev/null | grep -iE '^(workshop|bash.kernel|sshkernel|ipykernel|jupyter.client|pyzmq|paramiko|metakernel) '
