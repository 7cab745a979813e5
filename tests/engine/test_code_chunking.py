"""Code is cut at its top-level definitions, and what memory keeps of it is its own lines."""

from __future__ import annotations

import pytest

from duetto.engine.code_chunking import compressed_code, is_code_path, split_code_into_chunks, top_level_blocks

PYTHON = '''"""A module whose docstring
spans lines at column 0."""

import os

# the helper's comment stays with it
@cache
def helper(value):
    """Doc."""
    text = """
a string at column 0
"""
    return value, text


class Store:
    def put(self, key):
        return key

    def get(self, key):
        return os.environ.get(key)
'''

JAVASCRIPT = """import { x } from "y";

// adds one
function addOne(n) {
  const m = n + 1;
  return m;
}

export class Counter {
  constructor() {
    this.n = 0;
  }
}
"""


def words(text: str) -> int:
    return len(text.split())


@pytest.mark.parametrize(("text", "path"), [(PYTHON, "m.py"), (JAVASCRIPT, "m.js"), (PYTHON, "m.txt-as-code")])
def test_the_blocks_are_the_file_again(text: str, path: str) -> None:
    assert "".join(top_level_blocks(text, path)) == text


def test_python_blocks_are_whole_definitions_with_their_decorators_and_comments() -> None:
    blocks = top_level_blocks(PYTHON, "m.py")
    helper = next(block for block in blocks if "def helper" in block)
    assert helper.startswith("# the helper's comment") and "@cache" in helper and "a string at column 0" in helper
    assert any(block.startswith("class Store:") and "def get" in block for block in blocks)


def test_javascript_blocks_follow_indentation_and_closing_braces() -> None:
    blocks = top_level_blocks(JAVASCRIPT, "m.js")
    assert any(block.startswith("// adds one\nfunction addOne") and block.rstrip().endswith("}") for block in blocks)


@pytest.mark.parametrize(("text", "path"), [(PYTHON, "m.py"), (JAVASCRIPT, "m.js")])
def test_a_definition_that_fits_a_chunk_is_never_cut(text: str, path: str) -> None:
    chunks = split_code_into_chunks(text, words, target_tokens=30, path=path)
    for block in top_level_blocks(text, path):
        if words(block) <= 30:
            assert sum(block.strip("\n") in chunk.text for chunk in chunks) == 1, block
    assert [chunk.token_start for chunk in chunks[1:]] == [chunk.token_end for chunk in chunks[:-1]]


def test_a_definition_longer_than_a_chunk_is_cut_between_whole_lines() -> None:
    long_function = "def long():\n" + "".join(f"    value_{i} = {i}\n" for i in range(60))
    chunks = split_code_into_chunks(long_function, words, target_tokens=40, path="m.py")
    assert len(chunks) > 1
    lines = set(long_function.splitlines())
    assert all(line in lines for chunk in chunks for line in chunk.text.splitlines())
    assert all(words(chunk.text) <= 40 for chunk in chunks)


@pytest.mark.parametrize(("text", "path"), [(PYTHON, "m.py"), (JAVASCRIPT, "m.js")])
def test_compressed_code_is_made_of_the_codes_own_lines(text: str, path: str) -> None:
    compressed = compressed_code(text, path)
    lines = set(text.splitlines())
    assert compressed and len(compressed) < len(text)
    assert all(line in lines or line.strip() == "..." for line in compressed.splitlines()), compressed


def test_code_is_known_by_its_extension() -> None:
    assert is_code_path("src/app.py") and is_code_path("Makefile") and is_code_path("web/x.tsx")
    assert not is_code_path("README.md") and not is_code_path("notes.txt")


def test_c_braces_on_their_own_line_and_doc_comments_stay_with_their_function() -> None:
    c = (
        "/**\n * Adds two numbers.\n */\nint add(int a, int b)\n{\n    return a + b;\n}\n\n"
        "int main(void)\n{\n    return 0;\n}\n"
    )
    blocks = top_level_blocks(c, "m.c")
    assert blocks[0].startswith("/**") and "return a + b;" in blocks[0] and blocks[0].rstrip().endswith("}")
    assert blocks[1].startswith("int main(void)\n{")


def test_form_feeds_do_not_move_python_definitions() -> None:
    text = "def f1():\n    return 1\n\x0c\ndef f2():\n    a = 1\n    return a\n\x0c\ndef f3():\n    return 3\n"
    blocks = top_level_blocks(text, "m.py")
    assert [block.split("\n")[0] for block in blocks] == ["def f1():", "def f2():", "def f3():"]
    assert "return a" in blocks[1]


def test_a_line_longer_than_a_chunk_is_cut_to_fit() -> None:
    minified = "var x=" + "a" * 5000 + ";\n"
    chunks = split_code_into_chunks(minified, lambda text: len(text) // 4 + 1, 160, path="m.js")
    assert len(chunks) > 1 and all(len(chunk.text) // 4 + 1 <= 160 for chunk in chunks)
    assert "".join(chunk.text for chunk in chunks) == minified.strip("\n")
