# chainrule: `make demo` runs the main job, `make test` runs the tests. Each sets up .venv itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench gpu-check clean

# 1 when this machine can build the C engine (a C compiler and Python's headers): then the
# tests insist that it was built
export CAN_BUILD_C := import os, shutil, sysconfig; print(int(bool(shutil.which("cc") or shutil.which("gcc")) and os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))))

$(STAMP): pyproject.toml setup.py chainrule/_cengine.c
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[train,viz,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/chainrule demo

test: $(STAMP)
	$(BIN)/ruff check chainrule tests bench examples
	@# with the C engine (built when a C compiler is present), then with the Python reference
	CHAINRULE_EXPECT_CENGINE=$$($(BIN)/python -c "$$CAN_BUILD_C") $(BIN)/python -m pytest tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; elif [ $$rc -ne 0 ]; then exit $$rc; fi
	@echo "again on the pure-Python engine (CHAINRULE_PURE_PYTHON=1):"
	CHAINRULE_PURE_PYTHON=1 $(BIN)/python -m pytest tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; elif [ $$rc -ne 0 ]; then exit $$rc; fi
	@echo "the GPU tests again, on tests/fakecupy (a CPU stand-in for CuPy, as strict as CuPy):"
	PYTHONPATH=tests/fakecupy $(BIN)/python -m pytest tests/test_cuda.py; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check chainrule tests bench examples

bench: $(STAMP)
	$(BIN)/python -m pip install -q torch==2.13.0 autograd mygrad micrograd || echo "comparison libraries not installed: their columns stay empty"
	$(BIN)/python -m pip install -q -e '.[mkl]' || echo "mkl not installed: chainrule's GEMMs use NumPy's BLAS"
	$(BIN)/python bench/run.py --write BENCHMARKS.md
	$(BIN)/python bench/bench_func.py --write BENCHMARKS.md
	$(BIN)/python bench/bench_anomaly.py --write BENCHMARKS.md
	$(BIN)/python bench/gaps.py --write BENCHMARKS.md
	$(BIN)/python bench/bench_distributed.py --write BENCHMARKS.md

gpu-check:
	bench/gpu_check.sh

clean:
	rm -rf $(VENV) out runs .pytest_cache .ruff_cache
