"""`python -m bench NAME [args]`: run bench/NAME_bench.py (or bench/NAME) `main(argv)`."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def _available() -> list[str]:
    here = Path(__file__).parent
    names = []
    for info in pkgutil.iter_modules([str(here)]):
        if info.name.startswith("_"):
            continue
        names.append(info.name.removesuffix("_bench"))
    return sorted(set(names))


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: python -m bench {{{','.join(_available())}}} [args]")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    for module_name in (f"bench.{name}_bench", f"bench.{name}"):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        return int(module.main(rest) or 0)
    print(f"bench: no benchmark {name!r}; choose one of {', '.join(_available())}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
