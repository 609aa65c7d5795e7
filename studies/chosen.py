"""Print the overrides a tuning stage chose for one method (``OUT/selected.json`` of ``tunedcl sweep
--select-on``), as ``section.key=value`` words for the next stage's command line.

    .venv/bin/python studies/chosen.py runs/verdict/tune-lr-tau/selected.json tcl [--drop loss.method]
    .venv/bin/python studies/chosen.py runs/verdict/tune-lr-tau/selected.json tcl --point   # its folder name
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _yaml(value: object) -> str:
    """A value as a config override reads it back: null, true / false, numbers and strings as they are."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: chosen.py SELECTED_JSON METHOD [--drop KEY ... | --point]", file=sys.stderr)
        return 2
    path, method, drop = Path(argv[0]), argv[1], set(argv[3:] if argv[2:3] == ["--drop"] else [])
    want_point = argv[2:] == ["--point"]
    if not path.is_file():
        print(f"chosen.py: {path} does not exist (run that stage first)", file=sys.stderr)
        return 2
    chosen = json.loads(path.read_text())["chosen"]
    if method not in chosen:
        print(f"chosen.py: {path} chose nothing for {method!r}; it has {', '.join(chosen)}", file=sys.stderr)
        return 2
    if want_point:
        print(chosen[method]["point"])
        return 0
    print(" ".join(f"{key}={_yaml(value)}" for key, value in chosen[method]["overrides"].items() if key not in drop))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
