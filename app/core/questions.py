"""Questions over stored documents: rank the chunks, build the prompt from memory, answer with citations.

Chunks are ranked by embedding similarity and BM25 together; the best two chunks go in whole
and the next ones compressed, each from its saved KV state when the large model has read it
before (engine/memory_prompt.py), so a question reads a fraction of the document's tokens.
``prepare_documents`` has the large model read every chunk ahead of the questions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from duetto.app.core.fingerprints import target_fingerprint
from duetto.app.core.plugins import DocumentReadingKeeper, document_reading_keeper, text_digest
from duetto.engine.decoder import Decoder, DecodeSettings
from duetto.engine.document_reader import DocumentReader
from duetto.engine.errors import EngineError
from duetto.engine.memory_prompt import (
    BlockReadings,
    MemoryBlock,
    PreparedMemory,
    prefix_digest,
    prepare_memory,
    save_block_states,
)
from duetto.engine.model_session import ChatMessage, ModelSession
from duetto.engine.plugin_training import TargetReading
from duetto.engine.remote_target import RemoteTarget
from duetto.engine.reply_stream import TextPiece, Written
from duetto.engine.stats import ReplyStats
from duetto.store import documents as document_store
from duetto.store.documents import Chunk, Document
from duetto.store.errors import StoreError

MEMORY_BUDGET_TOKENS = 480
"""Tokens of excerpts a question gets: the best chunks whole, then compressed ones."""
FULL_TEXT_CHUNKS = 2
PREPARE_CONTEXT_LENGTH = 2048
"""Room for the answer prompt's prefix and one chunk: all preparing ever holds."""
MAX_BLOCKS = 4
BLOCK_LABEL_TOKENS = 16
"""What a block's label (``[notes#3]`` and its line) may add to the chunk's own tokens: a small
context (a remote server's, say) gets fewer excerpts instead of a prompt it refuses."""
FUSION_RANK_OFFSET = 3
KEYWORD_WEIGHT = 2.0
"""Rank fusion weights, chosen on the bench-docs questions of the shorter document (bench-docs
prints per-question citations to check): BM25 puts the answer's chunk first far more often
than the small model's pooled embeddings, which still rescue questions that share no words
with the answer. The usual RRF offset of 60 flattened the ranks until the answer's chunk fell
out of the excerpts."""

ANSWER_SYSTEM_PROMPT = (
    "You answer questions about the user's documents. Use only the excerpts given, "
    "answer in a few words, and say so when the excerpts do not contain the answer."
)
BLOCKS_MARKER = "\x00duetto-excerpts\x00"


@dataclass(frozen=True)
class Citation:
    document: str
    position: int
    chunk_id: int
    variant: str
    file_path: str | None = None
    """The file of a document read from a folder."""

    @property
    def label(self) -> str:
        """``notes#3``; a folder's chunk names its file: ``repo/src/app.py#12``."""
        where = f"{self.document}/{self.file_path}" if self.file_path else self.document
        return f"{where}#{self.position}"


@dataclass
class DocumentAnswer:
    text: str
    stats: dict[str, Any]
    """The reply's stats with the document numbers added (what ``--json`` prints)."""
    reply_stats: ReplyStats
    citations: list[Citation] = field(default_factory=list)
    pieces: list[TextPiece] = field(default_factory=list)
    """The reply's text by source, for the draft-colour view."""


class _StoredStates:
    """The store's chunk_states table as the engine's StateCache."""

    def __init__(self, db: sqlite_utils.Database, model_id: str) -> None:
        self.db = db
        self.model_id = model_id

    def load(self, block: MemoryBlock, prefix_sha256: str) -> bytes | None:
        chunk_id, variant = _chunk_of(block)
        return document_store.get_chunk_state(self.db, chunk_id, self.model_id, variant, prefix_sha256)

    def save(self, block: MemoryBlock, prefix_sha256: str, state: bytes) -> None:
        chunk_id, variant = _chunk_of(block)
        document_store.put_chunk_state(
            self.db, chunk_id, self.model_id, variant, prefix_sha256, len(block.tokens), state
        )


def _block_key(chunk: Chunk, variant: str) -> str:
    return f"{chunk.id}:{variant}"


def _chunk_of(block: MemoryBlock) -> tuple[int, str]:
    """(chunk id, variant) of a block made by ``_memory_block``."""
    chunk_id, variant = block.key.split(":")
    return int(chunk_id), variant


