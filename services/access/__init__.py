"""The access service: discovery, requests, owner decisions, revocation, expiry, the audit ledger."""
