"""What a user's plugin learns from: their own writing, from files, from what they typed in chats
and from the documents they added, and the generic text it learns to leave alone.

Training itself (engine/plugin_training.py) and applying a plugin (engine/plugin_session.py) are
the engine's; a user's plugin directory is app/core/models.py's ``user_plugin_dir``.
"""

from __future__ import annotations

import contextlib
import hashlib
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from duetto.engine.memory_prompt import MemoryBlock
from duetto.engine.model_session import ModelSession
from duetto.engine.plugin import PluginError
from duetto.engine.plugin_files import (
    CHAT_READINGS_DIR,
    DOCUMENT_READINGS_DIR,
    forget_reading,
    load_reading,
    load_side_plugin,
    plugin_kind,
    save_reading,
    write_private_file,
)
from duetto.engine.plugin_session import PersonalisedSession
from duetto.engine.plugin_training import TargetReading, read_generic
from duetto.engine.progress import Progress
from duetto.store import documents as document_store
from duetto.store.conversations import get_conversation, get_user, list_messages, messages_written_since, user_by_id
from duetto.store.database import open_database
from duetto.store.documents import Chunk, Document
from duetto.store.locations import generic_readings_dir, user_dir


def read_user_text(path: Path) -> str:
    """The text of ``path``; one-line errors for a missing, binary or empty file."""
    try:
        data = path.expanduser().read_bytes()
    except FileNotFoundError:
        raise PluginError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise PluginError(f"{path} is a directory, not a text file") from None
    except OSError as error:
        raise PluginError(f"cannot read {path}: {error.strerror}") from None
    if b"\x00" in data:
        raise PluginError(f"{path} is binary, not text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PluginError(f"{path} is not UTF-8 text") from None
    if not text.strip():
        raise PluginError(f"{path} is empty")
    return text


@dataclass(frozen=True)
class TrainingText:
    text: str  # what is new and must be read, as one text ("" when there is none)
    readings: tuple[TargetReading, ...]  # what is new and the target read already: chat messages as
    # typed, document chunks as read for questions
    chunks: tuple[Chunk, ...]  # document chunks that are new and not read yet (read whole, as questions do)
    documents: tuple[Document, ...]  # the user's documents (the chunks are theirs)
    chunks_read_before: tuple[int, ...]  # ids of the new chunks whose readings were kept (``readings``)
    sources: dict  # for the report: the files read, chat messages read, and what was skipped
    learnt_from: tuple[str, ...]  # the plugin's ``learnt_from`` once it has learnt this text too

    @property
    def is_empty(self) -> bool:
        return not self.text.strip() and not self.readings and not self.chunks


FILE_SOURCE = "file:"  # + the SHA-256 of the file's text
CHATS_SOURCE = "chats-through:"  # + the id of the last chat message learnt from
DOCUMENTS_SOURCE = "documents"  # the plugin learns from its user's documents
CHUNK_SOURCE = "chunk:"  # + the SHA-256 of a document chunk's text learnt from


def training_text(
    user: str,
    text_paths: tuple[Path, ...],
    chats: bool,
    learnt_from: tuple[str, ...] = (),
    model: str = "",
    documents: bool = False,
) -> TrainingText:
    """The user's writing from the files, (with ``chats``) their chat messages and (with
    ``documents``) the chunks of the documents they added, that a plugin which has ``learnt_from``
    these sources has not read yet: as one text to read, and as the readings ``model`` kept of
    messages as they were typed (``chat_reading_keeper``) and of chunks as they were read for
    questions (``document_reading_keeper``); one-line errors when there is nothing to learn from."""
    if not text_paths and not chats and not documents:
        raise PluginError("nothing to learn from: give --text FILE (their writing), --chats and/or --docs")
    learnt = set(learnt_from)
    parts, read_files, skipped_files, new_sources = [], [], [], []
    for path in text_paths:
        text = read_user_text(path)
        source = FILE_SOURCE + text_digest(text)
        if source in learnt:
            skipped_files.append(str(path))
            continue
        parts.append(text)
        read_files.append(str(path))
        if source not in new_sources:
            new_sources.append(source)
    kept = [source for source in learnt_from if not source.startswith(CHATS_SOURCE)]
    chats_through = chats_learnt_through(learnt_from) or 0
    messages: list[str] = []
    readings: list[TargetReading] = []
    if chats:
        db = open_database()
        account = get_user(db, user)
        written = messages_written_since(db, account, chats_through)
        if not written and not chats_through and not text_paths:
            raise PluginError(f"{user} has typed nothing in any chat yet; give --text FILE instead")
        for number, text in written:
            reading = load_reading(user_dir(account.name), CHAT_READINGS_DIR, number, text_digest(text), model)
            if reading is not None and len(reading):
                readings.append(reading)
            elif text.strip():
                messages.append(text)
        chats_through = max([chats_through, *(number for number, _ in written)])
    if chats or chats_learnt_through(learnt_from) is not None:  # learns from chats, even before any
        kept.append(CHATS_SOURCE + str(chats_through))
    message_readings = len(readings)
    chunks: list[Chunk] = []
    chunks_read_before: list[int] = []
    owned: list[Document] = []
    document_names: list[str] = []
    if documents:
        db = open_database()
        owned = [document for document in document_store.list_documents(db, get_user(db, user)) if document.complete]
        if not owned and not text_paths and not chats:
            raise PluginError(f"{user} has added no documents yet; add some with `duetto docs add --user {user}`")
        names = {document.id: document.name for document in owned}
        for chunk in document_store.list_chunks(db, list(names)):
            digest = text_digest(chunk.text)
            if CHUNK_SOURCE + digest in learnt or CHUNK_SOURCE + digest in new_sources:
                continue
            reading = load_reading(user_dir(user), DOCUMENT_READINGS_DIR, chunk.id, digest, model)
            if reading is not None and len(reading):
                readings.append(reading)
                chunks_read_before.append(chunk.id)
            elif chunk.text.strip():
                chunks.append(chunk)
            new_sources.append(CHUNK_SOURCE + digest)
            if names[chunk.document_id] not in document_names:
                document_names.append(names[chunk.document_id])
    if (documents or DOCUMENTS_SOURCE in learnt) and DOCUMENTS_SOURCE not in kept:
        kept.append(DOCUMENTS_SOURCE)
    sources = {
        "files": read_files,
        "chat_messages": len(messages) + message_readings,
        "chat_messages_read_as_typed": message_readings,
        "documents": document_names,
        "document_chunks": len(chunks) + len(readings) - message_readings,
        "document_chunks_read_for_questions": len(readings) - message_readings,
        "files_already_learnt": skipped_files,
    }
    return TrainingText(
        "\n\n".join(parts + messages),
        tuple(readings),
        tuple(chunks),
        tuple(owned),
        tuple(chunks_read_before),
        sources,
        tuple(kept + new_sources),
    )


def chats_learnt_through(learnt_from: tuple[str, ...]) -> int | None:
    """The last chat message a plugin that has ``learnt_from`` these sources learnt from (0: none
    yet); None when it does not learn from chats."""
    numbers = [int(source[len(CHATS_SOURCE) :]) for source in learnt_from if source.startswith(CHATS_SOURCE)]
    return max(numbers) if numbers else None


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class ChatReadingKeeper:
    """Takes the target's reading of one chat message as the prompt is read (``receive``) and
    writes it when the turn is over (``save``), not before the reply's first token."""

    directory: Path
    message_id: int
    text_digest: str
    model: str
    reading: TargetReading | None = None

    def receive(self, reading: TargetReading) -> None:
        self.reading = reading

    def save(self) -> None:
        """Write the reading, if one came; one that cannot be written (a full disk) costs the next
        training the read of this message, nothing more."""
        if self.reading is not None:
            with contextlib.suppress(OSError):
                save_reading(
                    self.directory, CHAT_READINGS_DIR, self.message_id, self.text_digest, self.model, self.reading
                )


def chat_reading_keeper(target, user: str, message_id: int, text: str) -> ChatReadingKeeper | None:
    """Where the target's reading of ``user``'s chat message goes as it is read, so that their
    plugin never reads it again: set when the target carries ``user``'s side plugin and that plugin
    has learnt from their chats (``plugin train --chats``). Until then nobody asked to learn from
    chats, and a chat costs nothing extra; after it, keeping a message's reading costs its prompt
    reading the output projection on the message's tokens (docs/PLUGINS.md has the measurement).
    """
    if not isinstance(target, PersonalisedSession) or target.side_plugin is None or target.directory is None:
        return None
    through = chats_learnt_through(target.side_plugin.learnt_from)
    if target.directory != user_dir(user) or through is None or message_id <= through:
        return None  # not this user's plugin, not learning from chats, or learnt from this message
    return ChatReadingKeeper(target.directory, message_id, text_digest(text), target.path.name)


@dataclass
class DocumentReadingKeeper:
    """Keeps the target's reading of document chunks' whole text as the target reads them for
    questions (``docs prepare``, the first question that picks a chunk, or ``plugin train --docs``
    itself), for the owner's plugin to learn from without reading them again (engine/memory_prompt.py's
    BlockReadings). Each reading is written at once (a prepare runs long and may be stopped, a
    training may fail after reading) unless ``deferred``: a question's are written by ``save``
    once its reply is over, not before its first token."""

    model: str
    directory: Path  # the owner's
    wanted: dict[str, tuple[int, str]]  # block key -> (chunk id, text digest)
    deferred: bool = False
    received: dict[str, TargetReading] = field(default_factory=dict)  # block key -> reading

    @property
    def by_chunk(self) -> dict[int, TargetReading]:
        """What was received, by chunk id."""
        return {self.wanted[key][0]: reading for key, reading in self.received.items()}

    def wants(self, block: MemoryBlock) -> bool:
        return block.key in self.wanted

    def receive(self, block: MemoryBlock, reading: TargetReading) -> None:
        self.received[block.key] = reading
        if not self.deferred:
            self._write(block.key, reading)

    def save(self) -> None:
        """Write what was received and not written yet (a deferred keeper's readings)."""
        if self.deferred:
            for key, reading in self.received.items():
                self._write(key, reading)

    def _write(self, key: str, reading: TargetReading) -> None:
        """One that cannot be written (a full disk) costs the next training the read of this chunk."""
        chunk_id, digest = self.wanted[key]
        with contextlib.suppress(OSError):
            save_reading(self.directory, DOCUMENT_READINGS_DIR, chunk_id, digest, self.model, reading)


def document_reading_keeper(
    db, target, documents: list[Document], whole_chunks: dict[str, Chunk], *, deferred: bool = False
) -> DocumentReadingKeeper | None:
    """Who keeps the reading of which chunk, of those read whole under the block keys of
    ``whole_chunks``: set when the target carries the side plugin of the chunks' owner and that
    plugin learns from their documents (``plugin train --docs``), for the chunks it has not learnt.
    Until a plugin asks for documents, reading them costs nothing extra; after it, keeping a
    chunk's reading costs the output projection on its tokens (docs/PLUGINS.md has the measurement).
    The target's own plugin decides, not the file on disk: an engine loaded before the user's
    training (with a LoRA, say, whose readings would not be the plain target's) keeps nothing."""
    if not isinstance(target, PersonalisedSession) or target.side_plugin is None or target.directory is None:
        return None
    learnt = set(target.side_plugin.learnt_from)
    if DOCUMENTS_SOURCE not in learnt:
        return None
    owners = {document.id: document.user_id for document in documents}
    names: dict[int, str] = {}
    wanted: dict[str, tuple[int, str]] = {}
    for key, chunk in whole_chunks.items():
        owner = owners.get(chunk.document_id)
        if owner is not None and owner not in names:
            names[owner] = user_by_id(db, owner).name
        digest = text_digest(chunk.text)
        if owner is not None and user_dir(names[owner]) == target.directory and CHUNK_SOURCE + digest not in learnt:
            wanted[key] = (chunk.id, digest)
    return DocumentReadingKeeper(target.path.name, target.directory, wanted, deferred) if wanted else None


def chunks_learnt_by_plugin(db, user: str, documents: list[Document]) -> dict[int, int] | None:
    """How many of each document's chunks (by document id) the user's plugin has learnt from;
    None when the user has no plugin that learns from documents (``plugin train --docs``)."""
    directory = user_dir(user)
    try:
        learnt = set(load_side_plugin(directory).learnt_from) if plugin_kind(directory) == "side" else set()
    except PluginError:
        return None  # a damaged file: the commands that load it say so
    if DOCUMENTS_SOURCE not in learnt:
        return None
    counts = {document.id: 0 for document in documents}
    for chunk in document_store.list_chunks(db, list(counts)):
        counts[chunk.document_id] += CHUNK_SOURCE + text_digest(chunk.text) in learnt
    return counts


def forget_document_readings(db, document: Document) -> None:
    """Delete the readings kept of a document's chunks (the document is being removed: they hold
    its text's tokens)."""
    if document.user_id is not None:
        directory = user_dir(user_by_id(db, document.user_id).name)
        for chunk in document_store.list_chunks(db, [document.id]):
            forget_reading(directory, DOCUMENT_READINGS_DIR, chunk.id)


def forget_conversation_readings(db, conversation_id: int) -> None:
    """Delete the readings kept of a conversation's messages (it is being removed)."""
    conversation = get_conversation(db, conversation_id)
    directory = user_dir(user_by_id(db, conversation.user_id).name)
    for message in list_messages(db, conversation_id):
        forget_reading(directory, CHAT_READINGS_DIR, message.id)


GENERIC_TEXTS = ("prose.txt", "everyday.txt", "code.txt")
"""Text that is nobody's own, shipped with duetto (generic_text/SOURCES.md): public-domain prose,
everyday writing in many registers, and everyday code. Training keeps the target's distribution
there as it was and fits the plugin's gate to tell the user's text from it, so the plugin stays
out of the way of everything else."""


def generic_texts() -> list[str]:
    folder = resources.files("duetto.app.core") / "generic_text"
    return [(folder / name).read_text(encoding="utf-8") for name in GENERIC_TEXTS]


GENERIC_READING_FORMAT = 1


def generic_readings(session: ModelSession, window: int, progress: Progress | None = None) -> list[TargetReading]:
    """The target's readings of duetto's generic text: read once per model and machine, then kept
    in ``$DUETTO_HOME/generic-readings/`` (a few tens of MB; they hold nothing of any user's).

    A damaged or unreadable cache file is read again; a cache that cannot be written (a full
    disk) costs the next training the reading, nothing more.
    """
    texts = generic_texts()
    digest = hashlib.sha256("\0".join([str(GENERIC_READING_FORMAT), str(window), *texts]).encode("utf-8")).hexdigest()
    path = generic_readings_dir() / f"{session.path.name}-{digest[:16]}.npz"
    try:
        with np.load(path, allow_pickle=False) as stored:
            readings = [TargetReading.from_arrays(stored, f"{index}.") for index in range(len(texts))]
        if all(reading.hidden.shape == (len(reading), session.hidden_size) for reading in readings):
            return readings
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        pass
    readings = [
        read_generic(
            session, session.tokenize(text), window=window, progress=progress,
            label=f"reading duetto's generic text, {number} of {len(texts)} (once for this model)",
        )
        for number, text in enumerate(texts, start=1)
    ]  # fmt: skip
    arrays = {
        name: array for index, reading in enumerate(readings) for name, array in reading.to_arrays(f"{index}.").items()
    }
    with contextlib.suppress(OSError):
        write_private_file(path, lambda stream: np.savez(stream, **arrays))
    return readings
