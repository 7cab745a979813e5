"""Text-level lookup: finding where a reply quotes its prompt despite small changes of layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from duetto.engine.lookup_drafter import LookupDrafter
from duetto.engine.model_session import ModelSession
from duetto.engine.text_lookup import TextLookup, normalize

NOTICE = (
    "Library notice.\n"
    "From the first of March the reading room opens at nine.\n"
    "On Saturdays the reading room closes at four.\n"
    "Members may borrow up to eight books.\n"
)


def lookup(source: str = NOTICE) -> TextLookup:
    text_lookup = TextLookup()
    text_lookup.begin(source)
    return text_lookup


def test_normalize_drops_commas_and_collapses_whitespace_keeping_positions() -> None:
    text, where = normalize("a,  b\n\nc")
    assert text == "a b c"
    assert [("a,  b\n\nc")[index] for index in where] == ["a", " ", "b", "\n", "c"]


def test_a_comma_the_reply_inserted_does_not_lose_the_place() -> None:
    found = lookup().continuation("From the first of March,", 40)
    assert found is not None and found.unique
    assert found.text.startswith(" the reading room opens at nine.")


def test_too_short_a_match_is_no_quote() -> None:
    assert lookup().continuation("the room", 40) is None


def test_an_unseen_line_break_is_left_to_the_target_then_written_as_the_reply_wrote_it() -> None:
    text_lookup = lookup()
    assert text_lookup.continuation("From the first of March the reading room opens at nine.", 40) is None

    found = text_lookup.continuation("From the first of March the reading room opens at nine. On Saturdays", 60)
    assert found is not None
    assert found.text.startswith(" the reading room closes at four. Members may borrow")


def test_a_draft_stops_before_a_line_break_the_reply_has_not_been_seen_writing() -> None:
    found = lookup().continuation("From the first of March the reading", 80)
    assert found is not None and found.cut
    assert found.text == " room opens at nine."  # the reply may go on with a bullet, a space, a number


def test_a_numbered_first_line_is_a_line_start_though_its_marker_lines_up_by_chance() -> None:
    """A numbered step's "1." ends like the source's "eight." before its line break, so the match
    spans that break with one character before it: that says nothing of how the reply joins the
    source's lines (it would teach "a space"), but it is where the reply's line starts."""
    text_lookup = lookup("Soup for eight.\nSoak the barley overnight and drain it.\nSoften two onions.\n")
    found = text_lookup.continuation("1. Soak the barley overnight and drain it", 40)
    assert found is not None and found.text.startswith(".\n2. Soften two onions.")


def test_lines_made_into_bullets_continue_with_the_marker() -> None:
    text_lookup = lookup()
    found = text_lookup.continuation("- From the first of March the reading room opens at nine.", 40)
    assert found is not None and found.text.startswith("\n- On Saturdays the reading room")


def test_lines_made_into_numbered_steps_count_on() -> None:
    text_lookup = lookup()
    found = text_lookup.continuation("1. Library notice.\n2. From the first of March the reading room opens", 200)
    assert found is not None
    assert found.text.startswith(" at nine.\n3. On Saturdays the reading room closes at four.\n4. Members may")


def test_code_indentation_is_continued_from_where_the_reply_is_in_it() -> None:
    source = "class Cache:\n    def get(self, key):\n        return self.values[key]\n"
    found = lookup(source).continuation("class Cache:\n    def get(self, key):\n   ", 30)
    assert found is not None
    assert found.text == "     return self.values[key]\n"


def test_a_repeated_phrase_continues_after_the_previous_match() -> None:
    source = "first: the reading room opens at nine. later: the reading room opens at ten."
    text_lookup = lookup(source)
    assert text_lookup.continuation("later: the reading", 12).text == " room opens "
    assert text_lookup.continuation("the reading room opens at", 4).text == " ten"


@pytest.fixture(scope="module")
def session(tiny_models: dict[str, Path]) -> ModelSession:
    return ModelSession(tiny_models["target"], context_length=512, threads=1)


def test_the_lookup_drafter_proposes_the_source_tokens_where_token_matching_breaks(session: ModelSession) -> None:
    prompt = session.tokenize(NOTICE)
    reply = session.tokenize("From the first of March,")
    drafter = LookupDrafter(session)
    drafter.begin(prompt)

    tokens, key = drafter.find_text([*prompt, *reply], 6)

    assert key.match == "text" and key.unique
    assert tokens == session.tokenize(" the reading room opens at nine.")[: len(tokens)] and len(tokens) >= 4
    assert drafter.candidates([*prompt, *reply], 6)[-1] == (tokens, key, False)


def test_lookup_drafts_stop_where_the_copied_turn_ends(session: ModelSession) -> None:
    """What follows a user's message in the prompt is chat-template text ("<|im_end|>",
    "<|im_start|>assistant"): a token draft may end the reply there, a text draft stops before it."""
    prompt = session.chat_prompt_tokens([{"role": "user", "content": NOTICE}])
    reply = session.tokenize("Members may borrow")
    drafter = LookupDrafter(session)
    drafter.begin(prompt)
    history = [*prompt, *reply]

    tokens, key = drafter.find(history, 40)
    text_tokens, text_key = drafter.find_text(history, 40)

    assert key.match == "tokens" and text_key.match == "text"
    assert session.is_end_of_generation(tokens[-1]) and not any(map(session.is_end_of_generation, tokens[:-1]))
    text = b"".join(map(session.token_bytes, tokens)).decode()
    assert text == b"".join(map(session.token_bytes, text_tokens)).decode() == " up to eight books.\n"


def test_a_long_prediction_is_followed_from_where_the_reply_was_last_found(session: ModelSession) -> None:
    """In a long prediction the pair of tokens the reply ends with (a line break and an
    indent) occurs more often than the drafter tries; the reply's place is looked for from where
    it was last found, so it is found all the way down, not only among the first occurrences."""
    lines = [session.tokenize(f"value_{number} = compute({number})\n") for number in range(80)]
    prediction = [token for line in lines for token in line]
    prompt = session.tokenize("Rewrite it.")
    drafter = LookupDrafter(session)
    drafter.begin(prompt, prediction)
    history = list(prompt)
    found = 0
    for line in lines[:-1]:
        history += line[:2]  # the reply has written the start of the line: "value", "_"
        tokens, _ = drafter.find_in_prediction(history, 64)
        found += tokens[: len(line) - 2] == line[2:]
        history += line[2:]
    assert found == len(lines) - 1, f"the reply's place was found at {found} of {len(lines) - 1} lines"
