# chainrule: `make demo` runs the main job, `make test` runs the tests. Each sets up .venv itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NATIVE_STAMP := $(VENV)/.native
# what the native build compiles: the C loops and the engine's modules (Cython, from the .py)
NATIVE := setup.py chainrule/kernels/_cpu_loops.c chainrule/_crandom.c \
	chainrule/tensor.py chainrule/tensor.pxd chainrule/autograd/function.py \
	chainrule/autograd/function.pxd chainrule/autograd/engine.py chainrule/autograd/engine.pxd \
	chainrule/ops/binary.py chainrule/ops/elementwise.py chainrule/kernels/dispatch.py

.PHONY: demo test lint bench gpu-check clean fuzz

# 1 when this machine can compile the engine (a C compiler and Python's headers; the build
# fetches Cython): then the tests insist that the compiled engine is what runs
export CAN_COMPILE := import os, shutil, sysconfig; print(int(bool(shutil.which("cc") or shutil.which("gcc")) and os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))))

# pytest, where "no tests collected" (exit 5) is not a failure
define pytest
	$(1) $(BIN)/python -m pytest $(2); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc
endef

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[train,viz,test]'
	touch $(STAMP) $(NATIVE_STAMP)

# the compiled modules must be rebuilt whenever their source changes (else tests run stale code)
$(NATIVE_STAMP): $(STAMP) $(NATIVE)
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(NATIVE_STAMP)

demo: $(NATIVE_STAMP)
	$(BIN)/chainrule demo

test: $(NATIVE_STAMP)
	$(BIN)/ruff check chainrule tests bench examples
	@# compiled (where a compiler is present), then as Python, then the GPU tests on a CPU stand-in
	$(call pytest,CHAINRULE_EXPECT_COMPILED=$$($(BIN)/python -c "$$CAN_COMPILE"),tests)
	@echo "again on the pure-Python engine (CHAINRULE_PURE_PYTHON=1):"
	$(call pytest,CHAINRULE_PURE_PYTHON=1,tests)
	@echo "the GPU tests again, on tests/fakecupy (a CPU stand-in for CuPy, as strict as CuPy):"
	$(call pytest,PYTHONPATH=tests/fakecupy FAKECUPY_DEVICES=2,tests/test_cuda.py tests/test_random_cuda.py)

# the differential fuzzer (tests/fuzz_programs.py) for FUZZ_SECONDS: programs run, mismatches, crashes
FUZZ_SECONDS ?= 600
fuzz: $(NATIVE_STAMP)
	$(BIN)/python -m pip install -q torch==2.13.0 || echo "torch not installed: nothing to compare with"
	$(BIN)/python tests/fuzz_programs.py --seconds $(FUZZ_SECONDS) --out fuzz-failures.json

lint: $(STAMP)
	$(BIN)/ruff check chainrule tests bench examples

bench: $(NATIVE_STAMP)
	$(BIN)/python -m pip install -q torch==2.13.0 autograd mygrad micrograd || echo "comparison libraries not installed: their columns stay empty"
	$(BIN)/python -m pip install -q -e '.[mkl]' || echo "mkl not installed: chainrule's GEMMs use NumPy's BLAS"
	$(BIN)/python bench/run.py --write BENCHMARKS.md
	$(BIN)/python bench/bench_func.py --write BENCHMARKS.md
	$(BIN)/python bench/bench_anomaly.py --write BENCHMARKS.md
	$(BIN)/python bench/bench_random.py --write BENCHMARKS.md
	$(BIN)/python bench/gaps.py --write BENCHMARKS.md
	$(BIN)/python bench/bench_distributed.py --write BENCHMARKS.md

gpu-check:
	bench/gpu_check.sh

clean:
	rm -rf $(VENV) out runs .pytest_cache .ruff_cache build chainrule/*.so chainrule/*/*.so
