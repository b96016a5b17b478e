"""The reference profiles files are held to, by name: what the settings, the validator and the
synthetic test genome all mean by a profile, written once."""

from __future__ import annotations

GRCH38 = "GRCh38"
"""The build NGC requires of every region's files."""
SYNTHETIC_NAME = "synthetic-v1"
"""The embedded stack's profile: the project's synthetic genome (two contigs), which the demo
and the tests align to and hold files to."""
REFERENCE_PROFILES = (GRCH38, SYNTHETIC_NAME)
