"""The distribution client: registries' HTTP API, auth, configuration, progress.

`Registry` (client.py) speaks the OCI distribution API to one host;
`auth` reads and writes auth.json/config.json and answers challenges;
`config` holds registries.conf, insecure/TLS decisions and mirrors;
`progress` reports copies. The `docker://` transport
(corral.image.transports.registry) builds image copies on top of these.
"""

from corral.registry.client.config import Endpoint, RegistryOptions
from corral.registry.client.errors import (
    InsecureRefused,
    RegistryError,
    RegistryNotFound,
    RegistryRefused,
    RegistryUnavailable,
    Unauthorized,
)

__all__ = ["Endpoint", "InsecureRefused", "RegistryError", "RegistryNotFound",
           "RegistryOptions", "RegistryRefused", "RegistryUnavailable", "Unauthorized"]
