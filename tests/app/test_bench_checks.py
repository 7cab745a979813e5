import pytest

from duetto.app.bench.checks import ChecksError, failed_checks, read_checks_file, validate

LRU = '''Here it is:

```python
class LRUCache:
    def __init__(self, capacity: int) -> None:
        """Make an empty cache."""
        self.recency = []

    def get(self, key):
        return key
```
Done.'''


def test_text_checks_match_word_for_word_across_line_breaks_and_mentions_ignore_case() -> None:
    reply = "From the first of March\n   the reading room opens at nine."
    assert failed_checks(reply, {"contains": ["From the first of March the reading room opens at nine."]}) == []
    assert failed_checks(reply, {"contains": ["From the first of March, the reading room"]}) == [
        "missing 'From the first of March, the reading room'"
    ]
    assert failed_checks(reply, {"absent": ["reading room"]}) == ["contains 'reading room'"]
    assert failed_checks(reply, {"mentions": ["MARCH", "april"]}) == ["does not mention 'april'"]


def test_code_checks_read_the_first_fenced_block() -> None:
    assert failed_checks(LRU, {"code_parses": True}) == []
    assert failed_checks(LRU, {"documented": True}) == ["get has no docstring"]
    assert failed_checks(LRU, {"annotated": True}) == ["get is not fully annotated"]
    assert failed_checks("```python\ndef f(x):\n    return (\n```", {"code_parses": True}) == ["code does not parse"]
    assert failed_checks("no code at all, just words", {"documented": True}) == ["code does not parse"]
    assert failed_checks("```python\nx = 1\n```", {"documented": True}) == ["no function in the code"]


def test_a_code_block_cut_off_by_max_tokens_is_judged_on_what_it_wrote() -> None:
    cut_off = '```python\ndef f(x: int) -> int:\n    """Double."""\n    return 2 * x\n\ndef g(y'
    assert failed_checks(cut_off, {"code_parses": True, "documented": True, "annotated": True}) == []
    closed = cut_off + "\n```"
    assert failed_checks(closed, {"code_parses": True}) == ["code does not parse"]


def test_bad_check_sets_and_files_name_where_and_why(tmp_path) -> None:
    with pytest.raises(ChecksError, match="unknown check 'regex'"):
        validate({"regex": "x"}, "here")
    with pytest.raises(ChecksError, match="'contains' must be a list of strings"):
        validate({"contains": "x"}, "here")
    with pytest.raises(ChecksError, match="'annotated' must be true or false"):
        validate({"annotated": "yes"}, "here")
    path = tmp_path / "checks.jsonl"
    path.write_text('{"id": "a", "checks": {"mentions": ["x"]}}\n\n{"id": "b"}\n')
    with pytest.raises(ChecksError, match="line 3"):
        read_checks_file(path)
    path.write_text('{"id": "a", "checks": {"mentions": ["x"]}}\n')
    assert read_checks_file(path) == {"a": {"mentions": ["x"]}}
