"""A spoke: a region's verified mirror of the hub's catalogue (design.md section 11)."""