def rank_chunks(
    db: sqlite_utils.Database, reader: DocumentReader, model_id: str, documents: Sequence[Document], question: str
) -> list[Chunk]:
    """Chunks best first: reciprocal rank fusion of embedding similarity and BM25. The chunks'
    embeddings must come from ``reader``'s model (``model_id``): another model's do not compare.

    Embeddings are centred on the documents' mean chunk embedding first: mean-pooled hidden
    states of a language model share one large common direction that otherwise swamps cosine.
    """
    chunks = document_store.list_chunks(db, [document.id for document in documents])
    if not chunks:
        return []
    if any(chunk.model_sha256 != chunks[0].model_sha256 for chunk in chunks):
        raise StoreError("these documents were read by different models; ask about them one at a time")
    if chunks[0].model_sha256 != model_id:
        raise StoreError("these documents were read by a different small model; re-add them with this one")
    matrix = np.stack([chunk.embedding for chunk in chunks])
    centre = matrix.mean(axis=0)
    centred = matrix - centre
    question_vector = reader.embed(question) - centre
    similarity = (
        centred @ question_vector / (np.linalg.norm(centred, axis=1) * (np.linalg.norm(question_vector) or 1.0) + 1e-9)
    )
    score = {chunk.id: 0.0 for chunk in chunks}
    for rank, index in enumerate(np.argsort(-similarity)):
        score[chunks[index].id] += 1.0 / (FUSION_RANK_OFFSET + rank)
    for rank, chunk_id in enumerate(document_store.keyword_ranks(db, [d.id for d in documents], question)):
        score[chunk_id] += KEYWORD_WEIGHT / (FUSION_RANK_OFFSET + rank)
    return sorted(chunks, key=lambda chunk: -score[chunk.id])


def choose_blocks(
    ranked: Sequence[Chunk], read_before: set[int] = frozenset(), budget: int = MEMORY_BUDGET_TOKENS
) -> list[tuple[Chunk, str]]:
    """The best chunks whole, then the next ones compressed, while they fit the budget.

    A chunk whose whole text the large model has read before (``read_before``) goes in whole
    when it fits: loading its saved state costs nothing and loses nothing. A remote target
    counts every chunk so: the server reads at its own speed, and the budget bounds what crosses
    the wire. The same choice then reaches a remote target as a prepared local one, and answers
    as well.
    """
    chosen: list[tuple[Chunk, str]] = []
    used = 0
    for chunk in ranked:
        variant = "full" if len(chosen) < FULL_TEXT_CHUNKS else "compressed"
        if variant == "compressed" and chunk.id in read_before and used + chunk.tokens <= budget:
            variant = "full"
        size = chunk.tokens if variant == "full" else chunk.compressed_tokens
        if chosen and used + size > budget:
            continue
        chosen.append((chunk, variant))
        used += size
        if len(chosen) >= MAX_BLOCKS or used >= budget:
            break
    return sorted(chosen, key=lambda item: (item[0].document_id, item[0].position))


def _timed_from(started: float, reply_stats: ReplyStats) -> dict[str, float]:
    """``seconds`` and ``ttft_seconds`` from the question's start (ranking and reading included),
    not from the reply's: both on the same clock, so the first token never comes after the end."""
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 4),
        "ttft_seconds": round(seconds - reply_stats.seconds + reply_stats.ttft_seconds, 4),
    }


