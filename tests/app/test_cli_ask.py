import json
import re
from pathlib import Path

from duetto_cli import run_duetto

from duetto.app.core.chat import SYSTEM_PROMPT_SETTING
from duetto.store.conversations import ensure_user
from duetto.store.database import open_database
from duetto.store.personas import save_persona
from duetto.store.settings import set_setting


def prompt_sizes_in(stderr: str) -> list[int]:
    """The prompt sizes of the stats lines ask prints after each reply."""
    return [int(size) for size in re.findall(r"prompt (\d+) tokens", stderr)]


def test_ask_json_prints_text_and_stats(tiny_models: dict[str, Path]) -> None:
    result = run_duetto(
        "ask", "hello world", "--threads", "1", "--target", str(tiny_models["target"]),
        "--draft-model", str(tiny_models["draft"]), "--max-tokens", "8", "--json",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["text"]
    assert data["stats"]["mode"] == "exact"
    assert {"prompt_tokens", "tokens", "seconds", "tokens_per_second", "ttft_seconds", "drafted", "accepted",
            "target_calls", "mode", "drafter"} <= data["stats"].keys()  # fmt: skip
    assert data["stats"]["tokens"] == 8


def test_interactive_ask_keeps_the_conversation_until_end_of_input(tiny_models: dict[str, Path]) -> None:
    result = run_duetto(
        "ask",
        "--interactive",
        "--threads",
        "1",
        "--target",
        str(tiny_models["target"]),
        "--max-tokens",
        "5",
        input_text="hello\n\nworld\n",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.count("> ") == 4, "a prompt for each line and one more before end of input"
    prompt_sizes = prompt_sizes_in(result.stderr)
    assert len(prompt_sizes) == 2, "the blank line is skipped"
    assert prompt_sizes[1] > prompt_sizes[0] + 5, "the second turn carries the first"


def test_an_empty_prompt_is_a_usage_error(tiny_models: dict[str, Path]) -> None:
    result = run_duetto("ask", "   ", "--threads", "1", "--target", str(tiny_models["target"]))

    assert result.returncode == 2
    assert "the prompt is empty" in result.stderr
    assert "Traceback" not in result.stderr
    for piped in ("", "  \n"):  # `git diff | duetto ask` on a clean tree: not an interactive chat
        nothing = run_duetto("ask", "--threads", "1", "--target", str(tiny_models["target"]), input_text=piped)
        assert nothing.returncode == 2 and "the piped input is empty" in nothing.stderr, nothing.stderr


def test_an_incompatible_draft_is_refused_before_loading(tiny_models: dict[str, Path]) -> None:
    result = run_duetto(
        "ask",
        "hi",
        "--threads",
        "1",
        "--target",
        str(tiny_models["target"]),
        "--draft-model",
        str(tiny_models["other"]),
        "--json",
    )

    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("duetto: error: other.gguf cannot draft for target.gguf")


def test_a_long_interactive_chat_folds_its_oldest_exchanges_into_memory(tiny_models: dict[str, Path]) -> None:
    turns = "".join(f"tell me about the cat number {number} and the mat\n" for number in range(40))

    result = run_duetto(
        "ask",
        "-i",
        "--threads",
        "1",
        "--target",
        str(tiny_models["target"]),
        "--context",
        "256",
        "--max-tokens",
        "16",
        input_text=turns,
    )

    assert result.returncode == 0, result.stderr
    prompt_sizes = prompt_sizes_in(result.stderr)
    assert len(prompt_sizes) == 40
    assert max(prompt_sizes) + 16 <= 256


def test_piped_text_is_the_material_and_the_argument_the_instruction(tiny_models: dict[str, Path]) -> None:
    target = ("--threads", "1", "--target", str(tiny_models["target"]), "--max-tokens", "4", "--json")
    instruction_alone = run_duetto("ask", "the cat sat", *target)
    with_material = run_duetto("ask", "the cat sat", *target, input_text="on a mat\nnear the door\n")
    several_lines = run_duetto("ask", *target, input_text="on a mat\nnear the door\n")

    for result in (instruction_alone, with_material, several_lines):
        assert result.returncode == 0, result.stderr
    alone, both, lines = (json.loads(r.stdout)["stats"]["prompt_tokens"] for r in (instruction_alone, with_material,
                                                                                 several_lines))  # fmt: skip
    assert both > alone and both > lines, "the material and the instruction are both in one prompt"
    assert several_lines.stdout.count('"text"') == 1, "several lines of input are one prompt, one answer"


def test_a_one_shot_question_gets_a_small_context_unless_it_needs_more() -> None:
    from duetto.app.cli.ask import one_shot_context_length

    assert one_shot_context_length("Explain Python's GIL in two sentences", 512) == 4096
    assert one_shot_context_length("def f(): pass\n" * 600, 512) is None, "8,400 bytes may be 4,200 tokens"


def test_a_system_prompt_from_the_command_line_or_a_file(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    model = ("--threads", "1", "--target", str(tiny_models["target"]), "--max-tokens", "6", "--json")
    plain = json.loads(run_duetto("ask", "hello world", *model).stdout)
    given = run_duetto("ask", "hello world", *model, "--system", "You answer in haiku.")
    (tmp_path / "system.txt").write_text("You answer in haiku.")
    from_file = run_duetto("ask", "hello world", *model, "--system-file", str(tmp_path / "system.txt"))

    assert given.returncode == 0 and from_file.returncode == 0, given.stderr + from_file.stderr
    assert json.loads(given.stdout)["text"] == json.loads(from_file.stdout)["text"]
    assert json.loads(given.stdout)["stats"]["prompt_tokens"] != plain["stats"]["prompt_tokens"]
    both = run_duetto("ask", "hi", *model, "--system", "x", "--system-file", str(tmp_path / "system.txt"))
    assert both.returncode == 2 and "give one of --system, --system-file and --persona" in both.stderr


def test_a_persona_or_the_profiles_default_system_prompt_is_used(tiny_models: dict[str, Path]) -> None:
    model = ("--threads", "1", "--target", str(tiny_models["target"]), "--max-tokens", "6", "--json")
    given = json.loads(run_duetto("ask", "hello world", *model, "--system", "You answer in haiku.").stdout)
    db = open_database()
    user = ensure_user(db)
    save_persona(db, user, "poet", "You answer in haiku.")

    by_name = json.loads(run_duetto("ask", "hello world", *model, "--persona", "poet").stdout)
    assert (
        by_name == {**by_name, "text": given["text"]}
        and by_name["stats"]["prompt_tokens"] == given["stats"]["prompt_tokens"]
    )
    missing = run_duetto("ask", "hi", *model, "--persona", "pirate")
    assert missing.returncode == 2 and "no persona named 'pirate' (theirs: poet)" in missing.stderr
    set_setting(db, user, SYSTEM_PROMPT_SETTING, "You answer in haiku.")
    by_default = json.loads(run_duetto("ask", "hello world", *model).stdout)
    assert by_default["text"] == given["text"], "the profile's default system prompt (set in the app, F9)"


def test_extract_prints_the_answer_alone_and_refuses_json(tiny_models: dict[str, Path]) -> None:
    model = ("--threads", "1", "--target", str(tiny_models["target"]), "--max-tokens", "6")
    answer = json.loads(run_duetto("ask", "hello world", *model, "--json").stdout)["text"]
    extracted = run_duetto("ask", "hello world", *model, "-x")

    assert extracted.returncode == 0, extracted.stderr
    assert extracted.stdout == answer.rstrip("\n") + "\n", "no fenced block: the whole answer"
    refused = run_duetto("ask", "hi", *model, "-x", "--json")
    assert refused.returncode == 2 and "--extract" in refused.stderr


def test_continue_keeps_asking_in_the_same_stored_conversation(tiny_models: dict[str, Path]) -> None:
    model = ("--threads", "1", "--target", str(tiny_models["target"]), "--max-tokens", "6", "--json")
    first = run_duetto("ask", "the cat sat on a mat", "-c", *model)
    assert first.returncode == 0, first.stderr
    assert "no conversation yet: this one starts conversation" in first.stderr
    second = run_duetto("ask", "and then what happened", "-c", *model)
    assert second.returncode == 0, second.stderr
    first_answer, second_answer = json.loads(first.stdout), json.loads(second.stdout)

    assert first_answer["chat"] == second_answer["chat"], "-c continues the most recent conversation"
    assert second_answer["stats"]["prompt_tokens"] > first_answer["stats"]["prompt_tokens"] + 6, "with its history"
    by_id = run_duetto("ask", "one more", "--chat", str(first_answer["chat"]), *model)
    assert by_id.returncode == 0 and json.loads(by_id.stdout)["chat"] == first_answer["chat"]
    both = run_duetto("ask", "hi", "-c", "--chat", str(first_answer["chat"]), *model)
    assert both.returncode == 2 and "not both" in both.stderr
    assert "no conversation yet" not in second.stderr
    missing = run_duetto("ask", "hi", "--chat", "999", *model)
    assert missing.returncode == 1 and "no conversation 999" in missing.stderr
    assert run_duetto("users", "add", "ada").returncode == 0
    others = run_duetto("ask", "hi", "--chat", str(first_answer["chat"]), "--user", "ada", *model)
    assert others.returncode == 1 and "no conversation" in others.stderr, "another user's conversation"
