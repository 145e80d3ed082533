#!/usr/bin/env bash
# The GPU checks of a session that is lent a device machine, as one short run.
#
# From the repository root:
#
#     OUT=/some/folder bash benchmarks/gpu_check.sh          # on the GPU machine (device cuda)
#     OUT=/tmp/check bash benchmarks/gpu_check.sh cpu        # the same steps on a CPU, to try the script
#
# Steps, each with its own time limit so that one slow step cannot eat the lease:
#   1. device.txt      what the machine is (nvidia-smi, torch version, device name)
#   2. tests.log       tests/test_model.py and tests/test_segmentation.py, whose CUDA paths
#                      (CUDA against CPU output, out-of-memory fallback) only run with a GPU
#   3. segment_<device>.json   benchmarks/bench_segment.py: 1, 12 and 24 MP, and on a GPU a
#                      batch of 16 photos of 12 MP, next to the device's own convolution rate
#   4. batch_cuda.json (GPU only)  benchmarks/bench_batch.py --cuda-only: the whole pipeline
#                      on 12-MP JPEG pairs, against one process
# Each step's output is also in $OUT/<step>.log. The exit status is non-zero when any step
# failed; the others still ran.
set -uo pipefail

device=${1:-cuda}
out=${OUT:-benchmarks/results}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
status=0

step() {  # step NAME SECONDS COMMAND...: run with a limit, log to $out/NAME.log, note a failure, go on
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s)"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - t0)) s"
    [ "$rc" -eq 0 ] || status=1
}

{
    nvidia-smi 2>/dev/null || echo "no nvidia-smi"
    "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
} >"$out/device.txt" 2>&1

step tests 240 "$py" -m pytest -q -p no:cacheprovider tests/test_model.py tests/test_segmentation.py -rs
step segment 300 "$py" benchmarks/bench_segment.py --device "$device" --repeats 3 --batch-images 16 --out "$out/segment_$device.json"
if [ "$device" = cuda ]; then
    step batch 300 "$py" benchmarks/bench_batch.py --cuda-only --cuda-pairs 24 --out "$out/batch_cuda.json"
fi
exit $status
