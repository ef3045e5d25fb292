"""OpenID Connect clients (relying parties)."""
