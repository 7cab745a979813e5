"""Cutting source code into chunks at the boundaries of its top-level definitions.

Prose is cut between sentences (engine/chunking.py); code cut that way splits a function in
two, and a question about it then finds half. Here a file is first split into top-level blocks
(a function or class with its decorators and the comments above it, a run of imports), which
are packed whole into chunks; only a block larger than a chunk is cut, and then between its
own inner blocks, never inside a line. It reads indentation and closing brackets only, so it
serves every language that is indented the usual way, not Python alone.

A chunk's compressed form is never reworded code: Python keeps its outline (engine/code_blocks),
any other language its lines at the chunk's outer indentation; both are whole lines as written.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable

from duetto.engine.chunking import DEFAULT_CHUNK_TOKENS, TextChunk, cut_between_words
from duetto.engine.code_blocks import outline

CODE_EXTENSIONS = frozenset(
    [
        ".py",
        ".pyi",
        ".js",
        ".jsx",
        ".mjs",
        ".cjs",
        ".ts",
        ".tsx",
        ".go",
        ".rs",
        ".c",
        ".h",
        ".cc",
        ".cpp",
        ".cxx",
        ".hpp",
        ".hh",
        ".java",
        ".kt",
        ".kts",
        ".scala",
        ".swift",
        ".m",
        ".mm",
        ".rb",
        ".php",
        ".cs",
        ".fs",
        ".lua",
        ".pl",
        ".pm",
        ".r",
        ".jl",
        ".dart",
        ".ex",
        ".exs",
        ".erl",
        ".hs",
        ".ml",
        ".clj",
        ".sh",
        ".bash",
        ".zsh",
        ".fish",
        ".ps1",
        ".sql",
        ".vue",
        ".svelte",
        ".zig",
        ".nim",
        ".v",
        ".css",
        ".scss",
        ".less",
        ".toml",
        ".yaml",
        ".yml",
        ".json",
        ".ini",
        ".cfg",
        ".mk",
        ".cmake",
        ".gradle",
        ".tf",
        ".proto",
    ]
)
"""File extensions chunked as code (the rest, Markdown and text above all, as prose)."""

_CONTINUES_BLOCK = re.compile(r"^[\s)\]{}]|^(end|else|elif|except|finally|catch|rescue|ensure)\b")
"""A line that belongs to the block above it: indented, a bracket (a C function's ``{`` on its own
line), or a block's tail keyword."""
_LINE = re.compile(r"[^\n]*\n|[^\n]+$")
"""A line with its newline; only ``\n`` ends one (``str.splitlines`` also splits at form feeds,
which Python's parser does not count, and would misplace every definition after one)."""
_ATTACHES_BELOW = re.compile(r"^(@|#|//|/\*|\*|--|;|\"\"\"|''')")
"""A column-0 line that belongs to the block below it: a decorator or a comment."""


def is_code_path(path: str) -> bool:
    name = path.rsplit("/", 1)[-1].lower()
    return name in ("makefile", "dockerfile", "cmakelists.txt") or any(name.endswith(ext) for ext in CODE_EXTENSIONS)


def top_level_blocks(text: str, path: str = "") -> list[str]:
    """The file's top-level blocks in order; joined, they are the file again. Python is parsed
    (a docstring or a multi-line string at column 0 would fool the indentation rule); other
    languages, and Python that does not parse, go by indentation."""
    if path.endswith((".py", ".pyi")):
        blocks = _python_blocks(text)
        if blocks is not None:
            return blocks
    return _indented_blocks(text)


def _python_blocks(text: str) -> list[str] | None:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    lines = _LINE.findall(text)
    starts: list[int] = []
    previous_end = 0
    for node in tree.body:
        start = min([node.lineno, *(decorator.lineno for decorator in getattr(node, "decorator_list", []))]) - 1
        while start > previous_end and lines[start - 1].lstrip().startswith("#"):
            start -= 1  # the comments right above a definition belong to it
        starts.append(start)
        previous_end = node.end_lineno or start + 1
    if not starts:
        return [text] if text else []
    starts[0] = 0
    bounds = [*starts, len(lines)]
    blocks = ["".join(lines[bounds[i] : bounds[i + 1]]) for i in range(len(starts))]
    return [block for block in blocks if block]


