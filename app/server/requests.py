"""Reading OpenAI request bodies into what the core runs, refusing what it cannot run.

Accepted as real clients send them: content as a string or an array of text parts, the
``developer`` role (a system message), ``max_tokens`` or ``max_completion_tokens``, ``stop`` as a
string or a list, ``temperature``, ``top_p``, ``seed``, ``n`` = 1, ``stream`` with
``stream_options.include_usage``, ``prediction`` (predicted outputs) and ``user``. Fields this
server does not know are ignored, as OpenAI's own API ignores them; fields it knows but cannot
honour (``n`` > 1, images, tools and tool results, ``logprobs``, a JSON ``response_format``) are
refused with a 400 that names them, so that a client never takes silence for an answer.

duetto's own fields travel in one ``duetto`` object, so that they never collide with OpenAI's:
``{"duetto": {"documents": ["report"], "mode": "exact", "drafter": "auto"}}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

from duetto.app.core.chat import SYSTEM_PROMPT
from duetto.app.core.settings import MAX_REPLY_TOKENS
from duetto.app.server.errors import invalid
from duetto.engine.decoder import DecodeSettings
from duetto.engine.drafters import DRAFTER_CHOICES
from duetto.engine.model_session import ChatMessage
from duetto.engine.stats import MODES

MAX_STOP_STRINGS = 4  # OpenAI's limit
OPENAI_MAX_TEMPERATURE = 2.0  # OpenAI's range (duetto's own settings go to 5)
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


@dataclass(frozen=True)
class CompletionRequest:
    """One chat or text completion, as the worker runs it."""

    kind: Literal["chat", "text"]
    model: str
    settings: DecodeSettings
    messages: tuple[ChatMessage, ...] = ()
    """Chat: the conversation, with duetto's system prompt first when the client sent none."""
    prompt: str = ""
    """Text: the raw prompt."""
    stream: bool = False
    include_usage: bool = False
    prediction: str | None = None
    user: str | None = None
    documents: tuple[str, ...] = ()

    @property
    def question(self) -> str:
        """The last user message: what a document answer answers."""
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "user"), "")


def chat_request(body: Any, base: DecodeSettings) -> CompletionRequest:
    """A ``/v1/chat/completions`` body, read and checked."""
    body = _object(body)
    messages = [_message(index, message) for index, message in enumerate(_list(body, "messages"))]
    if not messages:
        raise invalid("messages must hold at least one message", "messages")
    if not any(message["role"] == "user" for message in messages):
        raise invalid("messages must include a user message", "messages")
    if messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": SYSTEM_PROMPT})
    return CompletionRequest(
        kind="chat",
        messages=tuple(messages),
        prediction=_prediction(body.get("prediction")),
        documents=_documents(body),
        **_common(body, base, max_tokens_fields=("max_completion_tokens", "max_tokens")),
    )


def text_request(body: Any, base: DecodeSettings) -> CompletionRequest:
    """A ``/v1/completions`` body (a raw prompt, no chat template), read and checked."""
    body = _object(body)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise invalid("prompt must be a string (one prompt per request)", "prompt")
    if not prompt:
        raise invalid("prompt is empty", "prompt")
    if body.get("echo"):
        raise invalid("echo is not supported", "echo")
    if body.get("suffix"):
        raise invalid("suffix (fill-in-the-middle) is not supported", "suffix")
    if body.get("best_of") not in (None, 1):
        raise invalid("best_of must be 1", "best_of")
    return CompletionRequest(
        kind="text",
        prompt=prompt,
        prediction=_prediction(body.get("prediction")),
        **_common(body, base, max_tokens_fields=("max_tokens",)),
    )


