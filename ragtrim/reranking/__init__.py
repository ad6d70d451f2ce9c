"""Rerankers: stages that re-score the retriever's top candidates more precisely than retrieval."""
