"""Corral's registry server: the OCI distribution spec 1.1 over a filesystem root.

- `routes`: URL patterns and the validation of names, tags and digests
- `storage`: repositories, blobs, manifests, tags, referrers, upload sessions on disk
- `app`: the API handlers (`Registry.handle(Request) -> Response`), HTTP-free
- `httpd`: the HTTP/1.1 server (`RegistryServer`), TLS
- `auth`: basic auth (htpasswd with bcrypt, or one plain user)
- `token`: bearer-token auth (distribution's `auth: token:`, JWTs from a token server)
"""

from corral.registry.server.app import Registry, Request, Response
from corral.registry.server.auth import HtpasswdAuth, PlainAuth
from corral.registry.server.errors import RegistryError
from corral.registry.server.httpd import RegistryServer, parse_addr, tls_context
from corral.registry.server.storage import RegistryStorage
from corral.registry.server.token import TokenAuth

__all__ = [
    "HtpasswdAuth",
    "PlainAuth",
    "Registry",
    "RegistryError",
    "RegistryServer",
    "RegistryStorage",
    "Request",
    "Response",
    "TokenAuth",
    "parse_addr",
    "tls_context",
]
