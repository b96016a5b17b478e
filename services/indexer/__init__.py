"""The indexer: the national catalogue of what the National Genome Database holds (metadata only)."""
