"""What changed between two requirements locks: `python scripts/lock_diff.py OLD NEW` (used by `make lock`)."""

import sys
from pathlib import Path


def pins(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[name.strip().lower().replace("_", "-")] = version.strip()
    return out


def changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    lines = []
    for name in sorted(old.keys() | new.keys()):
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        lines.append(f"  {name}: " + ("added " + b if a is None else "removed (was " + a + ")" if b is None
                                      else f"{a} -> {b}"))  # fmt: skip
    return lines


if __name__ == "__main__":
    old, new = pins(Path(sys.argv[1])), pins(Path(sys.argv[2]))
    diff = changes(old, new)
    print(f"lock: {len(diff)} change(s) against {sys.argv[1]}" + (":" if diff else ""))
    print("\n".join(diff)) if diff else None
