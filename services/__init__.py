"""Process boundary: CLI, quick start, and later the gRPC server, client, batch jobs and RAG adapters."""