def answer_from_documents(
    db: sqlite_utils.Database,
    decoder: Decoder,
    reader: DocumentReader,
    model_id: str,
    documents: Sequence[Document],
    question: str,
    settings: DecodeSettings,
    on_delta: Callable[[str], None] | None = None,
    full_context: bool = False,
    reuse_full_context: bool = False,
    should_cancel: Callable[[], bool] | None = None,
    on_written: Callable[[Written], None] | None = None,
) -> DocumentAnswer:
    """Answer ``question`` from stored memory (or, with ``full_context``, from the whole text).

    A full-context answer reads the document from scratch, as a new process would, unless
    ``reuse_full_context`` lets it keep what the target already holds of the same prompt.
    """
    started = time.perf_counter()
    names = {document.id: document.name for document in documents}
    document_tokens = sum(document.tokens for document in documents)
    target = decoder.target
    if full_context:
        chunks = document_store.list_chunks(db, list(names))
        text = "\n\n".join(chunk.text for chunk in chunks)
        messages: list[ChatMessage] = [
            {"role": "system", "content": ANSWER_SYSTEM_PROMPT},
            {"role": "user", "content": f"Document:\n{text}\n\nQuestion: {question}"},
        ]
        prompt = target.chat_prompt_tokens(messages)
        target.truncate(target.common_prefix_length(prompt) if reuse_full_context else 0)
        already_read = len(target.tokens)
        reply = decoder.reply(prompt, settings, on_delta, should_cancel, on_written)
        reply_text, reply_stats = reply.text, reply.stats
        stats = reply_stats.as_dict()
        stats.update(
            **_timed_from(started, reply_stats),
            prompt_tokens=len(prompt) - already_read,
            document_tokens=document_tokens,
            context_tokens=len(prompt),
            memory="full-context",
        )
        return DocumentAnswer(reply_text, stats, reply_stats, pieces=reply.pieces)

    ranked = rank_chunks(db, reader, model_id, documents, question)
    prefix, suffix = _answer_prompt_around_blocks(target, question)
    remote = isinstance(target, RemoteTarget)
    target_id = None if remote else target_fingerprint(target)
    if remote:  # the server reads what it is sent at its own speed: whole wherever the budget allows
        read_before = {chunk.id for chunk in ranked}
    else:
        read_before = document_store.chunks_with_state(db, list(names), target_id, "full", prefix_digest(prefix))
    room = target.context_length - len(prefix) - len(suffix) - settings.max_tokens - BLOCK_LABEL_TOKENS * MAX_BLOCKS
    if room < 1:
        raise EngineError(
            f"a {target.context_length}-token context leaves no room for excerpts after the question and a "
            f"{settings.max_tokens}-token answer; raise --context or lower --max-tokens"
        )
    chosen = choose_blocks(ranked, read_before, min(MEMORY_BUDGET_TOKENS, room))
    blocks = [_memory_block(target, names[chunk.document_id], chunk, variant) for chunk, variant in chosen]
    readings = None
    if remote:  # only the compact context crosses the wire; the server's prompt cache keeps the prefix
        prompt = [*prefix, *(token for block in blocks for token in block.tokens), *suffix]
        prepared = PreparedMemory(prompt, len(prompt) - len(suffix), 0, 0.0)
    else:
        readings = _reading_keeper(db, target, documents, blocks, [chunk for chunk, _ in chosen], deferred=True)
        prepared = prepare_memory(target, prefix, blocks, suffix, _StoredStates(db, target_id), readings)
    reply = decoder.reply(prepared.prompt_tokens, settings, on_delta, should_cancel, on_written)
    if readings is not None:
        readings.save()  # once the reply is over, not before its first token
    reply_text, reply_stats = reply.text, reply.stats
    stats = reply_stats.as_dict()
    context_tokens = sum(len(block.tokens) for block in blocks)
    stats.update(
        **_timed_from(started, reply_stats),
        prompt_tokens=prepared.evaluated_tokens + len(suffix),
        document_tokens=document_tokens,
        context_tokens=context_tokens,
        loaded_tokens=prepared.loaded_tokens,
        memory="chunks",
    )
    if remote:
        stats["sent_tokens"] = len(prepared.prompt_tokens)
    citations = [
        Citation(names[chunk.document_id], chunk.position, chunk.id, variant, chunk.file_path)
        for chunk, variant in chosen
    ]
    stats["citations"] = [{"label": citation.label, "chunk_id": citation.chunk_id} for citation in citations]
    return DocumentAnswer(reply_text, stats, reply_stats, citations, reply.pieces)


def _answer_prompt_around_blocks(target: ModelSession, question: str) -> tuple[list[int], list[int]]:
    """(prefix, suffix) of a question's prompt; the prefix, before the excerpts, is the same for
    every question, which is what lets a chunk's saved state serve them all."""
    messages: list[ChatMessage] = [
        {"role": "system", "content": ANSWER_SYSTEM_PROMPT},
        {"role": "user", "content": f"Excerpts:\n{BLOCKS_MARKER}Question: {question}"},
    ]
    return target.chat_prompt_around(messages, BLOCKS_MARKER)


def _memory_block(target: ModelSession, document_name: str, chunk: Chunk, variant: str) -> MemoryBlock:
    text = chunk.text if variant == "full" else chunk.compressed_text
    label = f"[{document_name}#{chunk.position}]"
    tokens = target.tokenize(f"{label} {text}\n\n")
    label_tokens = target.tokenize(label)
    # the text begins after the label's tokens; where the label's last token merged into the text,
    # nowhere (no reading of it is taken)
    text_start = len(label_tokens) if tokens[: len(label_tokens)] == label_tokens else len(tokens)
    return MemoryBlock(key=_block_key(chunk, variant), tokens=tokens, text_start=text_start)


