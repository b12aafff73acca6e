#!/usr/bin/env bash
# The one prepared GPU check (`make gpu-check`): the CUDA tests, then the GPU benchmark against
# PyTorch, on a machine whose python3 has CuPy and PyTorch (no venv: GPU machines often have no
# package index). Logs, the junit report and CuPy's compiled-kernel cache go to $OUT (default
# out/gpu); with the cache carried back in .cupy_cache/, the next run skips most compiling.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
PY=${PY:-python3}
mkdir -p "$OUT" .cupy_cache
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export CUPY_CACHE_DIR=$PWD/.cupy_cache
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader
$PY -c "import sys, numpy, cupy, torch; print('python', sys.version.split()[0], 'numpy', \
numpy.__version__, 'cupy', cupy.__version__, 'torch', torch.__version__)"
# the compiled engine and C loops (setup.py), built in place when this machine has a compiler
$PY setup.py -q build_ext --inplace > "$OUT/build.log" 2>&1 || echo "engine not compiled (see build.log)"
$PY -c "import chainrule, chainrule._compiled as c; print('compiled engine:', c.engine_compiled())"
workers=$($PY -c "import xdist" 2>/dev/null && echo "-n ${GPU_TEST_WORKERS:-6}")
timeout "${GPU_TEST_TIMEOUT:-330}" $PY -m pytest tests/test_cuda.py -rfE --tb=short \
    -p no:cacheprovider $workers --junitxml="$OUT/junit.xml" > "$OUT/tests.log" 2>&1
echo "tests exit $?"
grep -E "^(FAILED|ERROR)" "$OUT/tests.log" | head -60
tail -3 "$OUT/tests.log"
timeout "${GPU_BENCH_TIMEOUT:-200}" $PY bench/gpu_check.py --junit "$OUT/junit.xml" \
    --write BENCHMARKS.md 2>&1 | tee "$OUT/bench.log"
if [ "${GPU_PROFILE:-1}" != 0 ]; then
  timeout 120 $PY bench/gpu_profile.py > "$OUT/profile.log" 2>&1; echo "profile exit $?"
fi
cp BENCHMARKS.md "$OUT/BENCHMARKS.md"
tar czf "$OUT/cupy_cache.tgz" -C .cupy_cache . 2>/dev/null
ls -la "$OUT"
