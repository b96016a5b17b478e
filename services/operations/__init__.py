"""Operators' tools: replaying a service's topics and inspecting and redriving dead letters.

Not a service: nothing here runs as a process of the pipeline. The pure modules (``replay``,
``dlq``, ``table``) decide what to do; ``commands`` does it on the broker.
"""
