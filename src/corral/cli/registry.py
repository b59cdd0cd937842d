"""`corral registry serve`: run Corral's registry (the OCI distribution API) on a
directory. Loopback by default; `--addr 0.0.0.0:5000` to listen everywhere.

    corral registry serve --addr 127.0.0.1:5000 --root /srv/registry \\
        [--htpasswd FILE | --user USER:PASSWORD | --token-realm URL --token-service NAME
         --token-issuer NAME --token-rootcertbundle PEM] [--tls-cert CERT --tls-key KEY]

Prints `listening on http(s)://HOST:PORT` once the socket is bound (with
`--addr HOST:0` the kernel picks the port), then serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from corral.cli.errors import UsageError

DEFAULT_ADDR = "127.0.0.1:5000"


def register(commands: Any) -> None:
    registry = commands.add_parser("registry", help="run a registry server")
    sub = registry.add_subparsers(dest="registry_command", metavar="COMMAND",
                                  parser_class=type(registry))
    sub.required = True
    serve = sub.add_parser("serve", help="serve the OCI distribution API from a directory")
    serve.add_argument("--addr", default=DEFAULT_ADDR,
                       help=f"HOST:PORT to listen on (default {DEFAULT_ADDR})")
    serve.add_argument("--root", dest="registry_root",
                       help="storage directory (default <corral root>/registry)")
    auth = serve.add_mutually_exclusive_group()
    auth.add_argument("--htpasswd", help="require basic auth against this htpasswd file "
                      "(bcrypt entries)")
    auth.add_argument("--user", help="require basic auth as USER:PASSWORD")
    auth.add_argument("--token-realm", metavar="URL",
                      help="require bearer tokens from this token server (distribution's "
                           "auth: token:; with --token-service, --token-issuer, "
                           "--token-rootcertbundle)")
    serve.add_argument("--token-service", metavar="NAME", help="the tokens' audience")
    serve.add_argument("--token-issuer", metavar="NAME", help="the tokens' issuer")
    serve.add_argument("--token-rootcertbundle", metavar="PEM",
                       help="certificates whose keys sign the tokens")
    serve.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    serve.add_argument("--tls-key", help="the certificate's private key (PEM)")
    serve.add_argument("--realm", default="corral-registry", help="basic auth realm")
    serve.add_argument("--access-log", action="store_true", help="log every request to stderr")
    serve.set_defaults(func=_serve)


def _serve(args: argparse.Namespace, ctx: Any) -> int:
    from corral.registry.server import (
        HtpasswdAuth,
        PlainAuth,
        RegistryServer,
        TokenAuth,
        tls_context,
    )

    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    token_args = (args.token_service, args.token_issuer, args.token_rootcertbundle)
    if (args.token_realm is None) != all(a is None for a in token_args) \
            or (args.token_realm is not None and not all(token_args)):
        raise UsageError("--token-realm, --token-service, --token-issuer and "
                         "--token-rootcertbundle go together")
    auth: Any = None
    if args.token_realm:
        auth = TokenAuth(args.token_realm, args.token_service, args.token_issuer,
                         args.token_rootcertbundle)
    elif args.htpasswd:
        auth = HtpasswdAuth(args.htpasswd, args.realm)
    elif args.user:
        auth = PlainAuth.from_spec(args.user, args.realm)
    tls = tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    root = args.registry_root or str(ctx.root / "registry")
    try:
        server = RegistryServer(root, args.addr, auth=auth, tls=tls, access_log=args.access_log)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.addr}: {exc.strerror or exc}") from None

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(f"listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    print("registry stopped", file=sys.stderr)
    return 0
