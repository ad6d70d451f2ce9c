import json

from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_community.retrievers import BM25Retriever
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.runnables import RunnablePassthrough
from langchain_text_splitters import RecursiveCharacterTextSplitter

from ragtrim.integrations.langchain import RagtrimCompressor, RagtrimPrompt, RagtrimRetriever
from ragtrim.pipeline import Pipeline

# The app you already have: documents split into chunks, a BM25 retriever, a chat model.
with open("corpora/kestrel/corpus.jsonl", encoding="utf-8") as corpus:
    docs = [
        Document(page_content=row["text"], metadata={"title": row["title"]})
        for row in map(json.loads, corpus)
    ]
splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200, add_start_index=True)
bm25 = BM25Retriever.from_documents(splitter.split_documents(docs), k=4)
llm = FakeListChatModel(responses=["Port 8470 [1]."])  # stands in for your chat model

# 1. Trim what your retriever returns: same retriever interface, a fraction of the tokens.
pipe = Pipeline.from_config("ragtrim.yaml")  # `ragtrim config > ragtrim.yaml`; no index needed
retriever = ContextualCompressionRetriever(
    base_retriever=bm25, base_compressor=RagtrimCompressor(pipeline=pipe, budget=400)
)
question = "Which port does the Relay REST admin API listen on by default?"
trimmed = retriever.invoke(question)
for doc in trimmed:  # one per cited source; spans index into the chunk (+ start_index)
    print(doc.metadata["ragtrim_citation"], doc.metadata["title"], doc.metadata["ragtrim_spans"])

# 2. Or let ragtrim write the prompt of an LCEL chain (system + user messages, within budget).
chain = (
    {"context": bm25, "question": RunnablePassthrough()}
    | RagtrimPrompt(pipeline=pipe, budget=400)
    | llm
)
answer = chain.invoke(question).content

# 3. Or retrieve from a ragtrim index (`ragtrim ingest corpora/kestrel/corpus.jsonl --index idx`).
from_index = RagtrimRetriever(pipeline="idx", budget=400).invoke(question)
