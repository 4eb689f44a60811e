"""What is wrong with a configuration, and where: `ConfigError` and how each problem is located and printed.

A problem is one ``(key, message)`` pair; it is located in the YAML file (the line of its key, or of
its nearest ancestor present) or in the environment (the ``SMSBOT_*`` variable that set it), and an
unknown name gets the closest known one ("did you mean"). A YAML syntax error becomes one line naming
the file, the line and the column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class ConfigError(Exception):
    """The configuration is invalid; `errors` lists ``(key, message)`` pairs."""

    def __init__(self, errors: list[tuple[str, str]], source: str = "", where: dict[str, str] | None = None):
        self.errors = errors
        self.source = source
        self.where = dict(where or {})  # key -> "line 12" or "environment variable SMSBOT_X=..." (printed)
        super().__init__(f"invalid configuration{f' in {source}' if source else ''}:\n  " + "\n  ".join(self.lines()))

    def lines(self) -> list[str]:
        """One line per problem: the key, where it comes from (the file's line, or the environment
        variable), what is wrong. What `config check` prints and a refused reload logs."""
        return [f"{key} ({self.where[key]}): {msg}" if self.where.get(key) else f"{key}: {msg}" for key, msg in self.errors]


def did_you_mean(word: str, candidates: Any) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def yaml_lines(text: str) -> dict[str, int]:
    """Dotted config path (list indexes included) -> 1-based line of its key (mappings) or item
    (sequences) in the YAML text."""
    lines: dict[str, int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = f"{prefix}{k.value}"
                lines[key] = k.start_mark.line + 1
                walk(v, key + ".")
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                key = f"{prefix}{i}"
                lines[key] = v.start_mark.line + 1
                walk(v, key + ".")

    if root is not None:
        walk(root, "")
    return lines


def locate(key: str, lines: dict[str, int], env: dict[str, str], source: str) -> str:
    """Where a problem with `key` comes from: the environment variable that set it (or a value
    under it), else the line of the key, or of its nearest ancestor present, in the file."""
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        var = env.get(".".join(parts[:n]))
        if var:
            return f"environment variable {var}, not {Path(source).name}"
    for n in range(len(parts), 0, -1):
        line = lines.get(".".join(parts[:n]))
        if line:
            return f"line {line}"
    return ""


def yaml_error(cfg_path: Path, e: yaml.YAMLError) -> ConfigError:
    """A YAML syntax error as one line naming the file, the line and column, and what is wrong
    (PyYAML's own text names "<unicode string>" and spans several lines)."""
    key = str(cfg_path)
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    context, context_mark = getattr(e, "context", None), getattr(e, "context_mark", None)
    msg = f"not valid YAML: {problem}"
    if context:
        msg += f" ({context}" + (f" started on line {context_mark.line + 1}, column {context_mark.column + 1}" if context_mark else "") + ")"
    where = {key: f"line {mark.line + 1}, column {mark.column + 1}"} if mark is not None else {}
    return ConfigError([(key, msg)], key, where)
