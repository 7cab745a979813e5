from pathlib import Path

from duetto.engine.pairing import check_pair


def test_models_sharing_a_vocabulary_can_pair(tiny_models: dict[str, Path]) -> None:
    result = check_pair(tiny_models["draft"], tiny_models["target"])

    assert result.compatible, result.problems
    assert result.problems == []
    assert result.shared_vocabulary_size == 660


def test_a_different_vocabulary_cannot_pair_and_says_why(tiny_models: dict[str, Path]) -> None:
    result = check_pair(tiny_models["draft"], tiny_models["other"])

    assert not result.compatible
    assert any("shared token ids are different tokens" in problem for problem in result.problems)
    assert any("bos_token_id differs" in problem for problem in result.problems)
