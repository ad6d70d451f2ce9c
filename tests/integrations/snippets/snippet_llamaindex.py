import json

from llama_index.core import Document, SimpleKeywordTableIndex
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine

from ragtrim.integrations.llamaindex import RagtrimPostprocessor, RagtrimRetriever

# The app you already have: an index over your documents and an LLM.
with open("corpora/kestrel/corpus.jsonl", encoding="utf-8") as corpus:
    docs = [
        Document(text=row["text"], id_=row["id"], metadata={"title": row["title"]})
        for row in map(json.loads, corpus)
    ]
llm = MockLLM()  # stands in for your LLM (it answers with the prompt it was sent)
index = SimpleKeywordTableIndex.from_documents(docs, llm=llm)

# 1. Trim the retrieved nodes to the budget: one postprocessor in your query engine.
trim = RagtrimPostprocessor(pipeline="ragtrim.yaml", budget=400)  # `ragtrim config > ragtrim.yaml`
engine = index.as_query_engine(llm=llm, node_postprocessors=[trim])
question = "What are FieldKit support's opening hours on Saturdays?"
response = engine.query(question)
for hit in response.source_nodes:  # offsets index into the source node's text
    meta = hit.node.metadata
    print(meta["ragtrim_citation"], hit.node.ref_doc_id, meta["ragtrim_spans"])

# 2. Or retrieve from a ragtrim index (`ragtrim ingest corpora/kestrel/corpus.jsonl --index idx`).
engine = RetrieverQueryEngine.from_args(RagtrimRetriever("idx", budget=400), llm=llm)
response_from_index = engine.query(question)
