"""Drop-in adapters for LangChain, LlamaIndex and Haystack, one module each.

Import the module for your framework (``ragtrim.integrations.langchain``,
``ragtrim.integrations.llamaindex``, ``ragtrim.integrations.haystack``); each one needs its
extra (``pip install 'ragtrim[langchain]'`` ...) and checks the installed framework version on
import. This package itself imports nothing, so ``import ragtrim`` never loads a framework.

Every adapter works in both directions:

- trim what the app already retrieved: framework documents -> filter, rerank, dedup, pack ->
  framework documents, one per cited source, no ragtrim index needed;
- retrieve from a ragtrim index: a framework retriever over ``Pipeline.run``.

Output documents carry their citation in metadata (see ``_common.CITATION_KEYS``).
"""
