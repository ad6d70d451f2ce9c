"""The benchmark harness: data-set loaders, metrics and optional LLM answer scoring.

It exists to prove the claim "fewer tokens, same answers" with numbers anyone can re-run:
real data sets with gold evidence, SQuAD/BEIR-compatible metrics and seeded confidence
intervals.
"""
