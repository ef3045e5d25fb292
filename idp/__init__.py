"""A virtual waiting room that is an OpenID Connect identity provider."""

__version__ = "0.1.0"
