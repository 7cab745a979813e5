"""Turning a stream of token ids into text deltas that are always whole UTF-8 characters.

A token can end in the middle of a multi-byte character (byte-level BPE splits
emoji and accented letters), so bytes are decoded incrementally and a partial
character waits for the next token. Stop strings are held back the same way: text
that could still turn out to be the start of a stop string is not emitted yet.
"""

from __future__ import annotations

import codecs


class TextStream:
    def __init__(self, stop_strings: tuple[str, ...] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop_strings = tuple(stop for stop in stop_strings if stop)
        self._pending = ""
        self.stopped = False
        self.text = ""

    def push(self, token_bytes: bytes) -> str:
        """Feed one token's bytes; returns the text now safe to show (may be empty)."""
        if self.stopped:
            return ""
        self._pending += self._decoder.decode(token_bytes)
        for stop in self._stop_strings:
            index = self._pending.find(stop)
            if index != -1:
                self.stopped = True
                return self._emit(self._pending[:index])
        held = self._longest_stop_prefix_suffix()
        return self._emit(self._pending[: len(self._pending) - held], keep=self._pending[len(self._pending) - held :])

    def flush(self) -> str:
        """The rest, at the end of generation (a dangling partial character becomes U+FFFD)."""
        if self.stopped:
            return ""
        self._pending += self._decoder.decode(b"", final=True)
        return self._emit(self._pending)

    def _emit(self, text: str, keep: str = "") -> str:
        self._pending = keep
        self.text += text
        return text

    def _longest_stop_prefix_suffix(self) -> int:
        """Length of the longest tail of the pending text that begins some stop string."""
        longest = 0
        for stop in self._stop_strings:
            for length in range(min(len(stop) - 1, len(self._pending)), longest, -1):
                if self._pending.endswith(stop[:length]):
                    longest = length
                    break
        return longest
