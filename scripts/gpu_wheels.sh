#!/usr/bin/env bash
# Download (here, where PyPI is reachable) the wheels that scripts/gpu_check.sh needs on a GPU machine whose
# python3 (3.12, x86-64) has torch, onnx and onnxruntime but not these; they land in .whl/ (git-ignored by
# this script), which the GPU run carries and gpu_check.sh installs with --no-index.
set -eu
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
PY=${PYTHON:-python3}
for spec in open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 onnxconverter-common==1.16.0 \
            pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5; do
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl "$spec"
done
ls -la .whl