def _common(body: dict, base: DecodeSettings, max_tokens_fields: tuple[str, ...]) -> dict[str, Any]:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("you must provide a model (see GET /v1/models)", "model")
    if body.get("n") not in (None, 1):
        raise invalid("n must be 1: one choice per request", "n")
    if body.get("logprobs") not in (None, False):
        raise invalid("logprobs are not supported", "logprobs")
    for field in ("tools", "functions"):
        if body.get(field):
            raise invalid(f"{field} (function calling) are not supported", field)
    if body.get("tool_choice") not in (None, "none", "auto"):
        raise invalid("tool_choice is not supported: duetto calls no tools", "tool_choice")
    response_format = body.get("response_format")
    if response_format not in (None, {"type": "text"}):
        raise invalid("response_format: only text replies are supported", "response_format")
    stream = body.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise invalid("stream must be true or false", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise invalid("stream_options must be an object", "stream_options")
    include_usage = bool(options.get("include_usage", False))
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise invalid("user must be a string", "user")
    return {
        "model": model,
        "settings": _settings(body, base, max_tokens_fields),
        "stream": bool(stream),
        "include_usage": include_usage,
        "user": user or None,
    }


def _settings(body: dict, base: DecodeSettings, max_tokens_fields: tuple[str, ...]) -> DecodeSettings:
    settings = base
    for field in max_tokens_fields:
        value = body.get(field)
        if value is not None:
            settings = replace(settings, max_tokens=_integer(value, field, 1, MAX_REPLY_TOKENS))
            break
    if body.get("temperature") is not None:
        settings = replace(
            settings, temperature=_number(body["temperature"], "temperature", 0.0, OPENAI_MAX_TEMPERATURE)
        )
    if body.get("top_p") is not None:
        top_p = _number(body["top_p"], "top_p", 0.0, 1.0)
        settings = replace(settings, top_p=top_p if top_p > 0 else base.top_p)
    if body.get("seed") is not None:
        settings = replace(settings, seed=_integer(body["seed"], "seed", -(2**63), 2**64 - 1) % 2**32)
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(item, str) for item in stops):
            raise invalid("stop must be a string or a list of strings", "stop")
        if len(stops) > MAX_STOP_STRINGS:
            raise invalid(f"stop takes at most {MAX_STOP_STRINGS} strings", "stop")
        settings = replace(settings, stop=tuple(item for item in stops if item))
    extension = _extension(body)
    mode = extension.get("mode")
    if mode is not None:
        if mode not in MODES:
            raise invalid(f"duetto.mode must be one of {', '.join(MODES)}", "duetto.mode")
        settings = replace(settings, mode=mode)
    drafter = extension.get("drafter")
    if drafter is not None:
        if drafter not in DRAFTER_CHOICES:
            raise invalid(f"duetto.drafter must be one of {', '.join(DRAFTER_CHOICES)}", "duetto.drafter")
        settings = replace(settings, drafter=drafter)
    return settings


def _message(index: int, message: Any) -> ChatMessage:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise invalid(f"{where} must be an object with a role and content", where)
    role = message.get("role")
    if role == "tool" or role == "function":
        raise invalid(f"{where}: tool results are not supported", f"{where}.role")
    if not isinstance(role, str) or role not in ROLES:
        raise invalid(f"{where}.role must be one of {', '.join(ROLES)}", f"{where}.role")
    content = message.get("content")
    if content is None and role == "assistant":
        content = ""
    return {"role": ROLES[role], "content": _text(content, f"{where}.content")}


def _text(content: Any, where: str) -> str:
    """A string, or the text of an array of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for index, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = repr(part.get("type"))[:40] if isinstance(part, dict) else type(part).__name__
                raise invalid(f"{where}[{index}]: only text parts are supported, not {kind}", f"{where}[{index}]")
            texts.append(part["text"])
        return "".join(texts)
    raise invalid(f"{where} must be a string or an array of text parts", where)


def _prediction(prediction: Any) -> str | None:
    if prediction is None:
        return None
    if not isinstance(prediction, dict) or prediction.get("type") != "content":
        raise invalid('prediction must be {"type": "content", "content": ...}', "prediction")
    return _text(prediction.get("content"), "prediction.content") or None


def _documents(body: dict) -> tuple[str, ...]:
    documents = _extension(body).get("documents", [])
    if isinstance(documents, str):
        documents = [documents]
    if not isinstance(documents, list) or not all(isinstance(name, str) and name for name in documents):
        raise invalid("duetto.documents must be a list of document names", "duetto.documents")
    return tuple(dict.fromkeys(documents))


def _extension(body: dict) -> dict:
    extension = body.get("duetto") or {}
    if not isinstance(extension, dict):
        raise invalid("duetto must be an object of duetto's own options", "duetto")
    return extension


def _object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    return body


def _list(body: dict, field: str) -> list:
    value = body.get(field)
    if not isinstance(value, list):
        raise invalid(f"{field} must be an array", field)
    return value


def _integer(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise invalid(f"{field} must be an integer", field)
    if not low <= value <= high:
        raise invalid(f"{field} must be between {low} and {high}, not {value}", field)
    return value


def _number(value: Any, field: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise invalid(f"{field} must be a number", field)
    if not low <= value <= high:
        raise invalid(f"{field} must be between {low:g} and {high:g}, not {value:g}", field)
    return float(value)
