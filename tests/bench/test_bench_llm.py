"""The client against a real HTTP server on 127.0.0.1 that speaks the OpenAI chat API."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ragtrim.bench.llm import LLMError, OpenAICompatibleClient, score_answers
from ragtrim.errors import ConfigError, InputError


def _completion(text: str) -> dict:
    return {"id": "x", "object": "chat.completion", "choices": [{"message": {"content": text}}]}


class FakeServer:
    """Replies from a script of (status, body, headers); records every request it got."""

    def __init__(self) -> None:
        self.script: list[tuple[int, object, dict[str, str]]] = []
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers["Content-Length"])
                server.requests.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": json.loads(self.rfile.read(length)),
                    }
                )
                status, body, headers = server.script.pop(0)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def reply(self, status: int, body: object, **headers: str) -> None:
        self.script.append((status, body, headers))


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    thread = threading.Thread(target=fake.httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield fake
    fake.httpd.shutdown()
    fake.httpd.server_close()
    thread.join(5)


def _client(server: FakeServer, **options) -> OpenAICompatibleClient:
    sleeps: list[float] = []
    client = OpenAICompatibleClient(
        server.url + "/", "tiny-model", "sk-test", timeout=5, sleep=sleeps.append, **options
    )
    client.sleeps = sleeps
    return client


MESSAGES = [{"role": "user", "content": "Who won Super Bowl 50?"}]


def test_answer_posts_chat_completion(server):
    server.reply(200, _completion("Denver Broncos"))
    client = _client(server)
    assert client.answer(MESSAGES) == "Denver Broncos"
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["body"] == {"model": "tiny-model", "messages": MESSAGES, "temperature": 0}
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    assert request["headers"]["Content-Type"] == "application/json"
    assert "sk-test" not in repr(client)


def test_500_then_200_is_retried_with_backoff(server):
    server.reply(500, {"error": "overloaded"})
    server.reply(200, _completion("CBS"))
    client = _client(server, backoff=0.5)
    assert client.answer(MESSAGES) == "CBS"
    assert len(server.requests) == 2
    assert client.sleeps == [0.5]


def test_429_honours_retry_after_and_retries_are_bounded(server):
    server.reply(429, {"error": "slow down"}, **{"Retry-After": "2"})
    for _ in range(3):
        server.reply(503, {"error": "unavailable"})
    client = _client(server, max_retries=3, backoff=1.0, max_backoff=3.0)
    with pytest.raises(LLMError, match=r"gave up after 4 attempt\(s\): HTTP 503 .*unavailable"):
        client.answer(MESSAGES)
    assert len(server.requests) == 4
    assert client.sleeps == [2.0, 2.0, 3.0]  # Retry-After, then 1*2**1, then min(3, 1*2**2)


def test_client_error_is_not_retried(server):
    server.reply(400, {"error": "bad model"})
    with pytest.raises(LLMError, match="HTTP 400 from .*bad model"):
        _client(server).answer(MESSAGES)
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"choices": []}, "no choices\\[0\\].message.content"),
        ({"choices": [{"message": {"content": None}}]}, "content is NoneType"),
        (b"<html>oops</html>", "non-JSON body: '<html>oops</html>'"),
    ],
)
def test_malformed_response_is_an_error(server, body, problem):
    server.reply(200, body)
    with pytest.raises(LLMError, match=problem):
        _client(server).answer(MESSAGES)
    assert len(server.requests) == 1


def test_unreachable_server_is_retried_then_fails():
    client = OpenAICompatibleClient(
        "http://127.0.0.1:9", "m", timeout=2, max_retries=1, sleep=lambda s: None
    )
    with pytest.raises(LLMError, match="gave up after 2 attempt.*cannot reach"):
        client.answer(MESSAGES)


def test_from_env_names_missing_variables():
    with pytest.raises(ConfigError, match="RAGTRIM_LLM_BASE_URL, RAGTRIM_LLM_MODEL"):
        OpenAICompatibleClient.from_env({})
    with pytest.raises(ConfigError, match="variable\\(s\\) RAGTRIM_LLM_MODEL "):
        OpenAICompatibleClient.from_env({"RAGTRIM_LLM_BASE_URL": "http://127.0.0.1:1"})
    client = OpenAICompatibleClient.from_env(
        {"RAGTRIM_LLM_BASE_URL": "http://127.0.0.1:1/v1", "RAGTRIM_LLM_MODEL": "m"}
    )
    assert (client.url, client.model, client.api_key) == (
        "http://127.0.0.1:1/v1/chat/completions",
        "m",
        None,
    )
    with pytest.raises(ConfigError, match="must start with http"):
        OpenAICompatibleClient("127.0.0.1:1", "m")


def test_invalid_messages():
    client = OpenAICompatibleClient("http://127.0.0.1:1", "m")
    with pytest.raises(InputError, match="non-empty list"):
        client.answer([])
    with pytest.raises(InputError, match=r"messages\[0\] must have string 'role' and 'content'"):
        client.answer([{"role": "user"}])


def test_score_answers(server):
    server.reply(200, _completion("The Denver Broncos."))
    server.reply(200, _completion("Broncos won"))
    server.reply(200, _completion(""))
    no_key = OpenAICompatibleClient(server.url, "tiny-model", timeout=5)
    items = [
        {"id": "s1", "messages": MESSAGES, "answers": ["Denver Broncos"]},
        {"messages": MESSAGES, "answers": ["Denver Broncos"]},
        {"messages": MESSAGES, "answers": []},  # unanswerable: the empty reply is right
    ]
    scored = score_answers(no_key, items)
    assert scored[0] == {"id": "s1", "prediction": "The Denver Broncos.", "em": 1.0, "f1": 1.0}
    # [broncos, won] vs [denver, broncos]: P = 1/2, R = 1/2, F1 = 0.5
    assert scored[1] == {"prediction": "Broncos won", "em": 0.0, "f1": 0.5}
    assert scored[2] == {"prediction": "", "em": 1.0, "f1": 1.0}
    assert "Authorization" not in server.requests[0]["headers"]
    with pytest.raises(InputError, match=r"items\[0\] needs 'messages' and 'answers'"):
        score_answers(no_key, [{"messages": MESSAGES}])
