#!/usr/bin/env bash
# GPU check of the ONNX export: ViT-B-16 and ViT-L-14 (random weights), base and edited, fp32 and fp16,
# parity against torch and throughput with onnxruntime's CUDA/TensorRT providers when present.
# Runs from the repository root with the machine's python3 (PYTHON=... to choose another). Every step has a
# time limit and the whole run stays under 8 minutes. Python packages the machine lacks (open_clip_torch,
# ftfy, wcwidth, onnxconverter-common, pydantic...) can be carried as wheels in .whl/ (scripts/gpu_wheels.sh
# downloads them); results go to $OUT/gpu_check.jsonl when OUT is set.
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }
say() { echo "== [$(elapsed) s] $*"; }

say "machine"
timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
timeout 20 $PY -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"

if compgen -G ".whl/*.whl" >/dev/null; then
  say "installing the carried wheels (.whl) into /tmp/editclip-site"
  timeout 120 $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/editclip-site .whl/*.whl && export PYTHONPATH=/tmp/editclip-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if ! timeout 120 $PY -c "import open_clip, onnx, onnxruntime, onnxconverter_common, editclip.export" 2>/tmp/editclip-import.log; then
  say "editclip cannot be imported here:"; tail -3 /tmp/editclip-import.log
  say "trying pip install -e . (no network: works only when the dependencies are already there)"
  timeout 120 $PY -m pip install -q --no-build-isolation --no-deps -e . || true
  timeout 120 $PY -c "import open_clip, onnx, onnxruntime, onnxconverter_common, editclip.export" || {
    say "giving up: carry the missing packages as wheels (scripts/gpu_wheels.sh) and run again"; exit 1; }
fi
timeout 60 $PY -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"

JSON=${OUT:+$OUT/gpu_check.jsonl}
STATUS=0
# model  time-limit(s)  throughput-batch  per-step-limit(s)
for row in "ViT-B-16 150 64 60" "ViT-L-14 270 32 110"; do
  set -- $row
  left=$(( 470 - $(elapsed) ))
  limit=$(( $2 < left ? $2 : left ))
  if [ "$limit" -lt 30 ]; then say "skipping $1: too little time left"; STATUS=1; continue; fi
  say "$1 (limit ${limit} s)"
  timeout --kill-after=10 "$limit" $PY scripts/gpu_check.py --model "$1" --batch "$3" --step-timeout "$4" \
    ${JSON:+--json "$JSON"} || { rc=$?; say "$1 ended with status $rc (124: time limit)"; STATUS=1; }
done
say "done (status $STATUS)"
exit $STATUS
