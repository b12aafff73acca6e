"""How much of PyTorch's public API chainrule has, per namespace (needs torch).

    python bench/api_coverage.py            # the table, on stdout
    python bench/api_coverage.py --write    # ... also into BENCHMARKS.md and docs/api_coverage.md
    python bench/api_coverage.py --missing torch.linalg   # the names one namespace still lacks

A namespace's public names are those ``dir()`` lists without a leading underscore, that are not
modules and were defined by PyTorch itself inside that namespace (re-exports such as
``torch.nn.init.Tensor`` or ``typing.Callable`` do not count). Names that chainrule does not
mean to offer are listed, each with its reason, in ``bench/api_exclusions.toml``; they leave the
denominator. In-place ``name_`` variants of ``torch``, ``torch.Tensor`` and
``torch.nn.functional`` are counted in a column of their own (issue 14's in-place work).
chainrule "has" a name when the corresponding chainrule object has an attribute of that name.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import inspect
import os
import sys
import tomllib
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXCLUSIONS = os.path.join(ROOT, "bench", "api_exclusions.toml")
DOC = os.path.join(ROOT, "docs", "api_coverage.md")
SECTION = "api-coverage"

# (PyTorch namespace, the chainrule object that answers for it)
NAMESPACES = [
    ("torch", "chainrule"),
    ("torch.Tensor", "chainrule.Tensor"),
    ("torch.nn", "chainrule.nn"),
    ("torch.nn.functional", "chainrule.nn.functional"),
    ("torch.nn.init", "chainrule.nn.init"),
    ("torch.optim", "chainrule.optim"),
    ("torch.optim.lr_scheduler", "chainrule.optim.lr_scheduler"),
    ("torch.linalg", "chainrule.linalg"),
    ("torch.special", "chainrule.special"),
    ("torch.autograd", "chainrule.autograd"),
    ("torch.func", "chainrule.func"),
    ("torch.utils.data", "chainrule.utils.data"),
    ("torch.distributions", "chainrule.distributions"),
    ("torch.cuda", "chainrule.cuda"),
    ("torch.jit", "chainrule.jit"),
    ("torch.compiler", "chainrule.compiler"),
    ("torch.profiler", "chainrule.profiler"),
    ("torch.hub", "chainrule.hub"),
    ("torch.multiprocessing", "chainrule.multiprocessing"),
    ("torch.nn.utils.prune", "chainrule.nn.utils.prune"),
]


def resolve(path: str):
    """The object at a dotted path (a module, or a class inside one); None if it is missing."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for p in parts[i:]:
            try:
                obj = getattr(obj, p)
            except Exception:  # noqa: BLE001  (missing, or failing to import: not there)
                return None
        return obj
    return None


def _defined_in(obj, prefix: str) -> bool:
    """Was ``obj`` made by PyTorch under ``prefix`` (floats: the math constants of ``torch``)?"""
    if isinstance(obj, float):
        return prefix == "torch"
    mod = getattr(obj, "__module__", None) if callable(obj) else None
    if not isinstance(mod, str):
        mod = type(obj).__module__ or ""
    return mod == prefix or mod.startswith(prefix + ".") or (
        prefix == "torch" and mod.startswith("torch"))


def _reexported(value, name: str, ns: str) -> bool:
    """A class of ``torch`` or ``torch.optim`` imported into namespace ``ns``."""
    if not isinstance(value, type) or _defined_in(value, ns):
        return False
    homes = [resolve("torch"), resolve("torch.optim")]
    return any(getattr(h, name, None) is value for h in homes)


def public_names(ns: str, obj) -> list[str]:
    """The public names of one PyTorch namespace (see the module docstring)."""
    if isinstance(obj, type):  # torch.Tensor: its methods and properties
        return sorted(n for n in dir(obj) if not n.startswith("_"))
    out = []
    declared = set(getattr(obj, "__all__", ()))
    for n in dir(obj):
        if n.startswith("_"):
            continue
        value = getattr(obj, n)
        if inspect.ismodule(value) or isinstance(value, types.ModuleType):
            continue
        if not _defined_in(value, "torch"):
            continue  # typing.Callable, math.inf, ...
        if ns != "torch" and n not in declared and _reexported(value, n, ns):
            continue  # a class that belongs elsewhere (torch.nn.init.Tensor, ...)
        out.append(n)
    return sorted(out)


