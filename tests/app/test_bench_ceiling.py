"""The lookup-oracle ceiling's arithmetic (app/bench/ceiling.py), on schedules worked out by hand."""

import math

from duetto.app.bench.ceiling import copyable_lengths, fastest_schedule, lookup_ceiling

# A CPU-like cost table: index n is the time of a batch of n tokens; 0 is unused.
FLAT = [0.0, 1.0, 1.9, 2.8, 3.7, 4.6, 5.5]  # a batch costs almost as much as its single steps
CHEAP = [0.0, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5]  # a batch costs little more than one step


def test_copyable_lengths_count_runs_found_whole_in_the_prompt_or_earlier_in_the_reply() -> None:
    prompt = [1, 2, 3, 4, 0]
    reply = [9, 2, 3, 4, 9, 2, 3]
    # position 0: 9 is nowhere before; 1: "2 3 4" from the prompt (0 follows it there, not 9);
    # 4: "9 2 3" from the reply's own start; each run ends with the reply.
    assert copyable_lengths(prompt, reply) == [0, 3, 2, 1, 3, 2, 1]


def test_fastest_schedule_drafts_only_where_a_batch_is_cheaper_than_its_steps() -> None:
    lengths = [0, 3, 2, 1, 0]
    # Cheap batches: at 0 a plain step, then at 1 draft 3 (tokens 2-4) and verify them with the
    # target's own token after: 4 tokens for 1.3; the reply ends there. Total 1 + 1.3.
    seconds, drafted = fastest_schedule(lengths, CHEAP)
    assert math.isclose(seconds, 2.3) and drafted == 3
    # Flat batches: drafting 3 costs 3.7 for 4 tokens against 4.0 plain, still (just) cheaper.
    seconds, drafted = fastest_schedule(lengths, FLAT)
    assert math.isclose(seconds, 1 + 3.7) and drafted == 3


def test_fastest_schedule_never_drafts_what_cannot_be_copied() -> None:
    seconds, drafted = fastest_schedule([0, 0, 0], CHEAP)
    assert seconds == 3.0 and drafted == 0


def test_lookup_ceiling_is_a_speedup_over_the_steps_after_the_first_token() -> None:
    prompt = [5, 6, 7, 8, 9]
    reply = [1, 5, 6, 7, 8, 9]  # after the first token, the prompt copied whole
    speedup, drafted = lookup_ceiling(prompt, reply, CHEAP)
    # 5 steps after the first token, plain; the oracle drafts 5 6 7 8 right after it and the batch
    # of 5 (1.4) yields the target's 9 too.
    assert drafted == 4
    assert math.isclose(speedup, 5 / 1.4)
    assert lookup_ceiling(prompt, [1], CHEAP) == (1.0, 0)