def _indented_blocks(text: str) -> list[str]:
    blocks: list[list[str]] = []
    attached: list[str] = []  # comments and decorators waiting for the block they belong to
    for line in _LINE.findall(text):
        bare = line.strip()
        if not bare:
            (attached if attached else blocks[-1] if blocks else attached).append(line)
            continue
        if _CONTINUES_BLOCK.match(line) and attached:
            attached.append(line)  # the body of a comment (" * ..." under "/**") waits with it
        elif _CONTINUES_BLOCK.match(line) and blocks:
            blocks[-1].append(line)
        elif _ATTACHES_BELOW.match(line):
            attached.append(line)
        else:
            blocks.append([*attached, line])
            attached = []
    if attached:
        blocks.append(attached)
    return ["".join(block) for block in blocks]


def split_code_into_chunks(
    text: str, count_tokens: Callable[[str], int], target_tokens: int = DEFAULT_CHUNK_TOKENS, path: str = ""
) -> list[TextChunk]:
    """Whole top-level blocks packed into chunks of at most ``target_tokens`` (a longer block is
    cut between its inner blocks, else between lines); token spans run end to end."""
    pieces: list[str] = []
    for block in top_level_blocks(text, path):
        if count_tokens(block) <= target_tokens:
            pieces.append(block)
            continue
        for part in _cut_block(block, count_tokens, target_tokens):
            if count_tokens(part) <= target_tokens:
                pieces.append(part)
            else:  # one line longer than a chunk (minified code, data): cut between words, then anywhere
                pieces.extend(_cut_long_line(part, count_tokens, target_tokens))
    chunks: list[TextChunk] = []
    current = ""
    position = 0

    def flush() -> None:
        nonlocal current, position
        chunk_text = current.strip("\n")
        if chunk_text.strip():
            tokens = count_tokens(chunk_text)
            chunks.append(TextChunk(chunk_text, position, position + tokens))
            position += tokens
        current = ""

    for piece in pieces:
        if current and count_tokens(current + piece) > target_tokens:
            flush()
        current += piece
    flush()
    return chunks


def _cut_block(block: str, count_tokens: Callable[[str], int], target_tokens: int) -> list[str]:
    """A block too long for one chunk, cut where its body's own blocks begin (a blank line
    before a line at the body's outer indentation), and between lines where even those are too long."""
    lines = _LINE.findall(block)
    indents = [len(line) - len(line.lstrip()) for line in lines[1:] if line.strip()]
    body_indent = min(indents) if indents else 0
    parts: list[str] = []
    current = ""
    for index, line in enumerate(lines):
        starts_inner_block = (
            index > 0 and line.strip() and not lines[index - 1].strip()
            and len(line) - len(line.lstrip()) == body_indent
        )  # fmt: skip
        if current and (starts_inner_block or count_tokens(current + line) > target_tokens):
            if starts_inner_block and count_tokens(current + line) <= target_tokens and _lines(current) < 3:
                current += line  # a tiny part: keep it with the next one
                continue
            parts.append(current)
            current = ""
        current += line
    if current:
        parts.append(current)
    return parts


def _cut_long_line(text: str, count_tokens: Callable[[str], int], target_tokens: int) -> list[str]:
    parts: list[str] = []
    for piece in cut_between_words(text, count_tokens, target_tokens):
        while count_tokens(piece) > target_tokens:  # no spaces to cut at: halve until it fits
            cut = len(piece) // 2
            while count_tokens(piece[:cut]) > target_tokens:
                cut //= 2
            parts.append(piece[:cut])
            piece = piece[cut:]
        parts.append(piece)
    return parts


def _lines(text: str) -> int:
    return text.count("\n")


def compressed_code(text: str, path: str) -> str:
    """What memory keeps of a code chunk, in whole lines as written: Python's outline; other
    languages' lines at the chunk's outer indentation, a run of deeper ones as one ``...``."""
    if path.endswith((".py", ".pyi")):
        return outline(text)
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    outer = min(len(line) - len(line.lstrip()) for line in lines)
    kept: list[str] = []
    for line in lines:
        if len(line) - len(line.lstrip()) == outer:
            kept.append(line)
        elif not kept or kept[-1].strip() != "...":
            kept.append(" " * (outer + 4) + "...")
    return "\n".join(kept)
