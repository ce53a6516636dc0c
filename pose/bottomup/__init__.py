"""Bottom-up multi-person pose: Associative Embedding and Coupled Embedding (docs/bottomup.md)."""
