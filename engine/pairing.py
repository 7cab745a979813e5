"""Can two models draft and verify together?

Draft-verify hands token ids from the draft to the target, so both must mean the
same thing by every id either can emit and must agree on the special tokens that
frame a chat. The rules follow llama.cpp's ``common_speculative_are_compatible``
(same tokenizer type, same BOS/EOS handling, vocabularies at most 128 tokens
apart) but are stricter: every shared id must be the same token text and type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from duetto.engine.gguf_file import open_gguf

MAX_VOCABULARY_SIZE_DIFFERENCE = 128
SPECIAL_TOKEN_KEYS = (
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.add_eos_token",
)
PROBLEMS_SHOWN = 5


@dataclass(frozen=True)
class PairCheck:
    draft: Path
    target: Path
    compatible: bool
    problems: list[str] = field(default_factory=list)
    draft_vocabulary_size: int = 0
    target_vocabulary_size: int = 0
    shared_vocabulary_size: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "draft": str(self.draft),
            "target": str(self.target),
            "compatible": self.compatible,
            "problems": self.problems,
            "draft_vocabulary_size": self.draft_vocabulary_size,
            "target_vocabulary_size": self.target_vocabulary_size,
            "shared_vocabulary_size": self.shared_vocabulary_size,
        }


def check_pair(draft_path: Path, target_path: Path) -> PairCheck:
    """Compare the two tokenizers; raises InvalidModelFile when either file is not a GGUF."""
    draft = open_gguf(draft_path).metadata
    target = open_gguf(target_path).metadata
    problems: list[str] = []

    for key in ("tokenizer.ggml.model", "tokenizer.ggml.pre"):
        draft_value, target_value = draft.get(key), target.get(key)
        if draft_value != target_value:
            problems.append(f"{key} differs: draft {draft_value!r}, target {target_value!r}")

    draft_tokens = draft.get("tokenizer.ggml.tokens", [])
    target_tokens = target.get("tokenizer.ggml.tokens", [])
    if not draft_tokens or not target_tokens:
        problems.append("a model has no tokenizer vocabulary in its metadata")
    shared = min(len(draft_tokens), len(target_tokens))
    size_difference = abs(len(draft_tokens) - len(target_tokens))
    if size_difference > MAX_VOCABULARY_SIZE_DIFFERENCE:
        problems.append(
            f"vocabulary sizes differ by {size_difference} (draft {len(draft_tokens)}, "
            f"target {len(target_tokens)}; at most {MAX_VOCABULARY_SIZE_DIFFERENCE} allowed)"
        )

    mismatched_ids = [index for index in range(shared) if draft_tokens[index] != target_tokens[index]]
    if mismatched_ids:
        examples = ", ".join(
            f"id {index}: {draft_tokens[index]!r} vs {target_tokens[index]!r}"
            for index in mismatched_ids[:PROBLEMS_SHOWN]
        )
        problems.append(f"{len(mismatched_ids)} of {shared} shared token ids are different tokens ({examples})")
    else:
        draft_types = draft.get("tokenizer.ggml.token_type", [0] * len(draft_tokens))[:shared]
        target_types = target.get("tokenizer.ggml.token_type", [0] * len(target_tokens))[:shared]
        type_mismatches = [index for index in range(shared) if draft_types[index] != target_types[index]]
        if type_mismatches:
            examples = ", ".join(f"{draft_tokens[index]!r}" for index in type_mismatches[:PROBLEMS_SHOWN])
            problems.append(f"{len(type_mismatches)} shared tokens have a different token type ({examples})")

    for key in SPECIAL_TOKEN_KEYS:
        draft_value, target_value = draft.get(key), target.get(key)
        if draft_value != target_value:
            problems.append(
                f"{key.removeprefix('tokenizer.ggml.')} differs: draft {draft_value}, target {target_value}"
            )

    return PairCheck(
        draft=draft_path,
        target=target_path,
        compatible=not problems,
        problems=problems,
        draft_vocabulary_size=len(draft_tokens),
        target_vocabulary_size=len(target_tokens),
        shared_vocabulary_size=shared,
    )
