"""Adapters for RAG frameworks: `langchain` (extra `langchain`) and `llama_index` (extra `llamaindex`).

Each module imports its framework at import time, so import the one you use:
`from tessera.integrations.langchain import TesseraRetriever`.
"""
