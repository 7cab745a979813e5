"""``duetto plugin``: train, measure, import and remove a user's plugin weights.

The plugin personalises the target model (the one that decides every token); it is trained from
a text file of the user's own writing and stays in their private directory (docs/PLUGINS.md).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import click
import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from duetto.app.cli.console import human_bytes, print_json, stderr_console
from duetto.app.cli.loading import local_only, model_paths
from duetto.app.core.models import user_plugin_dir
from duetto.app.core.plugins import (
    DOCUMENTS_SOURCE,
    TrainingText,
    chats_learnt_through,
    generic_readings,
    read_user_text,
    training_text,
)
from duetto.app.core.questions import PREPARE_CONTEXT_LENGTH, read_chunks_whole
from duetto.app.core.wording import plural
from duetto.engine.errors import InvalidModelFile
from duetto.engine.gguf_file import open_gguf
from duetto.engine.model_session import ModelSession
from duetto.engine.plugin import PluginError, SidePlugin
from duetto.engine.plugin_files import (
    CHAT_READINGS_DIR,
    DOCUMENT_READINGS_DIR,
    LORA_FILE,
    forget_reading,
    forget_readings,
    import_lora,
    load_side_plugin,
    plugin_kind,
    plugin_size,
    remove_plugin,
    save_side_plugin,
)
from duetto.engine.plugin_session import PersonalisedSession
from duetto.engine.plugin_training import (
    MIN_TRAINING_TOKENS,
    NotEnoughText,
    TargetReading,
    TrainingSettings,
    collect_features,
    log_likelihoods,
    measure,
    perplexity,
    train_side_plugin,
)
from duetto.store.database import open_database

DEFAULT_SETTINGS = TrainingSettings()


class TaskProgress:
    """The engine's Progress protocol as one rich bar per task on stderr (units, not bytes)."""

    def __init__(self, enabled: bool = True) -> None:
        self._bars = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=stderr_console,
            transient=True,
            disable=not enabled,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> TaskProgress:
        self._bars.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._bars.stop()

    def begin(self, label: str, total: int, completed: int = 0) -> None:
        self._task = self._bars.add_task(label, total=total, completed=completed)

    def advance(self, amount: int) -> None:
        if self._task is not None:
            self._bars.advance(self._task, amount)

    def end(self) -> None:
        if self._task is not None:
            self._bars.remove_task(self._task)
        self._task = None

    def say(self, message: str) -> None:
        self._bars.console.print(message)


def _target_session(profile: str | None, target: str | None, threads: int | None, window: int) -> ModelSession:
    target_path = local_only(model_paths(profile, target, None, use_draft=False)[0], "a plugin (it stays here)")
    with stderr_console.status(f"loading {target_path.name}"):
        return ModelSession(target_path, context_length=window, threads=threads)


def _model_options(command):
    for option in reversed(
        [
            click.option("--profile", default=None, help="Model profile whose target the plugin is for."),
            click.option("--target", default=None, metavar="MODEL|PATH", help="Target model instead of the profile's."),
            click.option("--threads", type=click.IntRange(1, 256), default=None, help="CPU threads for llama.cpp."),
        ]
    ):
        command = option(command)
    return command


@click.group()
def plugin() -> None:
    """A user's own plugin weights for the target model: train, eval, import, rm."""


@plugin.command("train")
@click.option("--user", "user", required=True, help="Whose plugin to train (see `duetto users list`).")
@click.option(
    "--text",
    "text_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    help="UTF-8 text they wrote (repeatable).",
)
@click.option("--chats", is_flag=True, help="Also learn from every message the user typed in their chats.")
@click.option(
    "--docs", "documents", is_flag=True, help="Also learn from the documents the user added (`duetto docs list`)."
)
@_model_options
@click.option("--rank", type=click.IntRange(1, 256), default=DEFAULT_SETTINGS.rank, show_default=True)
@click.option(
    "--vocabulary",
    "max_vocabulary",
    type=click.IntRange(16, 65536),
    default=DEFAULT_SETTINGS.max_vocabulary,
    show_default=True,
    help="At most this many of the text's most frequent tokens get a correction.",
)
@click.option(
    "--epochs",
    "max_epochs",
    type=click.IntRange(1, 1000),
    default=DEFAULT_SETTINGS.max_epochs,
    show_default=True,
    help="At most this many passes (training stops earlier on the held-out tail).",
)
@click.option(
    "--fresh",
    is_flag=True,
    help="Start over on exactly the given text, instead of going on from the user's plugin with what is new.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the training report as JSON on stdout.")
