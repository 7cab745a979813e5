"""Chunking, compression, the small model's reading, and splicing saved KV states."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from duetto.engine.chunking import split_into_chunks
from duetto.engine.compression import compress
from duetto.engine.document_reader import DocumentReader
from duetto.engine.memory_prompt import MemoryBlock, prepare_memory, save_block_states
from duetto.engine.model_session import ModelSession


def count_words(text: str) -> int:
    return len(text.split())


def test_chunks_cover_the_text_in_order_at_sentence_ends() -> None:
    sentences = [f"Sentence number {index} has exactly seven words." for index in range(30)]
    text = " ".join(sentences[:10]) + "\n\n" + " ".join(sentences[10:])

    chunks = split_into_chunks(text, count_words, target_tokens=30)

    assert " ".join(chunk.text for chunk in chunks).split() == text.split()
    assert all(chunk.text.endswith(".") for chunk in chunks)
    assert all(count_words(chunk.text) <= 30 for chunk in chunks)
    assert [chunk.token_start for chunk in chunks[1:]] == [chunk.token_end for chunk in chunks[:-1]]


def test_a_sentence_longer_than_a_chunk_is_cut_between_words() -> None:
    text = " ".join(f"w{index}" for index in range(100))

    chunks = split_into_chunks(text, count_words, target_tokens=16)

    assert " ".join(chunk.text for chunk in chunks).split() == text.split()
    assert max(count_words(chunk.text) for chunk in chunks) <= 16


def test_compression_keeps_surprising_words_and_every_number_and_name() -> None:
    words = [b"the", b" old", b" man", b" paid", b" 11", b" shillings", b" to", b" Agnes", b" for", b" it."]
    surprisal = [0.1, 0.2, 0.3, 5.0, 0.1, 4.0, 0.2, 0.1, 0.3, 0.2]

    compressed, kept_tokens = compress(words, surprisal, keep_ratio=0.4)

    assert compressed == "paid 11 shillings Agnes"
    assert kept_tokens == 4


def test_compression_never_splits_a_word() -> None:
    pieces = [b"extra", b"ordinary", b" ", b"caf\xc3", b"\xa9", b" day"]
    compressed, _ = compress(pieces, [0.1, 9.0, 0.1, 0.1, 0.1, 0.1], keep_ratio=0.5)

    assert compressed.split() == ["extraordinary"]


@pytest.fixture(scope="module")
def reader(tiny_models: dict[str, Path]) -> DocumentReader:
    return DocumentReader(ModelSession(tiny_models["draft"], context_length=512, threads=1))


def test_reading_a_chunk_gives_a_unit_embedding_and_shorter_text(reader: DocumentReader) -> None:
    text = "the cat sat on a mat and then it ran to the door while a dog slept near the warm fire " * 3

    reading = reader.read(text)
    again = reader.read(text)

    assert reading.embedding.dtype == np.float32
    assert abs(float(np.linalg.norm(reading.embedding)) - 1.0) < 1e-5
    np.testing.assert_allclose(reading.embedding, again.embedding, atol=1e-5)
    assert 0 < reading.compressed_tokens < reading.tokens
    assert set(reading.compressed_text.split()) <= set(text.split())
    assert reader.embed("the warm fire").shape == reading.embedding.shape


def test_reading_without_llama_cpps_logits_gives_what_reading_with_them_gives(tiny_models: dict[str, Path]) -> None:
    session = ModelSession(tiny_models["draft"], context_length=512, threads=1)
    fast = DocumentReader(session)
    slow = DocumentReader(session, without_projection=False)  # for models whose hidden states cannot be read alone
    text = "the cat sat on a mat and then it ran to the door while a dog slept near the warm fire " * 3

    quick, reference = fast.read(text), slow.read(text)

    assert fast.reads_without_projection  # the tiny llama graph has its result_norm tensor
    np.testing.assert_allclose(quick.embedding, reference.embedding, atol=1e-4)
    assert quick.compressed_text == reference.compressed_text
    np.testing.assert_allclose(fast.embed("the warm fire"), slow.embed("the warm fire"), atol=1e-4)


class MemoryCache:
    def __init__(self) -> None:
        self.states: dict[tuple[str, str], bytes] = {}

    def load(self, block: MemoryBlock, prefix_sha256: str) -> bytes | None:
        return self.states.get((block.key, prefix_sha256))

    def save(self, block: MemoryBlock, prefix_sha256: str, state: bytes) -> None:
        self.states[(block.key, prefix_sha256)] = state


@pytest.fixture(scope="module")
def target(tiny_models: dict[str, Path]) -> ModelSession:
    return ModelSession(tiny_models["target"], context_length=512, threads=1)


def test_a_model_graph_without_the_hidden_state_tensor_is_read_with_llama_cpps_logits(
    tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from duetto.engine import hidden_state_reader

    text = "the cat sat on a mat and then it ran to the door while a dog slept near the warm fire " * 3
    expected = DocumentReader(ModelSession(tiny_models["draft"], context_length=512, threads=1)).read(text)
    monkeypatch.setattr(hidden_state_reader, "HIDDEN_STATE_TENSOR", b"no-such-tensor")
    reader = DocumentReader(ModelSession(tiny_models["draft"], context_length=512, threads=1))

    reading = reader.read(text)

    assert not reader.reads_without_projection
    np.testing.assert_allclose(reading.embedding, expected.embedding, atol=1e-4)
    assert reading.compressed_text == expected.compressed_text


def test_a_saved_block_loads_back_to_the_same_logits(target: ModelSession) -> None:
    prefix = target.tokenize("the cat sat on a mat")
    block = MemoryBlock("a", target.tokenize(" and then it ran to the door"))
    suffix = target.tokenize(" while a dog slept")
    cache = MemoryCache()

    first = prepare_memory(target, prefix, [block], suffix, cache)
    target.truncate(0)
    second = prepare_memory(target, prefix, [block], suffix, cache)
    spliced = target.evaluate(suffix, [len(suffix) - 1]).copy()
    target.truncate(0)
    fresh = target.evaluate(first.prompt_tokens, [len(first.prompt_tokens) - 1]).copy()

    assert (first.evaluated_tokens, first.loaded_tokens) == (len(prefix) + len(block.tokens), 0)
    assert (second.evaluated_tokens, second.loaded_tokens) == (len(prefix), len(block.tokens))
    np.testing.assert_allclose(spliced, fresh, atol=1e-3)


def test_blocks_saved_ahead_are_only_loaded_by_a_later_prompt(target: ModelSession) -> None:
    prefix = target.tokenize("the cat sat on a mat")
    blocks = [MemoryBlock("a", target.tokenize(" and then it ran")), MemoryBlock("b", target.tokenize(" to the door"))]
    suffix = target.tokenize(" while a dog slept")
    cache, done = MemoryCache(), []

    saved = save_block_states(target, prefix, blocks, cache, on_block=done.append)
    prepared = prepare_memory(target, prefix, blocks, suffix, cache)
    spliced = target.evaluate(suffix, [len(suffix) - 1]).copy()
    target.truncate(0)
    prepare_memory(target, prefix, blocks, suffix, MemoryCache())  # the same blocks read now
    evaluated = target.evaluate(suffix, [len(suffix) - 1]).copy()

    assert saved == 2 and done == [1, 2]
    assert (prepared.evaluated_tokens, prepared.loaded_tokens) == (0, sum(len(block.tokens) for block in blocks))
    np.testing.assert_allclose(spliced, evaluated, atol=1e-3)


def test_saving_ahead_stops_when_cancelled_and_keeps_what_it_saved(target: ModelSession) -> None:
    prefix = target.tokenize("the cat sat")
    blocks = [MemoryBlock(str(index), target.tokenize(f" block {index} of text")) for index in range(4)]
    cache, done = MemoryCache(), []

    saved = save_block_states(target, prefix, blocks, cache, on_block=done.append, should_cancel=lambda: len(done) >= 2)

    assert saved == 2 and sorted(key for key, _ in cache.states) == ["0", "1"]
    assert target.tokens == prefix


def test_blocks_moved_into_place_attend_like_block_attention(target: ModelSession) -> None:
    """Block b, saved right after the prefix, is moved behind block a: the result equals
    evaluating b on a cache where b's own positions follow a but b cannot see a."""
    prefix = target.tokenize("the cat sat")
    block_a = MemoryBlock("a", target.tokenize(" on a mat and then"))
    block_b = MemoryBlock("b", target.tokenize(" it ran to the door"))
    suffix = target.tokenize(" while a dog")
    cache = MemoryCache()
    target.truncate(0)

    prepared = prepare_memory(target, prefix, [block_a, block_b], suffix, cache)
    spliced = target.evaluate(suffix, [len(suffix) - 1]).copy()
    reordered = prepare_memory(target, prefix, [block_b, block_a], suffix, cache)
    swapped = target.evaluate(suffix, [len(suffix) - 1]).copy()

    assert prepared.evaluated_tokens == len(prefix) + len(block_a.tokens) + len(block_b.tokens)
    assert reordered.evaluated_tokens == 0 and reordered.loaded_tokens == len(block_a.tokens) + len(block_b.tokens)
    assert target.tokens == reordered.prompt_tokens[: len(target.tokens)]
    assert np.isfinite(spliced).all() and not np.allclose(spliced, swapped), "order still matters to the question"
