import json

from haystack import Document, Pipeline
from haystack.components.preprocessors import DocumentSplitter
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
from haystack.document_stores.in_memory import InMemoryDocumentStore

from ragtrim.integrations.haystack import RagtrimTrimmer

# The app you already have: split documents in a store, a BM25 retriever.
with open("corpora/kestrel/corpus.jsonl", encoding="utf-8") as corpus:
    docs = [
        Document(content=row["text"], meta={"title": row["title"]})
        for row in map(json.loads, corpus)
    ]
store = InMemoryDocumentStore()
store.write_documents(DocumentSplitter(split_by="word", split_length=200).run(docs)["documents"])

# Insert the trimmer after the retriever; connect its "prompt" to a generator, or its
# "messages" to a chat generator.
rag = Pipeline()
rag.add_component("retriever", InMemoryBM25Retriever(document_store=store, top_k=5))
rag.add_component("trimmer", RagtrimTrimmer(pipeline="ragtrim.yaml", budget=400))
rag.connect("retriever.documents", "trimmer.documents")

question = "When was Kestrel Relay 3.1 released?"
result = rag.run({"retriever": {"query": question}, "trimmer": {"query": question}})
for doc in result["trimmer"]["documents"]:  # offsets index into the source document's content
    print(doc.meta["ragtrim_citation"], doc.meta["title"], doc.meta["ragtrim_spans"])
prompt = result["trimmer"]["prompt"]

# YAML works too; Haystack 3 loads only modules you allow.
rag = Pipeline.loads(rag.dumps(), allowed_modules=["ragtrim.integrations.haystack"])