def train(
    user: str,
    text_paths: tuple[Path, ...],
    chats: bool,
    documents: bool,
    profile: str | None,
    target: str | None,
    threads: int | None,
    rank: int,
    max_vocabulary: int,
    max_epochs: int,
    fresh: bool,
    as_json: bool,
) -> None:
    """Train USER's side plugin on their own writing: text files (--text), what they typed in
    their chats (--chats) and the documents they added (--docs).

    When USER already has a plugin for this model, training goes on from it and reads only what
    it has not learnt from yet: files whose text is new, chat messages typed since, document
    chunks added since. Once it has learnt from chats, each message USER types is read once, as
    the chat reads it, and kept for the next training; once it has learnt from documents, so is
    each chunk the large model reads for questions (`duetto docs prepare`). --fresh starts over.
    The last tenth of the text is held out to stop training before it overfits. Generic text
    that duetto ships teaches the plugin's gate what is not the user's (docs/PLUGINS.md).
    Replaces an imported LoRA adapter.
    """
    directory = user_plugin_dir(user)
    settings = TrainingSettings(rank=rank, max_vocabulary=max_vocabulary, max_epochs=max_epochs)
    # documents are read whole, as a question reads them, behind its prompt's head
    session = _target_session(profile, target, threads, PREPARE_CONTEXT_LENGTH if documents else settings.window)
    try:
        start = None if fresh else _plugin_to_go_on_from(directory, session)
        new = training_text(
            user, text_paths, chats, start.learnt_from if start is not None else (), session.path.name, documents
        )  # fmt: skip
        if start is not None and new.is_empty:
            _say_up_to_date(user, new.sources, as_json)
            return
        tokens = session.tokenize(new.text) if new.text.strip() else []
        new_tokens = len(tokens) + sum(len(reading) for reading in new.readings) + sum(c.tokens for c in new.chunks)
        if start is not None and new_tokens < MIN_TRAINING_TOKENS:
            raise NotEnoughText(
                f"only {new_tokens} tokens are new to {user}'s plugin; it goes on from {MIN_TRAINING_TOKENS} "
                "new tokens (or trains again on everything given with --fresh)"
            )
        with TaskProgress() as progress:
            started = time.perf_counter()
            read_now = _read_new_chunks(session, new, directory, progress)
            document_seconds = time.perf_counter() - started
            # a chunk a question read before has its state saved, not its reading: read it as text
            unread = [chunk.text for chunk in new.chunks if chunk.id not in read_now]
            if unread:
                tokens = session.tokenize("\n\n".join([new.text, *unread] if new.text.strip() else unread))
            started = time.perf_counter()
            generic = generic_readings(session, settings.window, progress)
            generic_seconds = time.perf_counter() - started
            side_plugin, report = train_side_plugin(
                session, tokens, settings, progress, generic=generic, start=start,
                readings=(*new.readings, *read_now.values()),
            )  # fmt: skip
    finally:
        session.close()
    path = save_side_plugin(directory, dataclasses.replace(side_plugin, learnt_from=new.learnt_from))
    # Readings of what it has learnt from go; all of them when it does not learn from chats.
    forget_readings(directory, CHAT_READINGS_DIR, chats_learnt_through(new.learnt_from))
    if DOCUMENTS_SOURCE not in new.learnt_from:  # nothing learns from documents any longer
        forget_readings(directory, DOCUMENT_READINGS_DIR)
    for chunk_id in (*new.chunks_read_before, *read_now):  # learnt from now
        forget_reading(directory, DOCUMENT_READINGS_DIR, chunk_id)
    result = {
        "user": user, "path": str(path), "bytes": path.stat().st_size,
        "sources": {**new.sources, "document_chunks_read_now_for_questions_too": len(read_now)},
        "continued": start is not None, "generic_reading_seconds": round(generic_seconds, 2),
        "document_reading_seconds": round(document_seconds, 2), **report.__dict__,
    }  # fmt: skip
    if as_json:
        print_json(result)
        return
    change = report.held_out_perplexity_plugin / report.held_out_perplexity_base - 1
    generic_change = report.generic_held_out_perplexity_plugin / report.generic_held_out_perplexity_base - 1
    seconds = report.feature_seconds + report.generic_feature_seconds + report.training_seconds + document_seconds
    if generic_seconds >= 1:
        stderr_console.print(f"read duetto's generic text in {generic_seconds:.0f} s (once for this model)")
    if new.sources["chat_messages_read_as_typed"]:
        stderr_console.print(
            f"{new.sources['chat_messages_read_as_typed']} of the {new.sources['chat_messages']} chat messages "
            "were read as they were typed; not read again"
        )
    if new.sources["document_chunks_read_for_questions"]:
        stderr_console.print(
            f"{new.sources['document_chunks_read_for_questions']} of the {new.sources['document_chunks']} document "
            "chunks were read for questions already; not read again"
        )
    if read_now:
        stderr_console.print(
            f"read {plural(len(read_now), 'document chunk')} whole, as questions read them: their states are kept, "
            "so questions on them will not read them again"
        )
    stderr_console.print(
        f"trained {user}'s plugin on {report.tokens} tokens in {seconds:.0f} s "
        f"({report.epochs} epochs); held-out perplexity {report.held_out_perplexity_base:.2f} -> "
        f"{report.held_out_perplexity_plugin:.2f} ({change:+.1%}), on generic text {generic_change:+.1%}; "
        f"{human_bytes(result['bytes'])} in {path}"
    )
    if change > 0:
        stderr_console.print(
            "[yellow]note:[/yellow] on the held-out tail the plugin does worse than the model alone: it has not "
            "learnt this text's ways yet (more of the user's writing helps; --fresh starts over on what is given)"
        )


