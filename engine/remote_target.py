"""A target model on a serving engine (llama-server, vLLM, llama-cpp-python's server) instead of
in this process: the same decoder interface, so that chats, ``ask`` and the chat app use it as
they use a local target.

The split follows Dolphin and SPA: the small model stays here (it renders and counts prompts with
the same vocabulary, reads documents and folds old turns), the large one is a shared service, and
a user's plugin never leaves the machine. duetto renders the chat template itself and sends the
prompt as token ids where the server takes them (llama-server's ``/completion``), else as the
exact text (``/v1/completions``), so the server answers what the same model answers here, and an
unchanged prompt prefix stays byte-identical for the server's prompt cache.

Speculative decoding is the server's own (llama-server ``--model-draft``, vLLM's): its counts come
back in llama-server's ``timings`` (``draft_n``, ``draft_n_accepted``) and are reported like
local ones. Failures are one line (RemoteError); a reply the server drops midway keeps what it
wrote, marked with the error in its stats.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx2

from duetto.engine.decoder import Decoder, DecodeSettings
from duetto.engine.errors import EngineError
from duetto.engine.model_session import ModelSession
from duetto.engine.reply_stream import TextPiece, Written
from duetto.engine.stats import ReplyStats
from duetto.engine.text_stream import TextStream

CONNECT_SECONDS = 5.0
"""How long reaching the server may take before it counts as unreachable."""
READ_SECONDS = 120.0
"""The longest silence between two pieces of a reply (a long prompt being read counts)."""
LLAMA_SERVER = "llama-server"
OPENAI = "openai"


class RemoteError(EngineError):
    """The server could not be used: unreachable, refused the key, timed out, spoke another dialect."""


@dataclass(frozen=True)
class RemoteEndpoint:
    """Where a remote target is and how to ask for it; the key itself stays in the environment."""

    name: str
    url: str
    """The server's root, without ``/v1``."""
    model: str | None = None
    """The model id to ask for, where the server serves several."""
    api_key_env: str | None = None

    def headers(self) -> dict[str, str]:
        if not self.api_key_env:
            return {}
        key = os.environ.get(self.api_key_env)
        if not key:
            raise RemoteError(f"{self.name}: set {self.api_key_env} to the server's API key")
        return {"Authorization": f"Bearer {key}"}


