"""Telling code from prose in a chat message, and shortening code without rewording it.

A conversation's memory may compress prose word by word (the small model drops the words it
expected), but code must come back exactly or not at all: a pruned line is a wrong line. So a
message is split into code and prose segments; code is kept verbatim, and when memory must
shrink a code block becomes its outline (imports, top-level assignments, signatures and the
first line of each docstring), never a cut-off tail.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

FENCE = re.compile(r"^(\s*)(```|~~~)[^\n]*\n.*?^\1\2[ \t]*$", re.MULTILINE | re.DOTALL)
OPENING_FENCE = re.compile(r"^([ \t]*)(```|~~~)[^\n]*\n", re.MULTILINE)
CODE_LINE = re.compile(
    r"""^(\s+\S                       # indented
    |(async\s+)?def\s|class\s|import\s|from\s+\S+\s+import\s|@\w|\#
    |return\b|if\s.*:$|for\s.*:$|while\s.*:$|try:$|except\b|else:$|elif\s|with\s.*:$
    |[\w.\[\]'"]+\s*(:\s*[\w\[\], .|]+)?\s*=\s*\S   # assignment
    |[})\]];?$|\w+\(.*\)\s*[;{]?$     # a call, a closing bracket
    |\)(\s*->.*)?:$|.*[([{,]$|"{3}|'{3}  # a signature's end, an open bracket, a docstring's quotes
    |(const|let|var|function|fn|pub|func|package|public|private|static|struct|enum|impl|use|\#include)\b
    )""",
    re.VERBOSE,
)
MINIMUM_UNFENCED_LINES = 3
"""Unfenced lines count as code only in runs of at least this many."""
LONGEST_GAP = 12
"""A code run goes on across this many lines that do not look like code (a docstring, a
multi-line string) when code follows them: counting prose as code only keeps it verbatim,
while code taken for prose would be pruned."""
TOP_LEVEL_STATEMENT = re.compile(r"(import\s|from\s+\S+\s+import\s|[A-Za-z_][\w.]*\s*(:[^=]+)?=)")


@dataclass(frozen=True)
class Segment:
    text: str
    is_code: bool


def split_code(text: str) -> list[Segment]:
    """``text`` as alternating prose and code segments (fenced blocks, and runs of lines that look
    like code), in order; joining their texts gives ``text`` back."""
    segments: list[Segment] = []
    position = 0
    for match in FENCE.finditer(text):
        segments.extend(_split_unfenced(text[position : match.start()]))
        segments.append(Segment(match.group(0), True))
        position = match.end()
    segments.extend(_split_unfenced(text[position:]))
    return _merged([segment for segment in segments if segment.text])


def fenced_code(text: str, *, unclosed: bool = False) -> list[str]:
    """The contents of ``text``'s fenced code blocks, in order, without their fences; with
    ``unclosed``, also that of a last block whose closing fence never came (a reply cut at its
    token limit), which is code as far as it goes rather than prose."""
    blocks = []
    position = 0
    for match in FENCE.finditer(text):
        lines = match.group(0).split("\n")[1:-1]  # the opening fence line and the closing one
        indent = match.group(1)
        blocks.append("\n".join(line.removeprefix(indent) for line in lines))
        position = match.end()
    if unclosed and (opening := OPENING_FENCE.search(text, position)):
        indent = opening.group(1)
        lines = text[opening.end() :].rstrip("\n").split("\n")
        blocks.append("\n".join(line.removeprefix(indent) for line in lines))
    return blocks


def _split_unfenced(text: str) -> list[Segment]:
    lines = text.splitlines(keepends=True)
    looks_like_code = [bool(CODE_LINE.match(line.rstrip("\n"))) for line in lines]
    segments: list[Segment] = []
    start = 0
    while start < len(lines):
        end = start
        if looks_like_code[start]:
            # A code run: code lines, with gaps of other lines inside it (never at its end).
            end = start + 1
            while end < len(lines):
                following = [index for index in range(end, min(len(lines), end + LONGEST_GAP + 1))
                             if looks_like_code[index]]  # fmt: skip
                if not following:
                    break
                end = following[0] + 1
            if sum(looks_like_code[start:end]) >= MINIMUM_UNFENCED_LINES:
                segments.append(Segment("".join(lines[start:end]), True))
                start = end
                continue
            end = start
        segments.append(Segment(lines[end], False))
        start = end + 1
    return segments


def _merged(segments: list[Segment]) -> list[Segment]:
    merged: list[Segment] = []
    for segment in segments:
        if merged and not merged[-1].is_code and not segment.is_code:
            merged[-1] = Segment(merged[-1].text + segment.text, False)
        else:
            merged.append(segment)
    return merged


def fenced(code: str) -> str:
    """``code`` inside a Markdown fence (as it is, if it is fenced already)."""
    stripped = code.strip("\n")
    if stripped.lstrip().startswith(("```", "~~~")):
        return stripped
    return f"```\n{stripped}\n```"


def outline(code: str) -> str:
    """The code's outline: fences, top-level imports and assignments, decorators, def and class
    lines and the first line of each docstring, whole lines in order, each run of other lines
    replaced by one ``...`` at its indentation."""
    kept: list[str] = []
    dropping = False
    in_signature = False  # inside a def or class line that goes on over several lines
    after_signature = False  # the last line kept ended a def or class line: a docstring may follow
    for line in code.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        starts_definition = _is_definition(line)
        keep = (
            in_signature
            or starts_definition
            or stripped.startswith(("```", "~~~"))
            or (not line[:1].isspace() and bool(TOP_LEVEL_STATEMENT.match(line)))
            or (after_signature and stripped.startswith(('"""', "'''", "#")))
        )
        if keep:
            kept.append(line)
            dropping = False
        elif not dropping:
            kept.append(_indent_of(line) + "...")
            dropping = True
        is_signature_line = in_signature or (starts_definition and not stripped.startswith("@"))
        in_signature = is_signature_line and not stripped.endswith(":")
        after_signature = is_signature_line and stripped.endswith(":")
    return "\n".join(kept)


def _is_definition(line: str) -> bool:
    return bool(re.match(r"^\s*((async\s+)?def\s|class\s|@\w)", line))


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


PROSE_WORDS_KEPT_WHOLE = 40
"""Prose this short (a question, an instruction) is remembered as written: compressing it saves
little and can lose what was asked."""


def remembered_turns(messages: list[dict[str, str]], compress_prose: Callable[[str], str]) -> str:
    """Messages as one memory text: "role: ..." each, code fenced and verbatim, long prose compressed."""
    turns: list[str] = []
    for message in messages:
        pieces: list[str] = []
        for segment in split_code(message["content"]):
            if segment.is_code:
                pieces.append(fenced(segment.text))
            elif len(segment.text.split()) > PROSE_WORDS_KEPT_WHOLE:
                pieces.append(compress_prose(segment.text).strip())
            elif segment.text.strip():
                pieces.append(segment.text.strip())
        turns.append(f"{message['role']}: " + "\n".join(pieces))
    return "\n".join(turns)


def shrunk_memory(text: str, compress_prose: Callable[[str], str]) -> str | None:
    """A shorter memory text, one step at a time: the oldest code block that is more than its
    outline becomes its outline; failing that, long prose is compressed once more. None when
    neither shortens it (what is left can only be dropped whole)."""
    segments = split_code(text)
    for index, segment in enumerate(segments):
        if segment.is_code:
            shorter = outline(segment.text)
            if len(shorter) < len(segment.text.strip("\n")):
                leading = segment.text[: len(segment.text) - len(segment.text.lstrip("\n"))]
                segments[index] = Segment(leading + shorter, True)
                return "".join(part.text for part in segments)
    shorter_text = "".join(
        part.text if part.is_code else _compressed_lines(part.text, compress_prose) for part in segments
    )
    return shorter_text if len(shorter_text) < 0.9 * len(text) else None


ROLE_LABEL = re.compile(r"^(\w+: )?")


def _compressed_lines(prose: str, compress_prose: Callable[[str], str]) -> str:
    """Each long line of ``prose`` compressed, its "role: " label and line breaks kept (a line break
    after a closing fence must stay, or the fence would no longer close)."""
    lines = prose.split("\n")
    for index, line in enumerate(lines):
        if len(line.split()) > PROSE_WORDS_KEPT_WHOLE:
            label = ROLE_LABEL.match(line).group(0)
            lines[index] = label + compress_prose(line[len(label) :]).strip().replace("\n", " ")
    return "\n".join(lines)


def without_oldest_part(text: str) -> str:
    """``text`` less its first line of prose or its first whole code block (never part of one)."""
    segments = split_code(text)
    if not segments:
        return ""
    first = segments[0]
    if first.is_code:
        rest = segments[1:]
    else:
        lines = first.text.splitlines(keepends=True)
        rest = [Segment("".join(lines[1:]), False), *segments[1:]] if len(lines) > 1 else segments[1:]
    return "".join(part.text for part in rest)