def _read_new_chunks(
    session: ModelSession, new: TrainingText, directory: Path, progress: TaskProgress
) -> dict[int, TargetReading]:
    """The target's readings of the new document chunks (chunk id -> reading), taken as it reads
    them whole for questions, their states saved and the readings kept in ``directory`` until the
    plugin has learnt them (``read_chunks_whole``); a chunk a question read before this plugin
    learnt from documents is not among them."""
    if not new.chunks:
        return {}
    shown = [0]

    def show(done: int, total: int) -> None:
        if not done:
            progress.begin(f"reading {plural(total, 'new document chunk')}", total)
        progress.advance(done - shown[0])
        shown[0] = done

    try:
        return read_chunks_whole(open_database(), session, new.documents, new.chunks, directory, show)
    finally:
        progress.end()


def _plugin_to_go_on_from(directory: Path, session: ModelSession) -> SidePlugin | None:
    """The user's side plugin when training can go on from it: made for this target model, and
    gated (a plugin from before the gate is trained again from the start)."""
    if plugin_kind(directory) != "side":
        return None
    try:
        existing = load_side_plugin(directory)
        existing.check_target(session.path.name, session.vocabulary_size, session.hidden_size)
    except PluginError as error:
        stderr_console.print(f"[yellow]note:[/yellow] training from the start: {error}")
        return None
    return existing if existing.gate_weight is not None else None


def _say_up_to_date(user: str, sources: dict, as_json: bool) -> None:
    if as_json:
        print_json({"user": user, "up_to_date": True, "sources": sources})
        return
    stderr_console.print(
        f"{user}'s plugin has already learnt from all of this text; nothing to do (--fresh trains again from the start)"
    )