def normalized_url(url: str) -> str:
    """``url`` as a server root (``http://host:8080``): http(s) only, no ``/v1`` or trailing slash."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RemoteError(f"{url!r} is not an http(s) URL such as http://127.0.0.1:8080")
    path = parts.path.rstrip("/").removesuffix("/v1").rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{path}"


@dataclass
class ServerOffer:
    """What a server says it offers (``probe``)."""

    dialect: str
    models: list[str]
    context_length: int | None
    """Per request (llama-server's per-slot context); None where the server does not say."""
    slots: int | None = None
    """Requests llama-server serves at once (its ``--parallel``)."""
    model_file: str | None = None
    chat_template: str | None = None
    """The template the server would apply itself (duetto applies its own, the same model's)."""

    def as_dict(self) -> dict:
        return {"dialect": self.dialect, "models": self.models, "context_length": self.context_length,
                "slots": self.slots, "model_file": self.model_file}  # fmt: skip


def _client(endpoint: RemoteEndpoint, read_seconds: float = READ_SECONDS) -> httpx2.Client:
    return httpx2.Client(
        base_url=endpoint.url,
        headers=endpoint.headers(),
        timeout=httpx2.Timeout(read_seconds, connect=CONNECT_SECONDS),
    )


def _failure(endpoint: RemoteEndpoint, error: Exception) -> RemoteError:
    """One line for what went wrong talking to the server."""
    if isinstance(error, httpx2.ConnectError | httpx2.ConnectTimeout):
        return RemoteError(f"{endpoint.name}: cannot reach {endpoint.url} (is the server running?)")
    if isinstance(error, httpx2.TimeoutException):
        return RemoteError(f"{endpoint.name}: {endpoint.url} stopped answering (no data for {READ_SECONDS:.0f} s)")
    if isinstance(error, httpx2.HTTPStatusError):
        status = error.response.status_code
        if status in (401, 403):
            hint = f"check {endpoint.api_key_env}" if endpoint.api_key_env else "add one with --api-key-env"
            return RemoteError(f"{endpoint.name}: {endpoint.url} refused the API key (HTTP {status}); {hint}")
        return RemoteError(f"{endpoint.name}: {endpoint.url} answered HTTP {status}: {_error_text(error.response)}")
    if isinstance(error, httpx2.TransportError):
        return RemoteError(f"{endpoint.name}: the connection to {endpoint.url} broke ({type(error).__name__})")
    return RemoteError(f"{endpoint.name}: {endpoint.url}: {error}")


def _error_text(response: httpx2.Response) -> str:
    try:
        response.read()
        body = response.json()
        message = body.get("error", {}).get("message") if isinstance(body.get("error"), dict) else body.get("error")
        return str(message or body)[:200]
    except (ValueError, AttributeError, httpx2.StreamError):
        return response.text[:200] if not response.is_stream_consumed else "(no detail)"


def probe(endpoint: RemoteEndpoint) -> ServerOffer:
    """Reach the server and ask what it offers: its models, its dialect, its context length."""
    try:
        with _client(endpoint, read_seconds=30) as client:
            listed = client.get("/v1/models")
            listed.raise_for_status()
            entries = [entry for entry in listed.json().get("data", []) if isinstance(entry, dict)]
            models = [entry.get("id") for entry in entries]
            properties = client.get("/props")
            details = properties.json() if properties.status_code == 200 else {}
    except (httpx2.HTTPError, ValueError, AttributeError) as error:
        if isinstance(error, ValueError | AttributeError):
            raise RemoteError(f"{endpoint.name}: {endpoint.url} does not speak the OpenAI API (/v1/models)") from None
        raise _failure(endpoint, error) from None
    if endpoint.model is not None and endpoint.model not in models:
        raise RemoteError(f"{endpoint.name}: {endpoint.url} does not serve {endpoint.model!r}; it serves: "
                          + (", ".join(map(str, models)) or "nothing"))  # fmt: skip
    settings = details.get("default_generation_settings") if isinstance(details, dict) else None
    if not isinstance(settings, dict):  # vLLM lists each model's context as max_model_len; others say nothing
        served = [entry for entry in entries if entry.get("id") == endpoint.model] or entries[:1]
        context = served[0].get("max_model_len") if served else None
        return ServerOffer(OPENAI, models, context if isinstance(context, int) and context > 0 else None)
    context, slots = settings.get("n_ctx"), details.get("total_slots")
    model_path, template = details.get("model_path"), details.get("chat_template")
    return ServerOffer(
        LLAMA_SERVER, models, context if isinstance(context, int) else None, slots if isinstance(slots, int) else None,
        os.path.basename(model_path) if isinstance(model_path, str) else None,
        template if isinstance(template, str) else None,
    )  # fmt: skip


def server_tokens(endpoint: RemoteEndpoint, text: str) -> list[int] | None:
    """How llama-server tokenizes ``text`` (None where the server has no ``/tokenize``)."""
    try:
        with _client(endpoint, read_seconds=30) as client:
            response = client.post("/tokenize", json={"content": text, "add_special": False, "parse_special": True})
    except httpx2.HTTPError as error:
        raise _failure(endpoint, error) from None
    if response.status_code != 200:
        return None
    tokens = response.json().get("tokens")
    return (
        [token if isinstance(token, int) else token.get("id") for token in tokens] if isinstance(tokens, list) else None
    )


class RemoteTarget:
    """Stands where a local target's ModelSession stands for rendering and counting: the local
    small model's vocabulary (the same tokenizer: ``check_remote`` compares them) renders the
    chat template and counts tokens; the server's context length bounds the prompt. Nothing is
    cached here, so every reply sends its whole prompt and the server's prompt cache reuses the
    prefix it already holds."""

    def __init__(self, endpoint: RemoteEndpoint, local: ModelSession, offer: ServerOffer) -> None:
        self.endpoint = endpoint
        self.local = local
        self.offer = offer
        self.path = local.path
        self.context_length = offer.context_length or local.context_length
        self.tokens: list[int] = []

    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = False) -> list[int]:
        return self.local.tokenize(text, add_bos=add_bos, special=special)

    def chat_prompt_tokens(self, messages) -> list[int]:
        return self.local.chat_prompt_tokens(messages)

    def chat_prompt_around(self, messages, marker: str) -> tuple[list[int], list[int]]:
        return self.local.chat_prompt_around(messages, marker)

    def token_text(self, token: int) -> str:
        return self.local.token_text(token)

    def token_bytes(self, token: int) -> bytes:
        return self.local.token_bytes(token)

    def is_end_of_generation(self, token: int) -> bool:
        return self.local.is_end_of_generation(token)

    def truncate(self, length: int) -> None:
        """Nothing to forget here: the server keeps its own cache."""

    def common_prefix_length(self, tokens: Sequence[int]) -> int:
        return 0

    def close(self) -> None:
        self.local.close()


