"""Run one workload for one library in this (fresh) process and print the result as JSON.

Usage: python bench/run_one.py LIB WORKLOAD REPEATS [--memory]
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback

if os.environ.get("BENCH_THREADS") != "default":  # default: each library's own thread count
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.setrecursionlimit(10_000)  # Python's default; libraries that recurse hit it as users would


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    lib, workload, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
    memory = "--memory" in sys.argv
    from workloads import WORKLOADS, w3_mlp

    result = {"lib": lib, "workload": workload}
    try:
        if memory:
            step = w3_mlp(lib, batch_size=1024)
            before = rss_mib()
            for _ in range(3):
                check = step()
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            result.update(peak_mib=max(0.0, peak - before), check=check)
        else:
            step = WORKLOADS[workload](lib)
            check = step()  # warm-up; its value is the agreement check
            # BENCH_CLOCK=cpu: the process's CPU time (one thread, on a machine shared with
            # other load), else wall-clock time
            clock = time.process_time if os.environ.get("BENCH_CLOCK") == "cpu" else \
                time.perf_counter
            times = []
            for _ in range(repeats):
                t0 = clock()
                step()
                times.append(clock() - t0)
            result.update(times=times, check=check)
    except KeyError:
        result["error"] = "not implemented for this library"
    except RecursionError:
        result["error"] = "RecursionError"
    except ImportError as e:
        result["error"] = f"not installed ({e.name})"
    except Exception as e:  # report, don't hide: the table shows it
        result["error"] = f"{type(e).__name__}: {e}"
        result["traceback"] = traceback.format_exc(limit=3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
