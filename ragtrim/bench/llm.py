"""Optional answer-quality scoring with any OpenAI-compatible chat endpoint.

Never required: the core benchmark measures tokens and evidence coverage without a model. When
an endpoint is configured (``RAGTRIM_LLM_BASE_URL``, ``RAGTRIM_LLM_MODEL``, optionally
``RAGTRIM_LLM_API_KEY``), answers generated from trimmed and from full contexts can be scored
with SQuAD EM/F1. Standard library only (``urllib``), so it adds no dependency; temperature 0
so reruns are as repeatable as the server allows.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ragtrim.bench.metrics import exact_match, f1_score
from ragtrim.errors import ConfigError, InputError, RagtrimError

logger = logging.getLogger(__name__)

ENV_BASE_URL = "RAGTRIM_LLM_BASE_URL"
ENV_MODEL = "RAGTRIM_LLM_MODEL"
ENV_API_KEY = "RAGTRIM_LLM_API_KEY"

_RETRYABLE_STATUS = frozenset({408, 409, 429})
_BODY_SNIPPET = 300


class LLMError(RagtrimError):
    """The endpoint failed after the allowed retries, or answered something unusable."""


class OpenAICompatibleClient:
    """POSTs ``{base_url}/chat/completions`` and returns the first choice's message text.

    429, 408, 409, 5xx, connection errors and timeouts are retried up to ``max_retries`` times
    with exponential backoff (``backoff * 2**attempt`` seconds, or the server's numeric
    ``Retry-After``, capped at ``max_backoff``). Other errors and malformed responses fail at
    once: retrying them would only repeat the same answer.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        max_tokens: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got {base_url!r}")
        if not model:
            raise ConfigError("model must be a non-empty string")
        if timeout <= 0:
            raise ConfigError(f"timeout must be > 0 seconds, got {timeout}")
        if max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {max_retries}")
        if backoff < 0 or max_backoff < 0:
            raise ConfigError(f"backoff and max_backoff must be >= 0, got {backoff}, {max_backoff}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key or None
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_tokens = max_tokens
        self._sleep = sleep

    def __repr__(self) -> str:  # never show the key
        return f"OpenAICompatibleClient(base_url={self.base_url!r}, model={self.model!r})"

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **options: Any
    ) -> OpenAICompatibleClient:
        """Build from ``RAGTRIM_LLM_*``; the API key may be absent (local servers need none)."""
        env = os.environ if environ is None else environ
        missing = [name for name in (ENV_BASE_URL, ENV_MODEL) if not env.get(name)]
        if missing:
            raise ConfigError(
                f"LLM scoring needs the environment variable(s) {', '.join(missing)} "
                f"(and {ENV_API_KEY} if the endpoint requires a key)"
            )
        return cls(env[ENV_BASE_URL], env[ENV_MODEL], env.get(ENV_API_KEY), **options)

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def answer(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The model's reply to ``messages`` (``[{"role": ..., "content": ...}, ...]``)."""
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": _checked_messages(messages),
            "temperature": 0,
        }
        if self.max_tokens is not None:
            payload["max_tokens"] = self.max_tokens
        return _message_text(self._post(payload))

    def _request(self, body: bytes) -> urllib.request.Request:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return urllib.request.Request(self.url, data=body, headers=headers, method="POST")

    def _post(self, payload: Mapping[str, Any]) -> Any:
        body = json.dumps(payload).encode("utf-8")
        attempts = self.max_retries + 1
        last_problem = ""
        for attempt in range(attempts):
            retry_after: float | None = None
            try:
                with urllib.request.urlopen(self._request(body), timeout=self.timeout) as reply:
                    raw = reply.read()
                break
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:_BODY_SNIPPET].decode("utf-8", "replace")
                last_problem = f"HTTP {exc.code} from {self.url}: {detail}"
                if exc.code not in _RETRYABLE_STATUS and exc.code < 500:
                    raise LLMError(last_problem) from None
                retry_after = _seconds(exc.headers.get("Retry-After") if exc.headers else None)
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
                last_problem = f"cannot reach {self.url}: {reason}"
            if attempt + 1 < attempts:
                wait = self.backoff * 2**attempt if retry_after is None else retry_after
                delay = min(self.max_backoff, wait)
                logger.warning(
                    "%s; retry %d/%d in %.2fs", last_problem, attempt + 1, self.max_retries, delay
                )
                self._sleep(delay)
        else:
            raise LLMError(f"gave up after {attempts} attempt(s): {last_problem}")
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            snippet = raw[:_BODY_SNIPPET].decode("utf-8", "replace")
            raise LLMError(f"{self.url} returned a non-JSON body: {snippet!r}") from None


def _seconds(header: str | None) -> float | None:
    try:
        return max(float(header), 0.0) if header is not None else None
    except ValueError:  # an HTTP date: fall back to exponential backoff
        return None


def _checked_messages(messages: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    if isinstance(messages, (str, bytes)) or not messages:
        raise InputError("messages must be a non-empty list of {'role', 'content'} objects")
    checked = []
    for position, message in enumerate(messages):
        if not isinstance(message, Mapping) or not all(
            isinstance(message.get(key), str) for key in ("role", "content")
        ):
            raise InputError(f"messages[{position}] must have string 'role' and 'content'")
        checked.append({"role": message["role"], "content": message["content"]})
    return checked


def _message_text(response: Any) -> str:
    """``choices[0].message.content``, or an error naming what is missing."""
    try:
        content = response["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        shown = json.dumps(response)[:_BODY_SNIPPET]
        raise LLMError(f"response has no choices[0].message.content: {shown}") from None
    if not isinstance(content, str):
        raise LLMError(f"choices[0].message.content is {type(content).__name__}, not a string")
    return content


def score_answers(
    client: OpenAICompatibleClient, items: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Ask the model each item's ``messages`` and score the reply against its ``answers``.

    Returns one ``{"prediction", "em", "f1"}`` per item (plus ``"id"`` when the item has one),
    with SQuAD-v2 EM/F1: an item without answers expects an empty reply.
    """
    scored = []
    for position, item in enumerate(items):
        if "messages" not in item or "answers" not in item:
            raise InputError(f"items[{position}] needs 'messages' and 'answers'")
        answers = item["answers"]
        if isinstance(answers, str) or not all(isinstance(a, str) for a in answers):
            raise InputError(f"items[{position}]: 'answers' must be a list of strings")
        prediction = client.answer(item["messages"])
        result: dict[str, Any] = {
            "prediction": prediction,
            "em": exact_match(prediction, answers),
            "f1": f1_score(prediction, answers),
        }
        if "id" in item:
            result = {"id": item["id"], **result}
        scored.append(result)
    return scored
