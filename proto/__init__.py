"""The gRPC API (package tessera.v1): .proto sources and generated stubs."""
