"""Remote targets as front-ends use them: registered once (``duetto models add-remote``), checked
against the local small model, and built into an engine like a local pair.

The local small model is required: it renders the chat template and counts tokens with the same
vocabulary the server's model has (``check_remote`` compares them through llama-server's
``/tokenize``), reads documents and folds old turns. A user's plugin never leaves the machine,
so it does not apply to a remote target; the engine says so in ``notes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from duetto.app.core.fingerprints import model_fingerprint
from duetto.app.core.models import READER_CONTEXT_LENGTH, Engine, user_plugin_dir
from duetto.engine.document_reader import DocumentReader
from duetto.engine.errors import EngineError
from duetto.engine.model_session import ModelSession
from duetto.engine.plugin_files import plugin_kind
from duetto.engine.remote_target import (
    LLAMA_SERVER,
    RemoteDecoder,
    RemoteEndpoint,
    RemoteError,
    RemoteTarget,
    ServerOffer,
    probe,
    server_tokens,
)
from duetto.store.database import open_database
from duetto.store.remote_targets import RemoteTargetRecord, find_remote_target

SAMPLE_CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Écris une fonction `add(a, b)` en Python — with a docstring, s'il te plaît. 😀"},
]
"""What the tokenizer check renders and compares: the template's special tokens, code, accents,
an emoji: where two vocabularies that differ would split differently."""


def endpoint_of(record: RemoteTargetRecord) -> RemoteEndpoint:
    return RemoteEndpoint(record.name, record.url, record.model, record.api_key_env)


def remote_endpoint(name: str | None, database_path: Path | None = None) -> RemoteEndpoint | None:
    """The remote target registered as ``name``; None for any other name (a local model, a path)."""
    if not name or name.endswith(".gguf"):
        return None
    record = find_remote_target(open_database(database_path), name)
    return endpoint_of(record) if record is not None else None


@dataclass
class RemoteCheck:
    """What ``check_remote`` found: the server's offer and whether its tokenizer is the local one's."""

    endpoint: RemoteEndpoint
    offer: ServerOffer
    same_tokens: bool | None
    """None where the server cannot tokenize for us (not llama-server): the check is the user's."""
    same_template: bool | None
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"name": self.endpoint.name, "url": self.endpoint.url, "model": self.endpoint.model,
                **self.offer.as_dict(), "same_tokens": self.same_tokens, "same_template": self.same_template,
                "problems": self.problems}  # fmt: skip


def check_remote(endpoint: RemoteEndpoint, local: ModelSession | None) -> RemoteCheck:
    """Reach the server, and compare how it tokenizes a templated prompt with the local small model."""
    offer = probe(endpoint)
    check = RemoteCheck(endpoint, offer, None, None)
    if local is None or offer.dialect != LLAMA_SERVER:
        return check
    prompt = local.chat_prompt_tokens(SAMPLE_CONVERSATION)
    text = local.llm.detokenize(prompt, special=True).decode("utf-8", errors="replace")
    theirs = server_tokens(endpoint, text)
    if theirs is not None:
        ours = local.tokenize(text, special=True)
        check.same_tokens = theirs == ours
        if not check.same_tokens:
            check.problems.append(
                f"the server's model splits text differently from {local.path.name} (a different vocabulary): "
                "its replies would be garbled; serve a model of the same family"
            )
    local_template = local.llm.metadata.get("tokenizer.chat_template")
    if offer.chat_template and local_template:
        check.same_template = offer.chat_template.strip() == local_template.strip()
    return check


def build_remote_engine(
    endpoint: RemoteEndpoint,
    draft_path: Path | None,
    *,
    threads: int | None = None,
    user: str | None = None,
    database_path: Path | None = None,
) -> Engine:
    """An engine whose target is ``endpoint``: the local small model renders and reads, the server
    writes. Refuses a server whose tokenizer differs from the small model's."""
    if draft_path is None:
        raise EngineError(
            f"the remote target {endpoint.name} needs a local small model to write its prompts: "
            "use a profile with a draft model, or --draft-model"
        )
    local = ModelSession(draft_path, context_length=READER_CONTEXT_LENGTH, threads=threads)
    try:
        check = check_remote(endpoint, local)
        if check.problems:
            raise RemoteError(f"{endpoint.name}: {check.problems[0]}")
    except EngineError:
        local.close()
        raise
    # The small model reads documents with the very session that renders the prompts: nothing
    # else uses its KV cache (the server keeps its own), so a second copy would only cost memory.
    engine = Engine(
        RemoteDecoder(RemoteTarget(endpoint, local, check.offer)),
        lambda: (DocumentReader(local), model_fingerprint(draft_path)),
    )
    engine.where = f"{endpoint.name} at {endpoint.url}"
    if user is not None and plugin_kind(user_plugin_dir(user, database_path)) is not None:
        engine.notes.append(
            f"{user}'s plugin stays on this machine and does not apply to the remote target {endpoint.name}"
        )
    return engine