def _reading_keeper(
    db: sqlite_utils.Database, target: ModelSession, documents: Sequence[Document], blocks: Sequence[MemoryBlock],
    chunks: Sequence[Chunk], *, deferred: bool = False,
) -> DocumentReadingKeeper | None:  # fmt: skip
    """Who keeps the target's reading of the whole chunks among ``blocks`` (``chunks`` are theirs)
    as they are read: their owner's plugin, when it learns from documents (app/core/plugins.py)."""
    by_id = {chunk.id: chunk for chunk in chunks}
    parts = [(block.key, *_chunk_of(block)) for block in blocks]
    whole = {key: by_id[chunk_id] for key, chunk_id, variant in parts if variant == "full"}
    return document_reading_keeper(db, target, list(documents), whole, deferred=deferred)


@dataclass(frozen=True)
class PrepareResult:
    names: list[str]
    chunks: int
    prepared_chunks: int
    """Chunks read now; the others had their state already."""
    evaluated_tokens: int
    seconds: float
    state_bytes: int

    def as_json(self) -> dict[str, Any]:
        return {
            "names": self.names,
            "chunks": self.chunks,
            "prepared_chunks": self.prepared_chunks,
            "evaluated_tokens": self.evaluated_tokens,
            "seconds": round(self.seconds, 3),
            "state_bytes": self.state_bytes,
        }


def prepare_documents(
    db: sqlite_utils.Database,
    target: ModelSession,
    documents: Sequence[Document],
    on_progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    *,
    variants: tuple[str, ...] = ("full", "compressed"),
    only_chunks: set[int] | None = None,
    readings: BlockReadings | None = None,
) -> PrepareResult:
    """Have the large model read every chunk once now, whole and compressed, and keep the KV
    states, so that no later question reads document text: it loads the chunks it picks.

    Without this, states are saved lazily, the first time a question picks a chunk, and a
    question that picks chunks no earlier one did still reads them. Interrupted or cancelled,
    it keeps the states made so far; run again, it reads only the rest. ``variants`` and
    ``only_chunks`` narrow what is read; ``readings`` takes the reading of the blocks it wants
    (by default the owner's plugin, when it learns from documents).
    """
    started = time.perf_counter()
    names = {document.id: document.name for document in documents}
    chunks = document_store.list_chunks(db, list(names))
    prefix, _ = _answer_prompt_around_blocks(target, "")
    target_id = target_fingerprint(target)
    digest = prefix_digest(prefix)
    blocks: list[MemoryBlock] = []
    prepared_chunks: set[int] = set()
    for variant in variants:
        ready = document_store.chunks_with_state(db, list(names), target_id, variant, digest)
        for chunk in chunks:
            if chunk.id not in ready and (only_chunks is None or chunk.id in only_chunks):
                blocks.append(_memory_block(target, names[chunk.document_id], chunk, variant))
                prepared_chunks.add(chunk.id)
    if on_progress:
        on_progress(0, len(blocks))
    saved = save_block_states(
        target,
        prefix,
        blocks,
        _StoredStates(db, target_id),
        on_block=(lambda done: on_progress(done, len(blocks))) if on_progress else None,
        should_cancel=should_cancel,
        readings=readings if readings is not None else _reading_keeper(db, target, documents, blocks, chunks),
    )
    if saved < len(blocks):
        raise InterruptedError("preparing was cancelled; run it again to continue")
    return PrepareResult(
        names=list(names.values()),
        chunks=len(chunks),
        prepared_chunks=len(prepared_chunks),
        evaluated_tokens=sum(len(block.tokens) for block in blocks),
        seconds=time.perf_counter() - started,
        state_bytes=sum(document_store.chunk_state_bytes(db, document.id) for document in documents),
    )


def read_chunks_whole(
    db: sqlite_utils.Database,
    target: ModelSession,
    documents: Sequence[Document],
    chunks: Sequence[Chunk],
    directory: Path,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[int, TargetReading]:
    """Have the target read these chunks' whole text as a question reads it, saving their states,
    and hand back its reading of each (chunk id -> reading), kept in ``directory`` (their owner's)
    as it comes: what a plugin learning from its user's documents trains on, so the target reads a
    document once, for both, and a training that fails afterwards reads none of it again. A chunk
    whose state a question or ``docs prepare`` saved before is not read here: it is absent from
    the result. ``target`` must be the plain target."""
    wanted = {_block_key(chunk, "full"): (chunk.id, text_digest(chunk.text)) for chunk in chunks}
    keeper = DocumentReadingKeeper(target.path.name, directory, wanted)
    prepare_documents(
        db, target, documents, on_progress, variants=("full",), only_chunks={chunk.id for chunk in chunks},
        readings=keeper,
    )  # fmt: skip
    return keeper.by_chunk
