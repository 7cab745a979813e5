import json
from pathlib import Path

from duetto_cli import run_duetto


def test_bench_chat_keeps_the_kv_cache_within_the_window(tiny_models: dict[str, Path]) -> None:
    result = run_duetto(
        "bench-chat", "--turns", "14", "--max-tokens", "8", "--window", "900", "--memory", "100",
        "--context", "2048", "--threads", "1", "--json",
        "--target", str(tiny_models["target"]), "--reader", str(tiny_models["draft"]),
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    turns = report["turns"]
    assert [row["turn"] for row in turns] == list(range(1, 15))
    assert report["summary"]["folds"] >= 1
    assert max(row["kv_tokens"] for row in turns) <= 900 + 100 + 8
    assert all(row["rss_mib"] > 0 for row in turns)


def test_bench_chat_refuses_a_window_larger_than_the_context(tiny_models: dict[str, Path]) -> None:
    result = run_duetto("bench-chat", "--window", "4000", "--context", "2048", "--target", str(tiny_models["target"]))

    assert result.returncode == 2 and "must fit in --context" in result.stderr
