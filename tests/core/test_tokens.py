import subprocess
import sys
import textwrap

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from ragtrim.errors import ConfigError
from ragtrim.tokens import (
    TokenCounter,
    encoding_for_model,
    find_rank_file,
    get_counter,
    load_encoding,
)


def test_both_encodings_load_with_network_disabled():
    """A fresh interpreter whose sockets all fail must still load both encodings."""
    script = textwrap.dedent(
        """
        import socket
        def refuse(*args, **kwargs):
            raise OSError("network disabled in this test")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        from ragtrim.tokens import TokenCounter
        for name in ("o200k_base", "cl100k_base"):
            print(name, TokenCounter(name).count("Offline token counting works."))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "TMPDIR": "/nonexistent-tmp"},
    )
    assert out.returncode == 0, out.stderr
    assert "o200k_base 5" in out.stdout and "cl100k_base 5" in out.stdout


def test_rank_files_are_found_locally():
    assert find_rank_file("o200k_base") is not None
    assert find_rank_file("cl100k_base") is not None


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("gpt-4.1-nano", "o200k_base"),
    ],
)
def test_model_names_map_to_encodings(model, encoding):
    assert encoding_for_model(model) == encoding
    assert TokenCounter(model=model).name == encoding


def test_unknown_model_is_a_config_error():
    with pytest.raises(ConfigError, match="tokenizer.model"):
        encoding_for_model("my-private-llm")


def test_counts_equal_tiktoken_exactly():
    text = "Kestrel Relay 3.4 raised the default max message size to 4 MiB. 日本語 😀"
    for name in ("o200k_base", "cl100k_base"):
        assert get_counter(name).count(text) == len(load_encoding(name).encode_ordinary(text))
    assert isinstance(load_encoding("o200k_base"), tiktoken.Encoding)


def test_user_counter_callable_and_hf_like_tokenizer():
    words = TokenCounter(counter=lambda s: len(s.split()), name="words")
    assert words.count("one two three") == 3 and words.name == "words"

    class FakeHF:
        name_or_path = "fake-hf"

        def encode(self, text, add_special_tokens=True):
            return list(text) + ([0, 0] if add_special_tokens else [])

    hf = TokenCounter(counter=FakeHF())
    assert hf.count("abcd") == 4 and hf.name == "fake-hf"
    assert hf.truncate("abcdef", 3) == "abc"


def test_only_one_source_of_counts():
    with pytest.raises(ConfigError):
        TokenCounter("o200k_base", model="gpt-4o")


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=0, max_size=300), st.integers(min_value=0, max_value=60))
def test_truncate_is_a_prefix_within_the_limit(text, limit):
    counter = get_counter("o200k_base")
    prefix = counter.truncate(text, limit)
    assert text.startswith(prefix)
    assert counter.count(prefix) <= limit
    if counter.count(text) <= limit:
        assert prefix == text


def test_truncation_keeps_lone_surrogates_verbatim():
    counter = get_counter()
    text = "Relay keeps \ud800 data for seven days " * 20
    prefix = counter.truncate(text, 12)
    assert prefix and text.startswith(prefix)
    assert "\ufffd" not in prefix and counter.count(prefix) <= 12
