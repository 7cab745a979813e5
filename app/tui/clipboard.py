"""Copying to the clipboard from wherever the chat app runs.

Textual's ``copy_to_clipboard`` writes an OSC 52 sequence: the terminal sets its clipboard, which
works over SSH and inside tmux (with ``set-clipboard on``), where no clipboard program can reach
the user's desktop. Some terminals ignore OSC 52 (macOS Terminal), so where a clipboard program
is at hand locally it is given the text as well.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

CLIPBOARD_PROGRAM_SECONDS = 2.0


def clipboard_program() -> list[str] | None:
    """The local clipboard program for this session, if there is one (none over SSH: it would
    fill the remote machine's clipboard, not the user's)."""
    if os.environ.get("SSH_CONNECTION"):
        return None
    if sys.platform == "darwin" and shutil.which("pbcopy"):
        return ["pbcopy"]
    if os.environ.get("WAYLAND_DISPLAY") and shutil.which("wl-copy"):
        return ["wl-copy"]
    if os.environ.get("DISPLAY"):
        if shutil.which("xclip"):
            return ["xclip", "-selection", "clipboard"]
        if shutil.which("xsel"):
            return ["xsel", "--clipboard", "--input"]
    return None


def copy_with_program(text: str) -> bool:
    """Give ``text`` to the local clipboard program; False when there is none or it failed.
    Blocks for up to CLIPBOARD_PROGRAM_SECONDS: call it from a thread."""
    program = clipboard_program()
    if program is None:
        return False
    try:
        subprocess.run(program, input=text.encode("utf-8"), timeout=CLIPBOARD_PROGRAM_SECONDS, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return False
    return True
