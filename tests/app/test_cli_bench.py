import json
from pathlib import Path

import pytest
from duetto_cli import run_duetto


def write_prompts(path: Path) -> Path:
    lines = [
        {"id": "copy", "kind": "edit", "prompt": "Repeat: the cat sat on the mat. the cat sat on the mat."},
        {"id": "free", "kind": "open", "prompt": "a dog"},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_bench_json_compares_every_mode_with_the_target(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    result = run_duetto(
        "bench", "--prompts", str(write_prompts(tmp_path / "prompts.jsonl")), "--max-tokens", "24", "--json",
        "--threads", "1", "--target", str(tiny_models["target"]), "--draft-model", str(tiny_models["draft"]),
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [(row["id"], row["mode"]) for row in report["results"]] == [
        ("copy", "target"), ("copy", "exact"), ("copy", "fast"), ("free", "target"), ("free", "exact"), ("free", "fast")
    ]  # fmt: skip
    for row in report["results"]:
        assert {"id", "kind", "mode", "text", "tokens", "seconds", "tokens_per_second", "identical_to_target",
                "first_divergence", "speedup", "acceptance"} <= row.keys()  # fmt: skip
        if row["mode"] == "exact":
            assert row["identical_to_target"] is True and row["first_divergence"] is None
        if row["mode"] == "target":
            assert row["speedup"] == 1.0
            # The tiny F32 models round alike batched and one token at a time (shifts ~0.002 here);
            # re-reading the reply one position off would move margins by whole logits.
            assert 0 <= row["margin_shift"] < 0.05
    assert report["summary"]["exact"]["identical_to_target"] == 2
    assert report["summary"]["exact"]["divergences_beyond_rounding"] == 0
    assert set(report["summary"]["exact"]["geomean_speedup_by_kind"]) == {"edit", "open"}


def test_bench_cold_starts_every_reply_as_a_one_shot_ask_does(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    result = run_duetto(
        "bench", "--prompts", str(write_prompts(tmp_path / "prompts.jsonl")), "--modes", "exact", "--cold",
        "--repeat", "2", "--max-tokens", "24", "--json", "--threads", "1", "--target", str(tiny_models["target"]),
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["cold"] is True
    assert [row["identical_to_target"] for row in report["results"] if row["mode"] == "exact"] == [True, True]


def test_bench_rejects_a_malformed_prompt_file(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "kind": "open"}\n')

    result = run_duetto("bench", "--prompts", str(bad), "--threads", "1", "--target", str(tiny_models["target"]))

    assert result.returncode == 2
    assert "line 1" in result.stderr and "Traceback" not in result.stderr


def test_bench_judges_every_mode_by_the_same_task_checks(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    checks = tmp_path / "checks.jsonl"
    checks.write_text(
        '{"id": "copy", "checks": {"absent": ["no tiny model writes this"]}}\n'
        '{"id": "free", "checks": {"contains": ["no tiny model writes this"]}}\n'
    )
    result = run_duetto(
        "bench", "--prompts", str(write_prompts(tmp_path / "prompts.jsonl")), "--checks", str(checks),
        "--modes", "exact", "--max-tokens", "16", "--json", "--threads", "1", "--target", str(tiny_models["target"]),
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [(row["id"], row["mode"], row["correct"]) for row in report["results"]] == [
        ("copy", "target", True), ("copy", "exact", True), ("free", "target", False), ("free", "exact", False)
    ]  # fmt: skip
    assert report["results"][2]["failed_checks"] == ["missing 'no tiny model writes this'"]
    assert {key: report["summary"]["exact"][key] for key in ("checked", "correct", "target_correct")} == {
        "checked": 2, "correct": 1, "target_correct": 1
    }  # fmt: skip


def test_bench_rejects_checks_for_a_prompt_it_does_not_have(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    checks = tmp_path / "checks.jsonl"
    checks.write_text('{"id": "copyy", "checks": {"mentions": ["cat"]}}\n')

    result = run_duetto(
        "bench", "--prompts", str(write_prompts(tmp_path / "prompts.jsonl")), "--checks", str(checks),
        "--threads", "1", "--target", str(tiny_models["target"]),
    )  # fmt: skip

    assert result.returncode == 2
    assert "no prompt has the id 'copyy'" in result.stderr and "Traceback" not in result.stderr


def test_bench_runs_llama_cpps_own_modes_beside_its_own(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """--peers: llama.cpp's tools (built from the llama-cpp-python sdist, cached per machine) on the
    same prompts, token for token, each mode over llama.cpp's own target alone."""
    result = run_duetto(
        "bench", "--prompts", str(write_prompts(tmp_path / "prompts.jsonl")), "--modes", "target,exact",
        "--max-tokens", "24", "--json", "--threads", "1", "--target", str(tiny_models["target"]),
        "--draft-model", str(tiny_models["draft"]), "--peers", "all", "--repeat", "2",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    peers = ["llama.cpp target", "llama.cpp ngram-simple", "llama.cpp ngram-mod", "llama.cpp draft-simple",
             "llama.cpp lookup"]  # fmt: skip
    assert [row["mode"] for row in report["results"] if row["id"] == "copy"] == ["target", "exact", *peers]
    rows = {(row["id"], row["mode"]): row for row in report["results"]}
    for prompt in ("copy", "free"):
        alone = rows[(prompt, "llama.cpp target")]
        assert alone["speedup"] == 1.0 and alone["drafted"] == 0, "the reference never drafts"
        for mode in peers:
            peer = rows[(prompt, mode)]
            assert peer["same_prompt"] is True, f"{mode} read the prompt duetto rendered, token for token"
            assert peer["tokens_per_second"] > 0 and peer["text"] is not None
        # whether the texts agree is reported, not asserted: the tiny models' top logits are near-ties
        assert alone["identical_to_target"] in (True, False)
    assert rows[("copy", "llama.cpp draft-simple")]["drafted"] > 0, "the tiny draft model drafts"
    summary = report["summary"]["peers"]
    assert set(summary["modes"]) == set(peers[1:])
    assert set(summary["exact_against_best_peer"]) == {"edit", "open"}

    unknown = run_duetto("bench", "--peers", "medusa", "--target", str(tiny_models["target"]), "--threads", "1")
    assert unknown.returncode == 2 and "peer modes are" in unknown.stderr


def test_bench_plugin_measures_a_plugin_on_the_users_style_and_on_generic_text(
    tiny_models: dict[str, Path], tmp_path: Path, isolated_duetto: Path
) -> None:
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "user-train.txt").write_text("the cat sat on the warm mat and the dog slept near the door. " * 40)
    (texts / "user-heldout.txt").write_text("the dog sat on the warm mat and the cat slept near the door. " * 6)
    (texts / "generic-prose.txt").write_text("Hello world! How are you today? I am fine, thank you. " * 8)
    (texts / "generic-code.txt").write_text("def add(a, b):\n    return a + b\n\n" * 12)

    result = run_duetto(
        "bench-plugin", "--texts", str(texts), "--target", str(tiny_models["target"]), "--threads", "1",
        "--max-tokens", "8", "--repeat", "1", "--json",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["user_change"] < -0.15  # the tiny model learns this style
    assert report["perplexity"]["user"]["positions"] > 50
    assert report["training_ratio"] == pytest.approx(report["training_seconds"] / report["read_seconds"], rel=0.1)
    assert report["first_training_ratio"] > report["training_ratio"]
    assert set(report["targets_met"]) == {
        "user_change", "prose_change", "code_change", "training_ratio", "plugin_bytes", "slowdown"
    }  # fmt: skip
    assert len(report["generation"]["rates"]["with"]) == 3 and report["plugin_bytes"] > 0
    assert not (isolated_duetto / "users").exists()  # nothing of the user's was written

    (texts / "generic-code.txt").unlink()
    missing = run_duetto("bench-plugin", "--texts", str(texts), "--target", str(tiny_models["target"]))
    assert missing.returncode == 1 and "generic-code.txt" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_bench_ceiling_measures_the_lookup_oracle_in_the_same_run(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    result = run_duetto(
        "bench", "--prompts", str(write_prompts(tmp_path / "prompts.jsonl")), "--modes", "exact", "--ceiling",
        "--max-tokens", "24", "--json", "--threads", "1", "--target", str(tiny_models["target"]),
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    ceiling = report["summary"]["ceiling"]
    assert set(ceiling["lookup_oracle_by_kind"]) == {"edit", "open"}
    assert ceiling["plain_step_ms"] > 0 and ceiling["batch_ms"]["64"] > 0
    for row in report["results"]:
        if row["mode"] == "target":
            # A never-wrong drafter is never slower than plain steps: drafting nothing is a schedule.
            assert row["lookup_ceiling"] >= 1.0
            assert 0 <= row["lookup_ceiling_drafted"] < row["tokens"]
    exact = report["summary"]["exact"]["geomean_speedup_by_kind"]
    for kind, share in ceiling["exact_share_by_kind"].items():
        assert share == pytest.approx(exact[kind] / ceiling["lookup_oracle_by_kind"][kind], abs=0.002)

    printed = run_duetto(
        "bench", "--prompts", str(write_prompts(tmp_path / "prompts.jsonl")), "--modes", "exact", "--ceiling",
        "--max-tokens", "8", "--threads", "1", "--target", str(tiny_models["target"]),
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    assert "edit: the lookup-oracle ceiling" in printed.stdout and "of it" in printed.stdout
