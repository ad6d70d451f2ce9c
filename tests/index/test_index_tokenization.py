import sys
import threading
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragtrim.errors import ConfigError, MissingDependencyError
from ragtrim.index import tokenization
from ragtrim.index.tokenization import ENGLISH_STOP_WORDS, Tokenizer, split_words

PLAIN = Tokenizer(stopwords=None, stemmer=None)


def test_default_removes_stop_words_then_stems():
    assert Tokenizer().tokenize("The Running studies of cats") == ["run", "studi", "cat"]


def test_plain_split_casefolds_and_splits_on_non_word_characters():
    assert PLAIN.tokenize("T-cell_receptor binds 1,000 IL-2 (p<0.05)!") == [
        "t",
        "cell_receptor",
        "binds",
        "1",
        "000",
        "il",
        "2",
        "p",
        "0",
        "05",
    ]


def test_casefold_not_just_lower():
    assert PLAIN.tokenize("STRASSE Straße") == ["strasse", "strasse"]


def test_nfkc_folds_full_width_letters_and_ligatures():
    assert PLAIN.tokenize("Ｆｕｌｌ ﬁsh x²") == ["full", "fish", "x2"]


def test_decomposed_accents_stay_inside_the_word():
    decomposed = unicodedata.normalize("NFD", "café naïve")
    assert PLAIN.tokenize(decomposed) == ["café", "naïve"]


def test_cjk_ideographs_kana_and_hangul_are_single_character_tokens():
    assert PLAIN.tokenize("東京に住む") == ["東", "京", "に", "住", "む"]
    assert PLAIN.tokenize("カタ・カナ") == ["カ", "タ", "カ", "ナ"]  # the middle dot is punctuation
    assert PLAIN.tokenize("한국어 텍스트") == ["한", "국", "어", "텍", "스", "트"]
    assert PLAIN.tokenize("iPhone価格は10万円") == ["iphone", "価", "格", "は", "10", "万", "円"]


def test_cjk_extension_b_character_is_one_token():
    assert PLAIN.tokenize("𠀋abc") == ["𠀋", "abc"]


def test_lowercase_false_keeps_case_and_stop_words_match_exactly():
    tokenizer = Tokenizer(lowercase=False, stemmer=None)
    assert tokenizer.tokenize("The cat and The Dog") == ["The", "cat", "The", "Dog"]


def test_min_token_length_drops_short_words_but_keeps_cjk_characters():
    tokenizer = Tokenizer(stopwords=None, stemmer=None, min_token_length=2)
    assert tokenizer.tokenize("x ray 東 b12") == ["ray", "東", "b12"]


def test_stop_word_list_is_lucenes_english_set():
    assert len(ENGLISH_STOP_WORDS) == 33
    assert {"the", "a", "of", "not", "no", "with", "will", "their"} <= ENGLISH_STOP_WORDS
    assert "from" not in ENGLISH_STOP_WORDS
    assert Tokenizer(stemmer=None).tokenize("no cure is not the answer") == ["cure", "answer"]


def test_stemming_without_stop_words():
    assert Tokenizer(stopwords=None).tokenize("the studies were running") == [
        "the",
        "studi",
        "were",
        "run",
    ]


def test_tokenize_many_matches_tokenize():
    texts = ["Cats running", "", "東京 studies", "the of and"]
    tokenizer = Tokenizer()
    assert tokenizer.tokenize_many(texts) == [tokenizer.tokenize(t) for t in texts]
    assert tokenizer.tokenize("") == []
    assert tokenizer.tokenize("the of and") == []


def test_stem_cache_fills_and_overflow_still_stems_correctly(monkeypatch):
    tokenizer = Tokenizer(stopwords=None)
    assert tokenizer.tokenize("running runs") == ["run", "run"]
    assert tokenizer._stems == {"running": "run", "runs": "run"}
    monkeypatch.setattr(tokenization, "STEM_CACHE_SIZE", 3)
    assert tokenizer.tokenize("studies running ponies") == ["studi", "run", "poni"]
    assert len(tokenizer._stems) == 2


def test_equal_configs_compare_equal_and_hash_equal():
    a, b = Tokenizer(), Tokenizer()
    a.tokenize("running")
    assert a == b and hash(a) == hash(b)
    assert a != Tokenizer(stemmer=None)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"stopwords": "french"}, "Tokenizer.stopwords"),
        ({"stemmer": "porter"}, "Tokenizer.stemmer"),
        ({"min_token_length": 0}, "Tokenizer.min_token_length"),
        ({"min_token_length": True}, "Tokenizer.min_token_length"),
        ({"lowercase": "yes"}, "Tokenizer.lowercase"),
    ],
)
def test_invalid_config_names_the_field(params, field):
    with pytest.raises(ConfigError, match=field):
        Tokenizer(**params)


def test_missing_pystemmer_names_the_dependency(monkeypatch):
    monkeypatch.setitem(sys.modules, "Stemmer", None)
    errors = []

    def build() -> None:  # a fresh thread has no cached stemmer object
        try:
            Tokenizer()
        except MissingDependencyError as exc:
            errors.append(exc)

    thread = threading.Thread(target=build)
    thread.start()
    thread.join()
    assert len(errors) == 1 and "PyStemmer" in str(errors[0])
    assert Tokenizer(stemmer=None).tokenize("running") == ["running"]


def test_threads_get_identical_results():
    tokenizer = Tokenizer()
    text = "Running studies of the nervous systems in mice " * 20
    expected = tokenizer.tokenize(text)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(tokenizer.tokenize(text))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected] * 4


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60))
def test_plain_tokens_are_nonempty_word_substrings_of_the_normalised_text(text):
    normalised = unicodedata.normalize("NFKC", text).casefold()
    tokens = PLAIN.tokenize(text)
    assert tokens == split_words(text)
    position = 0
    for token in tokens:
        assert token[0].isalnum() or token[0] == "_"
        assert all(c.isalnum() or c == "_" or unicodedata.category(c)[0] == "M" for c in token)
        found = normalised.find(token, position)
        assert found >= 0
        position = found + len(token)


def test_combining_marks_stay_inside_words():
    assert PLAIN.tokenize("हिन्दी भाषा") == ["हिन्दी", "भाषा"]
    assert PLAIN.tokenize("k\u0353y z") == ["k\u0353y", "z"]  # no precomposed form exists
    assert PLAIN.tokenize("\u0301abc") == ["abc"]


def test_ascii_and_unicode_paths_agree_on_ascii_words():
    text = "Mixed ASCII words_1 and 2x"
    assert PLAIN.tokenize(text) == PLAIN.tokenize(text + " é")[:-1]
