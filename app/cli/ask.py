"""``duetto ask``: one question, or an interactive chat when no question is given."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from duetto.app.cli.console import print_json, stderr_console
from duetto.app.cli.loading import load_decoder, load_engine, load_reader, model_paths
from duetto.app.cli.options import DecodingOptions, decoding_options, mode_option, reply_options
from duetto.app.core.chat import (
    NO_LISTENERS,
    SYSTEM_PROMPT,
    SYSTEM_PROMPT_SETTING,
    ChatSession,
    Listeners,
    StoredChat,
    complete,
    conversation_title,
    runnable_settings,
)
from duetto.app.core.questions import answer_from_documents
from duetto.engine.code_blocks import fenced_code
from duetto.engine.decoder import DecodeSettings
from duetto.engine.errors import EngineError
from duetto.engine.stats import ReplyStats
from duetto.store.conversations import (
    DEFAULT_USER,
    create_conversation,
    list_conversations,
    named_user,
    owned_conversation,
)
from duetto.store.database import open_database
from duetto.store.documents import get_document
from duetto.store.personas import list_personas
from duetto.store.settings import get_setting


def _write_to_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


ONE_SHOT_CONTEXT_LENGTH = 4096


def one_shot_context_length(prompt: str, max_tokens: int) -> int | None:
    """The context for one question and its answer: 4,096 tokens when they surely fit (at most a
    token per two bytes of UTF-8, generously), else None (the automatic size, up to 32k). Setting up
    a 32k context costs about 2 s more than a 4k one (measured: first token 4.6 s against 2.6 s),
    which a chat pays once but a one-shot ``ask`` would pay on every question."""
    needed = len(prompt.encode("utf-8")) // 2 + max_tokens + 512  # + the system prompt and template
    return ONE_SHOT_CONTEXT_LENGTH if needed <= ONE_SHOT_CONTEXT_LENGTH else None


def prompt_with_piped_input(prompt: str | None) -> str | None:
    """The prompt to ask, from the argument and whatever is piped into standard input.

    A terminal on stdin is left alone (no PROMPT then means an interactive chat). Piped text is
    the material: with a PROMPT it goes first and the PROMPT, the instruction, after it; alone,
    all its lines are one prompt. ``-`` as the PROMPT means "stdin is the prompt".
    """
    if prompt == "-":
        return sys.stdin.read()
    if sys.stdin is None or sys.stdin.isatty():
        return prompt
    material = sys.stdin.read()
    if not material.strip():
        if prompt is None:  # `git diff | duetto ask` on a clean tree: nothing to ask about
            raise click.BadParameter("the piped input is empty and no PROMPT was given (-i chats from a pipe)",
                                     param_hint="PROMPT")  # fmt: skip
        return prompt
    if prompt is None:
        return material
    return f"{material.rstrip()}\n\n{prompt}"


def chosen_system_prompt(text: str | None, path: Path | None, persona: str | None, user: str) -> str | None:
    """The system prompt from --system, --system-file or --persona (one of them), or None when
    none was given."""
    if sum(choice is not None for choice in (text, path, persona)) > 1:
        raise click.UsageError("give one of --system, --system-file and --persona")
    if persona is not None:
        db = open_database()
        by_name = {saved.name: saved.prompt for saved in list_personas(db, named_user(db, user))}
        if persona not in by_name:
            known = ", ".join(by_name) or "none yet: save one in the chat app (F9)"
            raise click.BadParameter(
                f"{user} has no persona named {persona!r} (theirs: {known})", param_hint="--persona"
            )
        return by_name[persona]
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise click.BadParameter(f"cannot read {path}: {error}", param_hint="--system-file") from None
    if text is not None and not text.strip():
        raise click.BadParameter("the system prompt is empty", param_hint="--system")
    return text


def profile_system_prompt(user: str) -> str:
    """The user's default system prompt (set in the chat app, F9), else duetto's own."""
    db = open_database()
    return get_setting(db, named_user(db, user), SYSTEM_PROMPT_SETTING) or SYSTEM_PROMPT


def stats_line(stats: ReplyStats) -> str:
    acceptance = f", accepted {stats.accepted}/{stats.drafted} drafted" if stats.drafted else ""
    speed = f"{stats.tokens_per_second:.1f} tok/s, " if stats.tokens > 1 else ""
    decoded = f"mode {stats.mode}, drafter {stats.drafter}" if stats.mode else "decoded by the server"
    line = (
        f"{stats.tokens} tokens, {speed}first token {stats.ttft_seconds:.2f} s, {stats.seconds:.2f} s in all, "
        f"prompt {stats.prompt_tokens} tokens, {decoded}{acceptance}"
    )
    if stats.mode is None:  # a remote target: what its own prompt cache saved
        line += f", {stats.server_cached_tokens} of the prompt from the server's cache"
    if stats.finish_reason == "length":
        line += f"\ncut at the {stats.tokens}-token limit: raise --max-tokens for a longer answer"
    elif stats.finish_reason == "context":
        line += "\ncut: the context window is full; raise --context"
    return line


@click.command()
@click.argument("prompt", required=False)
@mode_option()
@decoding_options
@reply_options
@click.option("--seed", type=int, default=None, help="Seed for sampling (temperature > 0).")
@click.option("--system", "system_text", default=None, metavar="TEXT", help="System prompt instead of duetto's own.")
@click.option(
    "--persona", default=None, metavar="NAME", help="A system prompt the user saved by name in the chat app (F9)."
)
@click.option(
    "--system-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Read the system prompt from this file.",
)
@click.option(
    "--extract",
    "-x",
    is_flag=True,
    help="Print only the code of the answer: its fenced blocks' contents (the whole answer if it has none).",
)
@click.option("--json", "as_json", is_flag=True, help='Print {"text": ..., "stats": {...}} on stdout.')
@click.option(
    "--doc",
    "document_names",
    multiple=True,
    metavar="NAME",
    help="Answer from this stored document's memory (repeatable; see `duetto docs list`).",
)
@click.option(
    "--full-context",
    is_flag=True,
    help="With --doc: put the whole document in the prompt instead of its memory (the slow baseline).",
)
@click.option("--user", default=DEFAULT_USER, show_default=True, help="Whose plugin applies (see `duetto users list`).")
@click.option(
    "--continue",
    "-c",
    "continue_last",
    is_flag=True,
    help="Continue your most recent conversation (the chat app's too), with its window and memory; "
    "the question and answer are kept in it.",
)
@click.option("--chat", "chat_id", type=int, default=None, metavar="ID", help="Continue conversation ID instead.")
@click.option(
    "--interactive",
    "-i",
    is_flag=True,
    help="Chat line by line even when standard input is not a terminal (each line is a turn).",
)
def ask(
    prompt: str | None,
    mode: str,
    decoding: DecodingOptions,
    max_tokens: int,
    temperature: float,
    seed: int | None,
    system_text: str | None,
    persona: str | None,
    system_file: Path | None,
    extract: bool,
    as_json: bool,
    document_names: tuple[str, ...],
    full_context: bool,
    user: str,
    continue_last: bool,
    chat_id: int | None,
    interactive: bool,
) -> None:
    """Ask PROMPT and stream the answer; with no PROMPT, chat interactively (Ctrl-D to quit).

    Text piped in is the material and PROMPT the instruction, as in
    `cat app.py | duetto ask "Add type hints"`; piped text with no PROMPT is one prompt.
    PROMPT '-' reads the whole prompt from stdin. The models are fetched on first use.
    """
    if not interactive:
        prompt = prompt_with_piped_input(prompt)
    if prompt is not None and not prompt.strip():
        raise click.BadParameter("the prompt is empty", param_hint="PROMPT")
    if prompt is None and as_json:
        raise click.UsageError("--json needs a PROMPT (interactive chat prints text)")
    if full_context and not document_names:
        raise click.UsageError("--full-context goes with --doc NAME")
    explicit_prompt = chosen_system_prompt(system_text, system_file, persona, user)
    if document_names and explicit_prompt is not None:
        raise click.UsageError("--system does not apply to --doc: document answers have their own instructions")
    if extract and (as_json or prompt is None):
        raise click.UsageError("--extract goes with a PROMPT and without --json")
    if continue_last and chat_id is not None:
        raise click.UsageError("give -c (your most recent conversation) or --chat ID, not both")
    if continue_last or chat_id is not None:
        if prompt is None or document_names or explicit_prompt is not None or extract:
            raise click.UsageError("-c/--chat take a PROMPT, without --doc, --system or --extract")
        requested = decoding.settings(mode, max_tokens=max_tokens, temperature=temperature, seed=seed)
        ask_in_conversation(prompt, chat_id, decoding, mode, requested, as_json, user)
        return
    requested = decoding.settings(mode, max_tokens=max_tokens, temperature=temperature, seed=seed)
    if document_names:
        if prompt is None:
            raise click.UsageError("--doc needs a question")
        ask_documents(prompt, document_names, full_context, decoding, requested, as_json, user)
        return
    system_prompt = explicit_prompt or profile_system_prompt(user)
    use_draft = decoding.uses_draft_model(mode)
    target_path, draft_path = model_paths(decoding.profile, decoding.target, decoding.draft_model, use_draft)
    if mode == "fast" and draft_path is None:
        raise click.UsageError("--mode fast needs a draft model: use a profile with one or --draft-model")
    context_length = decoding.context_length
    if context_length is None and prompt is not None:
        context_length = one_shot_context_length(prompt, max_tokens)
    engine = load_engine(target_path, draft_path, context_length=context_length, threads=decoding.threads, user=user)
    settings, _ = runnable_settings(requested, has_draft_model=engine.has_draft_model)

    if prompt is not None:
        messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": prompt}]
        quiet = as_json or extract
        listeners = NO_LISTENERS if quiet else Listeners(on_written=lambda written: _write_to_stdout(written.text))
        reply = complete(engine.decoder, messages, settings, listeners)
        if extract:
            blocks = fenced_code(reply.text, unclosed=True)
            _write_to_stdout(("\n\n".join(blocks) if blocks else reply.text).rstrip("\n") + "\n")
            stderr_console.print(f"[dim]{stats_line(reply.stats)}[/dim]")
        elif as_json:
            print_json({"text": reply.text, "stats": reply.stats.as_dict()})
        else:
            sys.stdout.write("\n")
            stderr_console.print(f"[dim]{stats_line(reply.stats)}[/dim]")
        if reply.stats.error:
            raise EngineError(f"{reply.stats.error}; the reply stopped there")
        return

    stderr_console.print(f"[bold]duetto[/bold] chat with {target_path.name}. Ctrl-D quits, Ctrl-C stops a reply.")
    chat = ChatSession(engine, window_tokens=decoding.window_tokens, system_prompt=system_prompt)
    while True:
        try:
            question = input("\n> ")
        except EOFError:
            sys.stdout.write("\n")
            return
        if not question.strip():
            continue
        try:
            turn = chat.ask(question, settings, Listeners(on_written=lambda written: _write_to_stdout(written.text)))
        except KeyboardInterrupt:
            stderr_console.print("\n[dim](reply stopped)[/dim]")
            continue
        except EngineError as error:
            stderr_console.print(f"\nduetto: error: {error}")
            continue
        sys.stdout.write("\n")
        stderr_console.print(f"[dim]{stats_line(turn.stats)}[/dim]")


def ask_in_conversation(
    question: str,
    chat_id: int | None,
    decoding: DecodingOptions,
    mode: str,
    requested: DecodeSettings,
    as_json: bool,
    user: str,
) -> None:
    """Ask in a stored conversation (``chat_id``, else the user's most recent, else a new one),
    as the chat app does: the same window and memory, the turn kept, its documents answered from."""
    db = open_database()
    owner = named_user(db, user)
    if chat_id is not None:
        conversation = owned_conversation(db, chat_id, owner)
    else:
        recent = list_conversations(db, owner)
        title = conversation_title(question)
        conversation = recent[0] if recent else create_conversation(db, owner, title)
        if not recent:
            stderr_console.print(f"[dim]no conversation yet: this one starts conversation {conversation.id}[/dim]")
    use_draft = decoding.uses_draft_model(mode)
    target_path, draft_path = model_paths(decoding.profile, decoding.target, decoding.draft_model, use_draft)
    engine = load_engine(
        target_path, draft_path, context_length=decoding.context_length, threads=decoding.threads, user=user
    )
    chat = StoredChat(engine, conversation.id, window_tokens=decoding.window_tokens)
    listeners = NO_LISTENERS if as_json else Listeners(on_written=lambda written: _write_to_stdout(written.text))
    turn = chat.ask(question, requested, listeners)
    if as_json:
        print_json({"text": turn.text, "stats": turn.stored_stats or turn.stats.as_dict(), "chat": conversation.id})
    else:
        sys.stdout.write("\n")
        stderr_console.print(f"[dim]{stats_line(turn.stats)}; conversation {conversation.id}[/dim]")
    if turn.stats.error:
        raise EngineError(f"{turn.stats.error}; what it wrote is kept in conversation {conversation.id}, marked")


def ask_documents(
    question: str,
    document_names: tuple[str, ...],
    full_context: bool,
    decoding: DecodingOptions,
    requested: DecodeSettings,
    as_json: bool,
    user: str,
) -> None:
    """Answer from stored document memory; the draft model drafts only when asked to (--draft model
    or fast mode), since it would have to read the excerpts too, and lookup copies from them for free."""
    db = open_database()
    owner = named_user(db, user)
    documents = [get_document(db, name, owner) for name in dict.fromkeys(document_names)]
    use_draft = requested.mode == "fast" or requested.drafter == "model"
    target_path, draft_path = model_paths(decoding.profile, decoding.target, decoding.draft_model, use_draft)
    reader, reader_model = load_reader(decoding.profile, decoding.draft_model, threads=decoding.threads)
    max_tokens = requested.max_tokens
    context_length = decoding.context_length or one_shot_context_length(question, max_tokens)
    if full_context:  # room for the whole text, the question and the answer
        context_length = max(context_length or 0, sum(document.tokens for document in documents) + max_tokens + 256)
    decoder = load_decoder(target_path, draft_path, context_length=context_length, threads=decoding.threads, user=user)
    settings, _ = runnable_settings(requested, has_draft_model=draft_path is not None, documents=True)
    answer = answer_from_documents(
        db,
        decoder,
        reader,
        reader_model,
        documents,
        question,
        settings,
        on_delta=None if as_json else _write_to_stdout,
        full_context=full_context,
    )
    citations = [
        {"document": c.document, "chunk": c.position, "variant": c.variant, "label": c.label, "file": c.file_path}
        for c in answer.citations
    ]
    if as_json:
        print_json({"text": answer.text, "stats": answer.stats, "citations": citations})
        return
    sys.stdout.write("\n")
    if answer.citations:
        stderr_console.print("[dim]sources: " + ", ".join(c.label for c in answer.citations) + "[/dim]")
    stats = answer.stats
    stderr_console.print(
        f"[dim]first token {stats['ttft_seconds']:.2f} s, the target read {stats['prompt_tokens']} tokens "
        f"for a {stats['document_tokens']}-token document, {stats['tokens_per_second']:.1f} tok/s[/dim]"
    )
