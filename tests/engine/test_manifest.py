import re

import pytest

from duetto.engine.errors import ManifestError, UnknownModel
from duetto.engine.manifest import HubSource, PackageIndexSource, load_manifest, parse_manifest

SHA256 = re.compile(r"^[0-9a-f]{64}$")


def test_the_shipped_manifest_is_complete() -> None:
    manifest = load_manifest()

    assert manifest.default_profile == "default"
    assert [m.name for m in manifest.profile_models("default")] == ["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    assert manifest.profile("large").target == "qwen2.5-coder-7b"
    assert manifest.profile("tiny").target == "smollm2-135m"
    for spec in manifest.models.values():
        assert SHA256.match(spec.sha256), spec.name
        assert spec.size > 0 and spec.license and spec.family and spec.roles
        assert isinstance(spec.sources[0], HubSource), "the official hub comes first"
        for source in spec.sources[1:]:
            assert isinstance(source, PackageIndexSource)
            assert all(SHA256.match(part.wheel_sha256) for part in source.parts)


def test_the_default_pair_is_mirrored_on_the_package_index() -> None:
    manifest = load_manifest()
    draft, target = manifest.profile_models("default")

    assert draft.file == "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" and draft.size == 491_400_064
    assert target.file == "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf" and target.size == 1_117_320_768
    assert [len(s.parts) for s in draft.sources if isinstance(s, PackageIndexSource)] == [6]
    assert [len(s.parts) for s in target.sources if isinstance(s, PackageIndexSource)] == [22]
    assert manifest.model("qwen2.5-coder-7b").sources == (
        HubSource(repo="Qwen/Qwen2.5-Coder-7B-Instruct-GGUF", file="qwen2.5-coder-7b-instruct-q4_k_m.gguf"),
    )


def test_unknown_names_are_errors_that_list_the_known_ones() -> None:
    manifest = load_manifest()

    with pytest.raises(UnknownModel, match="qwen2.5-coder-1.5b"):
        manifest.model("gpt-5")
    with pytest.raises(UnknownModel, match="default"):
        manifest.profile("huge")


def test_a_profile_naming_a_missing_model_is_rejected() -> None:
    text = """
default_profile: p
profiles: {p: {target: nowhere}}
models: {}
"""
    with pytest.raises(ManifestError, match="unknown model 'nowhere'"):
        parse_manifest(text)
