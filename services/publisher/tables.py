"""The publisher's tables: the lease that makes one replica the feeds' only writer.

The feeds themselves are the publisher's state (``writer.FeedWriter.restore``), and what
each spoke may see is rebuilt from the catalogue's and the access service's topics at every
start, so the database holds only who writes.
"""

from __future__ import annotations

from sqlalchemy import MetaData

from shared.database import lease_table

metadata = MetaData()

leases = lease_table(metadata, "publisher")
"""The lease on the spokes' feeds: their sequence numbers are one writer's count."""
