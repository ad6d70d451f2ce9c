"""Input-token prices, to turn saved tokens into money in the report.

USD per million input tokens, list prices as published by the providers (November 2025).
Override or extend them in the pipeline config (``pricing.prices``); prices change, and the
table says which model a number refers to.
"""

from __future__ import annotations

from collections.abc import Mapping

from ragtrim.errors import ConfigError

INPUT_PRICE_PER_MILLION: dict[str, float] = {
    "gpt-4o": 2.50,
    "gpt-4o-mini": 0.15,
    "gpt-4.1": 2.00,
    "gpt-4.1-mini": 0.40,
    "gpt-4.1-nano": 0.10,
    "gpt-5": 1.25,
    "gpt-5-mini": 0.25,
    "o3": 2.00,
    "o4-mini": 1.10,
    "claude-sonnet-4": 3.00,
    "claude-haiku-4.5": 1.00,
    "gemini-2.5-pro": 1.25,
    "gemini-2.5-flash": 0.30,
}


def price_per_token(model: str, overrides: Mapping[str, float] | None = None) -> float:
    table = {**INPUT_PRICE_PER_MILLION, **(overrides or {})}
    if model not in table:
        raise ConfigError(
            f"pricing.model: no input price for {model!r}; known: {', '.join(sorted(table))}"
        )
    return table[model] / 1_000_000


def savings(
    naive_tokens: int, emitted_tokens: int, model: str, overrides: Mapping[str, float] | None = None
) -> dict:
    per_token = price_per_token(model, overrides)
    saved = max(naive_tokens - emitted_tokens, 0)
    return {
        "model": model,
        "usd_per_million_input": round(per_token * 1_000_000, 4),
        "naive_usd": naive_tokens * per_token,
        "emitted_usd": emitted_tokens * per_token,
        "saved_usd": saved * per_token,
        "saved_usd_per_1000_queries": saved * per_token * 1000,
    }