@plugin.command("eval")
@click.option("--user", "user", required=True, help="Whose plugin to measure.")
@click.option("--text", "text_path", required=True, type=click.Path(path_type=Path), help="UTF-8 text to score.")
@_model_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def evaluate(
    user: str, text_path: Path, profile: str | None, target: str | None, threads: int | None, as_json: bool
) -> None:
    """Perplexity of the target on FILE without and with USER's plugin (equal without a plugin)."""
    directory = user_plugin_dir(user)
    text = read_user_text(text_path)
    kind = plugin_kind(directory)
    side_plugin = load_side_plugin(directory) if kind == "side" else None
    session = _target_session(profile, target, threads, DEFAULT_SETTINGS.window)
    try:
        tokens = session.tokenize(text)
        if len(tokens) < 2:
            raise NotEnoughText(f"{text_path} has fewer than 2 tokens; nothing to score")
        with TaskProgress() as progress:
            if kind == "lora":
                base, personalised, count = _measure_lora(session, tokens, directory, progress)
            else:
                if side_plugin is not None:
                    side_plugin.check_target(session.path.name, session.vocabulary_size, session.hidden_size)
                base, personalised, count = measure(session, tokens, side_plugin, progress=progress)
    finally:
        session.close()
    result = {"perplexity_base": round(base, 4), "perplexity_plugin": round(personalised, 4), "tokens": count}
    if as_json:
        print_json(result)
        return
    change = personalised / base - 1 if base and not math.isnan(base) else 0.0
    stderr_console.print(
        f"{user} ({kind or 'no'} plugin) on {count} tokens: perplexity {base:.3f} -> {personalised:.3f} ({change:+.1%})"
    )


def _measure_lora(session: ModelSession, tokens: list[int], directory: Path, progress) -> tuple[float, float, int]:
    """A LoRA changes the model itself: score the text once without it and once with it."""
    nothing = collect_features(session, tokens, _no_vocabulary(), progress=progress)
    personalised = PersonalisedSession(session, lora_path=directory / LORA_FILE)
    try:
        with_lora = collect_features(personalised, tokens, _no_vocabulary(), progress=progress)
    finally:
        personalised.detach()
    return perplexity(log_likelihoods(nothing)), perplexity(log_likelihoods(with_lora)), len(nothing)


def _no_vocabulary() -> np.ndarray:
    return np.empty(0, dtype=np.int64)


@plugin.command("import")
@click.option("--user", "user", required=True, help="Whose plugin the adapter becomes.")
@click.argument("file", type=click.Path(path_type=Path))
@_model_options
def import_command(user: str, file: Path, profile: str | None, target: str | None, threads: int | None) -> None:
    """Make the LoRA adapter FILE (GGUF, e.g. from llama.cpp's convert_lora_to_gguf.py) USER's plugin.

    llama.cpp must accept it for the target model; the file is copied into the user's directory.
    """
    directory = user_plugin_dir(user)
    if not file.expanduser().is_file():
        raise PluginError(f"no such file: {file}")
    _check_adapter_header(file.expanduser())  # before loading the target: a wrong file is refused at once
    session = _target_session(profile, target, threads, 256)
    try:
        PersonalisedSession(session, lora_path=file.expanduser()).detach()  # raises when llama.cpp refuses it
    finally:
        session.close()
    path = import_lora(directory, file.expanduser())
    stderr_console.print(f"imported {file.name} as {user}'s plugin ({human_bytes(path.stat().st_size)})")


def _check_adapter_header(path: Path) -> None:
    """Refuse a file that is not a GGUF LoRA adapter from its header, as llama.cpp would after
    the target's load (the same test: general.type must be "adapter")."""
    try:
        kind = open_gguf(path).metadata.get("general.type")
    except InvalidModelFile as error:
        raise PluginError(f"{error}; a plugin to import is a LoRA adapter in GGUF") from None
    if kind != "adapter":
        raise PluginError(f"{path} is a GGUF {kind or 'file'}, not a LoRA adapter (general.type is not 'adapter')")


@plugin.command("rm")
@click.option("--user", "user", required=True, help="Whose plugin to delete.")
def remove(user: str) -> None:
    """Delete USER's plugin weights (the user stays)."""
    directory = user_plugin_dir(user)
    size = plugin_size(directory)
    if not remove_plugin(directory):
        raise PluginError(f"{user} has no plugin")
    stderr_console.print(f"removed {user}'s plugin ({human_bytes(size)})")
