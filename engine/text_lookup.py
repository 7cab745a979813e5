"""Text-level lookup: where the reply is quoting the prompt, continue the prompt's text in the reply's layout.

Token-level lookup breaks wherever a reply copies its source with small changes. A comma
inserted after an introductory phrase ends every n-gram match, and sentences that stood one per
line in the source and are joined by spaces in the reply tokenize differently at each join (the
source's ".\\n" + "On" against the reply's "." + " On"). Matching text with commas dropped and
whitespace runs collapsed finds the place in the source regardless. The source's line breaks in
the continuation are then written the way the reply wrote them within the match, and the
continuation is tokenized afresh.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MIN_MATCH_CHARS = 12  # shorter matches are common phrases, not quotes
REPLY_TAIL_CHARS = 256  # how much of the reply's end is matched against the source
QUICK_CHECK_CHARS = 48  # the reply's end checked first for a match of MIN_MATCH_CHARS at all
WHITESPACE_RUN = re.compile(r"\s+")
MAX_LIST_MARKER_CHARS = 6  # "- ", "* ", "12. ": what a reply may put before a quoted line
NUMBERED_LINE_START = re.compile(r"(?P<before>\n+\s*)(?P<number>\d{1,3})(?P<after>[.)]\s+)")
LINE_BREAK_CONTEXT_CHARS = 4  # matched characters on each side before a line break's layout is learnt
TURN_END = "\x00"  # how the lookup drafter marks a control token (a turn's end) in the source


@dataclass(frozen=True)
class Continuation:
    text: str
    match_chars: int  # how long the matched (normalized) suffix of the reply is
    unique: bool  # whether that suffix occurs once in the source
    cut: bool  # whether the source goes on past the text (which may then end inside a word)


def normalize(text: str) -> tuple[str, list[int]]:
    """(the text with commas dropped and each whitespace run as one space, each kept character's index)."""
    kept: list[str] = []
    where: list[int] = []
    previous_space = False
    for index, character in enumerate(text):
        if character == ",":
            continue
        if character.isspace():
            if not previous_space:
                kept.append(" ")
                where.append(index)
            previous_space = True
            continue
        previous_space = False
        kept.append(character)
        where.append(index)
    return "".join(kept), where


def _is_line_break(run: str) -> bool:
    """A prose line or paragraph break, which a reply may lay out its own way. Code's breaks carry
    indentation and are copied as they are."""
    return bool(run) and set(run) == {"\n"}


def _whitespace_run(text: str, start: int) -> str:
    run = WHITESPACE_RUN.match(text, start)
    return run.group() if run else ""


class TextLookup:
    """Finds the reply's end in the source text and proposes what follows it there."""

    def __init__(self) -> None:
        self.begin("")

    def begin(self, source: str) -> None:
        self.source = source
        self.normalized, self._where = normalize(source)
        self._line_breaks: dict[str, str] = {}  # a source whitespace run with a line break -> the reply's
        self._last_end = 0  # where in the normalized source the last match ended (quotes run in order)

    def continuation(self, reply: str, max_chars: int) -> Continuation | None:
        if not self._may_match(reply):
            return None
        tail = reply[-REPLY_TAIL_CHARS:]
        normalized_tail, tail_where = normalize(tail)
        # The longest suffix of the tail found in the source (if a suffix occurs, so do shorter ones).
        low, high = 0, len(normalized_tail)
        while low < high:
            middle = (low + high + 1) // 2
            if self.normalized.find(normalized_tail[-middle:]) >= 0:
                low = middle
            else:
                high = middle - 1
        length = low
        if length < MIN_MATCH_CHARS:
            return None
        suffix = normalized_tail[-length:]
        first = self.normalized.find(suffix)
        unique = self.normalized.find(suffix, first + 1) < 0
        start = first if unique else self.normalized.find(suffix, max(0, self._last_end - length))
        if start < 0:
            start = first
        end = start + length
        self._last_end = end
        self._learn_line_breaks(tail, tail_where[len(tail_where) - length :], start)
        head = next((offset for offset in range(min(LINE_BREAK_CONTEXT_CHARS, length)) if suffix[offset] == " "), None)
        if head is not None:
            # A match that begins at (or a character or two before: "2." lines up with "notice.") a
            # source line break. The reply's start counts as a line start (its first line may
            # begin with a marker too).
            line = tail if len(reply) > len(tail) else "\n" + tail
            offset = len(line) - len(tail)
            where = offset + tail_where[len(tail_where) - length + head]
            self._learn_line_start(line, where, self._where[start + head])
        last = self._where[end - 1]
        source_end = last + 1
        if suffix.endswith(" "):
            # The reply has begun a whitespace run: go on from its end in the source's run, or
            # past the whole run when the two differ (the reply lays out lines its own way).
            source_run = _whitespace_run(self.source, last)
            reply_run = tail[tail_where[-1] :]
            source_end = last + (len(reply_run) if source_run.startswith(reply_run) else len(source_run))
        text = self.source[source_end : source_end + max_chars]
        if _is_line_break(run := _whitespace_run(text, 0)) and run not in self._line_breaks:
            return None  # how the reply writes this line break is not known yet: let the target show it
        cut = source_end + max_chars < len(self.source)
        unseen = self._first_unseen_line_break(text)
        if unseen is not None:
            text, cut = text[:unseen], True  # likewise further on: the draft stops before it
        return Continuation(self._relayout(text), length, unique, cut=cut)

    def _first_unseen_line_break(self, text: str) -> int | None:
        """Where in ``text`` the first line break the reply has not been seen writing begins, if
        more text follows it (a break that ends the turn or the source is no question of layout)."""
        for run in WHITESPACE_RUN.finditer(text):
            if _is_line_break(run.group()) and run.group() not in self._line_breaks:
                rest = text[run.end() :]
                if rest and not rest.startswith(TURN_END):
                    return run.start()
                return None
        return None

    def _may_match(self, reply: str) -> bool:
        """Whether the reply's last MIN_MATCH_CHARS normalized characters occur in the source, a
        check on a short window first: any longer match ends with them, and most steps of a reply
        that is not quoting end here, at a fraction of the cost of normalizing the whole tail."""
        window, _ = normalize(reply[-QUICK_CHECK_CHARS:])
        if len(window) <= MIN_MATCH_CHARS and len(reply) > QUICK_CHECK_CHARS:
            return True  # mostly whitespace and commas: let the full check decide
        return len(window) >= MIN_MATCH_CHARS and window[-MIN_MATCH_CHARS:] in self.normalized

    @property
    def relays_out(self) -> bool:
        """Whether the reply has been seen writing the source's line breaks differently."""
        return any(source_run != reply_run for source_run, reply_run in self._line_breaks.items())

    def _learn_line_breaks(self, tail: str, tail_positions: list[int], start: int) -> None:
        """Record how the reply wrote each source line break inside the match (the last one wins).

        Only breaks with a few matched characters on both sides count: at the match's edges the
        reply's whitespace may belong to something else (a list marker's space, say), and a single
        character may line up by chance ("1. Soak" against the source's "eight.\nSoak")."""
        for offset in range(LINE_BREAK_CONTEXT_CHARS, len(tail_positions) - LINE_BREAK_CONTEXT_CHARS):
            tail_position = tail_positions[offset]
            source_position = self._where[start + offset]
            if not self.source[source_position].isspace():
                continue
            source_run = _whitespace_run(self.source, source_position)
            if _is_line_break(source_run):
                self._line_breaks[source_run] = _whitespace_run(tail, tail_position)

    def _learn_line_start(self, tail: str, tail_position: int, source_position: int) -> None:
        """A match that starts at a source line break: record what the reply put there, a list
        marker included ("\n- " for a source's "\n" when the reply makes lines into bullets)."""
        source_run = _whitespace_run(self.source, source_position)
        if not _is_line_break(source_run):
            return
        reply_run = _whitespace_run(tail, tail_position)
        line_start = tail.rfind("\n", max(0, tail_position - MAX_LIST_MARKER_CHARS), tail_position)
        if "\n" not in reply_run and line_start >= 0:
            reply_run = tail[line_start : tail_position + len(reply_run)]
        self._line_breaks[source_run] = reply_run

    def _relayout(self, text: str) -> str:
        """``text`` with each source line break written as the reply last wrote it; a numbered
        list's marker counts on from the number the reply last wrote ("\n2. " then "\n3. ")."""
        if not self._line_breaks:
            return text
        counted: dict[str, int] = {}

        def written(run: re.Match[str]) -> str:
            source_run = run.group()
            reply_run = self._line_breaks.get(source_run, source_run)
            number = NUMBERED_LINE_START.fullmatch(reply_run)
            if number is None:
                return reply_run
            counted[source_run] = counted.get(source_run, int(number["number"])) + 1
            return f"{number['before']}{counted[source_run]}{number['after']}"

        return WHITESPACE_RUN.sub(written, text)
