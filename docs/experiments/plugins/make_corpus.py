"""Write the plugin benchmark's texts from two Debian packages (see docs/PLUGINS.md).

- A user with a distinctive style: the King James Version (public domain), from ``bible-kjv``'s
  ``bible`` program. Training text: Judges 1-18 (about 20k tokens); held-out text in the same style: the first
  chapters of 1 Samuel (never trained on).
- A single author's distinctive style that the model knows less well: Ambrose Bierce's *The
  Devil's Dictionary* (public domain), from ``dict-devil``. Training text: the entries from the
  start to about 85,000 characters (about 20k tokens); held-out text: the entries from SABBATH on,
  about 26,000 characters. Paragraphs are unwrapped, so that the plugin is not scored on
  predicting the file's line breaks.
- Generic prose: the Debian Manifesto and chapters of the Debian FAQ, from ``doc-debian``.

Usage (as root: ``apt-get install bible-kjv dict-devil doc-debian`` first)::

    python3 docs/experiments/plugins/make_corpus.py OUTDIR

Writes OUTDIR/kjv-train.txt, kjv-heldout.txt, devil-train.txt, devil-heldout.txt and generic.txt.
"""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

FAQ_DIR = Path("/usr/share/doc/debian/FAQ")
MANIFESTO = Path("/usr/share/doc/debian/debian-manifesto.gz")
FAQ_CHAPTERS = ("basic-defs", "choosing", "contributing", "customizing", "support")
DEVIL_DICTIONARY = Path("/usr/share/dictd/devil.dict.dz")
DEVIL_TRAIN_CHARACTERS = 85_000
DEVIL_HELD_OUT_CHARACTERS = 26_000
GENERIC_CHARACTERS = 24_000  # about 5,500 tokens: enough to see a rise of a few percent


def kjv(verses: str) -> str:
    """The verses as plain paragraphs, one per chapter, without chapter headings or verse numbers."""
    output = subprocess.run(["bible", "-l", "100000", verses], capture_output=True, text=True, check=True).stdout
    chapters: list[list[str]] = []
    for line in output.splitlines():
        verse = re.match(r"^\s+\d+ (.*)$", line)  # headings start at column 0
        if verse:
            chapters[-1].append(verse.group(1).strip())
        elif line.strip():
            chapters.append([])
    return "\n\n".join(" ".join(chapter) for chapter in chapters if chapter) + "\n"


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.blocks: list[str] = []
        self.current: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "pre"):
            self.skipping += 1
        if tag in ("p", "h1", "h2", "h3", "li", "div", "br"):
            self.flush()

    def handle_endtag(self, tag):
        if tag in ("script", "style", "pre"):
            self.skipping -= 1
        if tag in ("p", "h1", "h2", "h3", "li"):
            self.flush()

    def handle_data(self, data):
        if not self.skipping:
            self.current.append(data)

    def flush(self) -> None:
        text = re.sub(r"\s+", " ", "".join(self.current)).strip()
        if len(text.split()) >= 8:  # prose, not navigation or headings
            self.blocks.append(text)
        self.current = []


def generic() -> str:
    with gzip.open(MANIFESTO, "rt", encoding="utf-8") as stream:
        manifesto = stream.read()
    paragraphs = [re.sub(r"\s+", " ", block).strip() for block in re.split(r"\n\s*\n", manifesto)]
    blocks = [paragraph for paragraph in paragraphs if len(paragraph.split()) >= 8]
    for chapter in FAQ_CHAPTERS:
        parser = _Text()
        parser.feed((FAQ_DIR / f"{chapter}.en.html").read_text(encoding="utf-8"))
        parser.flush()
        blocks += parser.blocks
    kept: list[str] = []
    while blocks and sum(len(block) for block in kept) < GENERIC_CHARACTERS:
        kept.append(blocks.pop(0))
    return "\n\n".join(kept) + "\n"


def devil() -> tuple[str, str]:
    """(training text, held-out text): whole entries, unwrapped, split before SABBATH."""
    with gzip.open(DEVIL_DICTIONARY, "rt", encoding="latin-1") as stream:
        dictionary = stream.read()
    body = dictionary[dictionary.index("ABASEMENT, n.") :]  # after the dictd header and preface
    paragraphs = [re.sub(r"\s+", " ", block).strip() for block in re.split(r"\n\s*\n", body)]
    paragraphs = [paragraph for paragraph in paragraphs if paragraph]
    first_s = next(i for i, paragraph in enumerate(paragraphs) if re.match(r"^S[A-Z]+, ", paragraph))
    return _leading(paragraphs[:first_s], DEVIL_TRAIN_CHARACTERS), _leading(
        paragraphs[first_s:], DEVIL_HELD_OUT_CHARACTERS
    )


def _leading(paragraphs: list[str], characters: int) -> str:
    """The first paragraphs, until just over ``characters`` characters."""
    kept: list[str] = []
    written = 0
    for paragraph in paragraphs:
        if written > characters:
            break
        kept.append(paragraph)
        written += len(paragraph) + 2
    return "\n\n".join(kept) + "\n"


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "kjv-train.txt").write_text(kjv("Judges1:1-18:31"), encoding="utf-8")
    (out_dir / "kjv-heldout.txt").write_text(kjv("1Samuel1:1-8:22"), encoding="utf-8")
    devil_train, devil_held_out = devil()
    (out_dir / "devil-train.txt").write_text(devil_train, encoding="utf-8")
    (out_dir / "devil-heldout.txt").write_text(devil_held_out, encoding="utf-8")
    (out_dir / "generic.txt").write_text(generic(), encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
