"""`psrlm show-config`: the effective config (defaults < recipes < --set), where each value came from, and what
every `auto` resolves to on this machine."""

from __future__ import annotations

import argparse

from psrlm.cli.common import add_config_args, command, machine
from psrlm.configs import Config, config_to_dict


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show-config", help="print the effective config (defaults + recipe + --set)")
    add_config_args(p)
    command(p, cmd_show_config, "show-config", recorded=False)


def cmd_show_config(cfg: Config, args: argparse.Namespace) -> dict:
    """The effective config as YAML (a valid recipe), each value not at its default marked with where it came
    from, the layers in the order applied, and what every `auto` resolves to on this machine."""
    import yaml

    from psrlm.hardware import one_line

    layers = [*(args.config or []), *(f"--set {o}" for o in args.overrides)]
    print("# defaults" + "".join(f" < {layer}" for layer in layers) + " (later overrides earlier)")
    print(_with_sources(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), args.sources), end="")
    print(f"# {one_line(machine(cfg))}")  # what every `auto` resolves to on this machine
    return {}


def _with_sources(text: str, sources: dict[str, str]) -> str:
    """`key: value  # <where it was set>` on each line of a YAML dump whose dotted key has a source."""
    import re

    out, stack = [], []  # stack: (indent, key) of the mappings the line is in
    for line in text.splitlines():
        m = re.match(r"^( *)([A-Za-z_]\w*):( |$)", line)
        if m:
            indent = len(m.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            dotted = ".".join([k for _, k in stack] + [m.group(2)])
            stack.append((indent, m.group(2)))
            if dotted in sources:
                line += f"  # {sources[dotted]}"
        out.append(line)
    return "\n".join(out) + "\n"
