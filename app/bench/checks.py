"""Task checks for ``duetto bench``: did a reply do what its prompt asked?

Speed and agreement with the target say nothing about whether an answer is right, and fast mode
trades one for the other; so a bench prompt may carry checks, judged the same way in every mode.
They are data, not code: a prompt line holds ``"checks": {...}``, or a separate ``--checks`` file
holds ``{"id", "checks"}`` lines for a prompt set one cannot edit.

A check set is an object with any of these keys:

- ``code_parses``: the reply's code (its first fenced block, else the whole reply) is Python;
- ``documented``: every function in that code has a docstring;
- ``annotated``: every function's parameters (but ``self``/``cls``) and return are annotated;
- ``contains``: each string appears in the reply, word for word (runs of whitespace count as one);
- ``absent``: none of these strings appears (same matching);
- ``mentions``: each string appears, ignoring case.

A code block the reply did not close (it was cut off by ``--max-tokens``) is judged on its longest
prefix of whole lines that parses, so a long edit is judged on what it wrote.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

CHECK_KEYS = ("code_parses", "documented", "annotated", "contains", "absent", "mentions")
_FENCE = re.compile(r"```[^\n]*\n(.*?)(```|\Z)", re.DOTALL)


class ChecksError(ValueError):
    """A check set or checks file that cannot be used (the message names where and why)."""


def validate(checks: Any, where: str) -> dict[str, Any]:
    if not isinstance(checks, dict):
        raise ChecksError(f"{where}: checks must be an object with keys from {', '.join(CHECK_KEYS)}")
    unknown = sorted(set(checks) - set(CHECK_KEYS))
    if unknown:
        raise ChecksError(f"{where}: unknown check {unknown[0]!r} (known: {', '.join(CHECK_KEYS)})")
    for key in ("contains", "absent", "mentions"):
        value = checks.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ChecksError(f"{where}: {key!r} must be a list of strings")
    for key in ("code_parses", "documented", "annotated"):
        if not isinstance(checks.get(key, False), bool):
            raise ChecksError(f"{where}: {key!r} must be true or false")
    return checks


def read_checks_file(path: Path) -> dict[str, dict[str, Any]]:
    """``{"id", "checks"}`` per line -> checks by prompt id."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ChecksError(f"cannot read {path}: {error}") from error
    by_id: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            entry = json.loads(line)
            prompt_id, checks = str(entry["id"]), entry["checks"]
        except (ValueError, KeyError, TypeError) as error:
            raise ChecksError(f'{where}: expected {{"id", "checks"}} JSON ({error})') from error
        by_id[prompt_id] = validate(checks, where)
    return by_id


def failed_checks(reply: str, checks: dict[str, Any]) -> list[str]:
    """What the reply got wrong, one short phrase each; empty when it passes every check."""
    failures: list[str] = []
    flat = _flatten(reply)
    for text in checks.get("contains", []):
        if _flatten(text) not in flat:
            failures.append(f"missing {text!r}")
    for text in checks.get("absent", []):
        if _flatten(text) in flat:
            failures.append(f"contains {text!r}")
    for text in checks.get("mentions", []):
        if text.lower() not in reply.lower():
            failures.append(f"does not mention {text!r}")
    if any(checks.get(key) for key in ("code_parses", "documented", "annotated")):
        tree = _parsed_code(reply)
        if tree is None:
            failures.append("code does not parse")
        else:
            functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
            if (checks.get("documented") or checks.get("annotated")) and not functions:
                failures.append("no function in the code")
            if checks.get("documented"):
                failures += [f"{node.name} has no docstring" for node in functions if ast.get_docstring(node) is None]
            if checks.get("annotated"):
                failures += [f"{node.name} is not fully annotated" for node in functions if not _annotated(node)]
    return failures


def _flatten(text: str) -> str:
    return " ".join(text.split())


def _parsed_code(reply: str) -> ast.Module | None:
    match = _FENCE.search(reply)
    code, closed = (match.group(1), match.group(2) == "```") if match else (reply, True)
    lines = code.splitlines()
    # A closed block must parse whole; a cut-off one is judged on what it wrote.
    for end in [len(lines)] if closed else range(len(lines), 0, -1):
        try:
            return ast.parse("\n".join(lines[:end]))
        except SyntaxError:
            continue
    return None


def _annotated(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    arguments = function.args
    parameters = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
    parameters += [extra for extra in (arguments.vararg, arguments.kwarg) if extra is not None]
    if parameters and parameters[0].arg in ("self", "cls"):
        parameters = parameters[1:]
    return function.returns is not None and all(parameter.annotation is not None for parameter in parameters)
