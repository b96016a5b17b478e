"""The hub's publisher: what each spoke may see of the catalogue, signed, on its own compacted topic."""
