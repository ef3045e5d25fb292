"""Templates and static assets of the waiting pages (no code: the service renders them)."""
