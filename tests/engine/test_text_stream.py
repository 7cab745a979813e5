from duetto.engine.text_stream import TextStream


def test_multi_byte_characters_are_never_split() -> None:
    stream = TextStream()
    encoded = "héllo ✓🎉".encode()
    deltas = [stream.push(encoded[index : index + 1]) for index in range(len(encoded))]
    deltas.append(stream.flush())

    assert "".join(deltas) == "héllo ✓🎉"
    for delta in deltas:
        delta.encode("utf-8")  # every delta is whole characters
    assert "" in deltas, "a partial character waits for the next byte"


def test_stop_strings_end_the_text_and_are_not_shown() -> None:
    stream = TextStream(stop_strings=("<END>",))
    deltas = [stream.push(piece.encode()) for piece in ["Hello", " wor", "ld<", "EN", "D> more"]]

    assert "".join(deltas) == "Hello world"
    assert stream.stopped
    assert deltas[2] == "ld", "text that may start a stop string is held back"
    assert stream.push(b"after") == ""


def test_held_back_text_is_released_when_it_is_not_a_stop_string() -> None:
    stream = TextStream(stop_strings=("<END>",))

    assert stream.push(b"a <E") == "a "
    assert stream.push(b"x") == "<Ex"
    assert stream.push(b"<") == ""
    assert stream.flush() == "<"
    assert stream.text == "a <Ex<"