def load_exclusions(path: str = EXCLUSIONS) -> list[dict]:
    """The ``[[exclude]]`` tables: namespaces, reason, names (fnmatch patterns)."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    groups = data.get("exclude", [])
    for g in groups:
        if not g.get("reason") or not g.get("names") or not g.get("namespaces"):
            raise ValueError(f"{path}: every [[exclude]] needs namespaces, names and a reason: {g}")
    return groups


def excluded_reason(ns: str, name: str, groups: list[dict]) -> str | None:
    for g in groups:
        if ns in g["namespaces"] and any(fnmatch.fnmatchcase(name, p) for p in g["names"]):
            return g["reason"]
    return None


def is_inplace(ns: str, name: str) -> bool:
    return (ns in ("torch", "torch.Tensor", "torch.nn.functional") and name.endswith("_")
            and not name.endswith("__"))


def measure(groups: list[dict] | None = None) -> list[dict]:
    """One row per namespace: the counts, and the names chainrule lacks."""
    groups = load_exclusions() if groups is None else groups
    rows = []
    for ns, cr_path in NAMESPACES:
        torch_obj = resolve(ns)
        cr_obj = resolve(cr_path)
        names = public_names(ns, torch_obj)
        excluded, inplace, measured = {}, [], []
        for n in names:
            reason = excluded_reason(ns, n, groups)
            if reason is not None:
                excluded[n] = reason
            elif is_inplace(ns, n):
                inplace.append(n)
            else:
                measured.append(n)

        def has(n: str, cr_obj=cr_obj) -> bool:
            return cr_obj is not None and hasattr(cr_obj, n)

        have = [n for n in measured if has(n)]
        rows.append({
            "namespace": ns, "public": len(names), "excluded": excluded, "measured": len(measured),
            "have": len(have), "missing": [n for n in measured if not has(n)],
            "inplace": len(inplace), "inplace_have": sum(has(n) for n in inplace),
        })
    return rows


def pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:.0f}%" if b else "-"


def table(rows: list[dict]) -> str:
    lines = [
        "| namespace | public names | excluded | measured | chainrule has | coverage "
        "| in-place `_` (issue 14) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    tot = [0, 0, 0, 0, 0, 0]
    for r in rows:
        ip = f"{r['inplace_have']}/{r['inplace']}" if r["inplace"] else "-"
        lines.append(f"| `{r['namespace']}` | {r['public']} | {len(r['excluded'])} | "
                     f"{r['measured']} | {r['have']} | {pct(r['have'], r['measured'])} | {ip} |")
        for i, v in enumerate((r["public"], len(r["excluded"]), r["measured"], r["have"],
                               r["inplace"], r["inplace_have"])):
            tot[i] += v
    lines.append(f"| all | {tot[0]} | {tot[1]} | {tot[2]} | {tot[3]} | {pct(tot[3], tot[2])} | "
                 f"{tot[5]}/{tot[4]} |")
    return "\n".join(lines)


def versions() -> str:
    import torch

    import chainrule

    return f"torch {torch.__version__}, chainrule {chainrule.__version__}"


def section(rows: list[dict]) -> str:
    return (
        "## PyTorch API coverage\n\n"
        f"`python bench/api_coverage.py --write` ({versions()}). Public names of each PyTorch "
        "namespace that chainrule has, out of those it means to have (`bench/api_exclusions.toml` "
        "lists every excluded name with its reason; `docs/api_coverage.md` lists what is "
        "missing). `tests/test_api_coverage.py` fails if a count here drops.\n\n" + table(rows)
    )


def doc(rows: list[dict], groups: list[dict]) -> str:
    out = ["# PyTorch API coverage", "",
           "Written by `python bench/api_coverage.py --write`; the method is in that script's "
           "docstring.", "", table(rows), "", "## Missing, per namespace", ""]
    for r in rows:
        miss = r["missing"]
        out.append(f"### `{r['namespace']}` ({len(miss)} missing)")
        out.append("")
        out.append(" ".join(f"`{n}`" for n in miss) if miss else "nothing")
        out.append("")
    out += ["## Excluded, with the reasons", ""]
    for g in groups:
        out.append(f"- **{g['reason']}** ({', '.join(g['namespaces'])}): "
                   + " ".join(f"`{n}`" for n in g["names"]))
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true",
                    help="write the table into BENCHMARKS.md and docs/api_coverage.md")
    ap.add_argument("--missing", metavar="NAMESPACE", help="list the names NAMESPACE lacks")
    args = ap.parse_args(argv)
    sys.path.insert(0, ROOT)
    groups = load_exclusions()
    rows = measure(groups)
    if args.missing:
        for r in rows:
            if args.missing in (r["namespace"], "all"):
                print(f"== {r['namespace']}: " + " ".join(r["missing"]))
        return 0
    print(table(rows))
    if args.write:
        sys.path.insert(0, os.path.join(ROOT, "bench"))
        from sections import write_section

        write_section(os.path.join(ROOT, "BENCHMARKS.md"), SECTION, section(rows))
        with open(DOC, "w", encoding="utf-8") as f:
            f.write(doc(rows, groups))
    return 0


if __name__ == "__main__":
    sys.exit(main())
