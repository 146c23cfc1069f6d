"""Corpora on disk: vectors, payloads, FAISS indexes, filters and routing (see DESIGN.md)."""
