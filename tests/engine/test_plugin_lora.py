"""LoRA adapters in GGUF, made elsewhere and imported: llama.cpp applies them to the target's context."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter, Keys

from duetto.engine.model_session import ModelSession
from duetto.engine.plugin import PluginError, SidePlugin, TargetFingerprint
from duetto.engine.plugin_files import import_lora, plugin_kind, save_side_plugin
from duetto.engine.plugin_session import PersonalisedSession, personalise

TARGET_WIDTH, TARGET_LAYERS = 96, 4  # tests/fixtures/tiny_gguf.py's target


def write_lora(path: Path, width: int = TARGET_WIDTH, layers: int = TARGET_LAYERS, scale: float = 1.0) -> Path:
    """A LoRA GGUF on every attention query projection, as llama.cpp's converter writes one."""
    rank = 4
    rng = np.random.default_rng(0)
    writer = GGUFWriter(path, "llama")
    writer.add_type("adapter")
    writer.add_string(Keys.Adapter.TYPE, "lora")
    writer.add_float32(Keys.Adapter.LORA_ALPHA, float(rank))
    for layer in range(layers):
        # numpy shapes are GGUF's reversed: lora_a is ne = [in, rank], lora_b is ne = [rank, out]
        writer.add_tensor(f"blk.{layer}.attn_q.weight.lora_a", rng.standard_normal((rank, width)).astype(np.float32))
        writer.add_tensor(
            f"blk.{layer}.attn_q.weight.lora_b", (scale * rng.standard_normal((width, rank))).astype(np.float32)
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def target(tiny_models: dict[str, Path]) -> ModelSession:
    return ModelSession(tiny_models["target"], context_length=256, threads=1)


def last_logits(session, tokens: list[int]) -> np.ndarray:
    session.truncate(0)
    logits = session.evaluate(tokens, [len(tokens) - 1]).copy()
    session.truncate(0)
    return logits


def test_a_lora_changes_the_target_and_comes_off_again(target: ModelSession, tmp_path: Path) -> None:
    tokens = target.tokenize("the cat sat on the mat")
    before = last_logits(target, tokens)

    personalised = PersonalisedSession(target, lora_path=write_lora(tmp_path / "a.gguf", scale=2.0))
    with_lora = last_logits(personalised, tokens)
    personalised.detach()
    after = last_logits(target, tokens)

    assert not np.allclose(with_lora, before, atol=1e-2)
    np.testing.assert_allclose(after, before, atol=1e-4)


def test_a_zero_lora_leaves_the_logits_alone(target: ModelSession, tmp_path: Path) -> None:
    tokens = target.tokenize("hello world")
    before = last_logits(target, tokens)

    personalised = PersonalisedSession(target, lora_path=write_lora(tmp_path / "zero.gguf", scale=0.0))
    try:
        np.testing.assert_allclose(last_logits(personalised, tokens), before, atol=1e-4)
    finally:
        personalised.detach()


def test_a_lora_for_another_shape_is_refused(target: ModelSession, tmp_path: Path) -> None:
    with pytest.raises(PluginError, match="cannot apply the LoRA adapter"):
        PersonalisedSession(target, lora_path=write_lora(tmp_path / "narrow.gguf", width=64))


def test_importing_copies_privately_and_replaces_a_side_plugin(target: ModelSession, tmp_path: Path) -> None:
    directory = tmp_path / "users" / "bob"
    fingerprint = TargetFingerprint(target.path.name, target.vocabulary_size, target.hidden_size)
    zeros = np.zeros((target.hidden_size, 1), dtype=np.float32)
    save_side_plugin(directory, SidePlugin(np.array([5]), zeros, np.zeros((1, 1)), np.zeros(1), 1.0, fingerprint))

    path = import_lora(directory, write_lora(tmp_path / "mine.gguf"))

    assert plugin_kind(directory) == "lora" and stat.S_IMODE(path.stat().st_mode) == 0o600
    personalised = personalise(target, directory)
    assert isinstance(personalised, PersonalisedSession) and personalised.lora_path == path
    personalised.detach()


def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an adapter")

    with pytest.raises(PluginError, match="not a GGUF file"):
        import_lora(tmp_path / "users" / "carol", text)