class RemoteDecoder:
    """The decoder interface (``generate``, ``reply``) over a remote target. ``draft`` is None:
    drafting, where there is any, is the server's."""

    def __init__(self, target: RemoteTarget) -> None:
        self.target = target
        self.draft = None
        self.endpoint = target.endpoint

    def generate(
        self,
        prompt_tokens: list[int],
        settings: DecodeSettings,
        should_cancel: Callable[[], bool] | None = None,
        on_prompt_progress: Callable[[int, int], None] | None = None,
        on_step=None,
        prediction: Sequence[int] = (),
        earlier: Sequence[int] = (),
        keep_reading=None,
    ) -> Iterator[Written | ReplyStats]:
        """Stream the server's reply as Written pieces, then one ReplyStats (its ``error`` set when
        the server failed after writing something: what it wrote is kept). ``prediction`` and
        ``earlier`` are drafting sources; the server drafts on its own. ``keep_reading`` is never
        met: a server hands out no hidden states (app/core asks for none here)."""
        if not prompt_tokens:
            raise EngineError("the prompt is empty")
        started = time.perf_counter()
        reply_text = TextStream()
        written_tokens = 0
        first_at: float | None = None
        timings: dict = {}
        finish = "stop"
        error_text: str | None = None
        try:
            path, request = self._request(prompt_tokens, settings)
            with _client(self.endpoint) as client, client.stream("POST", path, **request) as response:
                if response.status_code >= 400:
                    response.read()
                    raise httpx2.HTTPStatusError("refused", request=response.request, response=response)
                for event in _events(response):
                    if should_cancel is not None and should_cancel():
                        finish = "cancelled"
                        break
                    text, tokens, done, event_timings, stop_type = self._parse(event)
                    if event_timings:
                        timings = event_timings
                    count = max(len(tokens), 1 if text else 0)
                    if count or text:
                        first_at = first_at or time.perf_counter()
                        written_tokens += count
                        released = reply_text.push(text.encode("utf-8"))
                        yield Written(
                            pieces=(TextPiece(released, "target"),) if released else (),
                            token_ids=tuple(tokens),
                            sources=("target",) * len(tokens),
                            reply_tokens=written_tokens,
                        )
                    if done:
                        finish = stop_type
                        break
        except (httpx2.HTTPError, ValueError) as error:
            failure = _failure(self.endpoint, error) if isinstance(error, httpx2.HTTPError) else RemoteError(
                f"{self.endpoint.name}: {self.endpoint.url} sent something that is not a completion stream"
            )  # fmt: skip
            if not written_tokens:
                raise failure from None
            finish, error_text = "cancelled", str(failure)
        seconds = time.perf_counter() - started
        generation_seconds = seconds - ((first_at or started) - started)
        tokens = int(timings.get("predicted_n") or written_tokens)
        rate = timings.get("predicted_per_second") or (tokens / generation_seconds if generation_seconds > 0 else 0.0)
        yield ReplyStats(
            prompt_tokens=len(prompt_tokens),
            tokens=tokens,
            seconds=seconds,
            tokens_per_second=float(rate),
            ttft_seconds=(first_at or time.perf_counter()) - started,
            drafted=int(timings.get("draft_n") or 0),
            accepted=int(timings.get("draft_n_accepted") or 0),
            target_calls=0,
            mode=None,
            drafter="server",
            finish_reason=finish,
            prompt_read_tokens=int(timings.get("prompt_n", len(prompt_tokens))),
            server_cached_tokens=int(timings.get("cache_n") or 0),
            error=error_text,
        )

    reply = Decoder.reply
    """The local decoder's: it collects whatever ``self.generate`` streams."""

    def _request(self, prompt_tokens: list[int], settings: DecodeSettings) -> tuple[str, dict]:
        room = self.target.context_length - len(prompt_tokens)
        limit = max(1, min(settings.max_tokens, room))
        sampling = {"temperature": settings.temperature, "top_k": settings.top_k, "top_p": settings.top_p}
        if settings.seed is not None:
            sampling["seed"] = settings.seed
        if self.target.offer.dialect == LLAMA_SERVER:
            body = {"prompt": list(prompt_tokens), "n_predict": limit, "stream": True, "cache_prompt": True,
                    "return_tokens": True, **sampling}  # fmt: skip
            if self.endpoint.model:
                body["model"] = self.endpoint.model
            return "/completion", {"json": body}
        local = self.target.local.llm
        if prompt_tokens[0] == local.token_bos() and local.metadata.get("tokenizer.ggml.add_bos_token") != "false":
            prompt_tokens = prompt_tokens[1:]  # a text prompt gets the model's BOS from the server: not twice
        text = local.detokenize(list(prompt_tokens), special=True).decode("utf-8", errors="replace")
        # The penalties duetto never applies, off by name for the servers that apply them by default
        # (llama-cpp-python's repeat_penalty 1.1, vLLM's repetition_penalty), so that greedy is greedy.
        body = {"prompt": text, "max_tokens": limit, "stream": True, "repeat_penalty": 1.0,
                "repetition_penalty": 1.0, **sampling}  # fmt: skip
        body["model"] = self.endpoint.model or (self.target.offer.models[0] if self.target.offer.models else "")
        return "/v1/completions", {"json": body}

    def _parse(self, event: dict) -> tuple[str, list[int], bool, dict, str]:
        """(text, token ids, done, timings, finish reason) of one streamed event."""
        if self.target.offer.dialect == LLAMA_SERVER:
            done = bool(event.get("stop"))
            stop_type = "length" if event.get("stop_type") == "limit" else "stop"
            tokens = [token for token in event.get("tokens") or [] if isinstance(token, int)]
            return str(event.get("content") or ""), tokens, done, event.get("timings") or {}, stop_type
        choice = (event.get("choices") or [{}])[0]
        reason = choice.get("finish_reason")
        return str(choice.get("text") or ""), [], reason is not None, {}, "length" if reason == "length" else "stop"


def _events(response: httpx2.Response) -> Iterator[dict]:
    """The JSON payloads of a server-sent event stream (``data: ...`` lines; ``[DONE]`` ends it)."""
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue
        payload = line.removeprefix("data:").strip()
        if payload == "[DONE]":
            return
        event = json.loads(payload)
        if isinstance(event, dict) and "error" in event and not event.get("choices") and "content" not in event:
            detail = event["error"].get("message") if isinstance(event["error"], dict) else event["error"]
            raise ValueError(f"the server reported an error: {detail}")
        yield event
