"""A real OAuth2 / OpenID Connect authorization server for the tests (django-oauth-toolkit in a
project of its own, served by gunicorn on loopback): authorization code with PKCE, refresh tokens
that rotate, RFC 7662 introspection for Dovecot's oauth2 passdb, consent that can be revoked."""

from .server import OAuthServer

__all__ = ["OAuthServer"]
