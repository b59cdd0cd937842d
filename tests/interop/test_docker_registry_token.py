"""corral login/push/pull against Debian's docker-registry with token auth (`auth: token:`).

The registry trusts a throwaway signing certificate of the token server in
tests/support/token_server.py (a JWT per request, RS256, `x5c` header), so the
whole WWW-Authenticate flow is the real one: the registry answers 401 with
`Bearer realm=...,service=...,scope=...`, corral asks the token server for
exactly the scopes it needs (basic credentials when logged in), and the
registry checks the token's issuer, audience, signature and `access` list.
Anonymous users get pull-only tokens; alice gets what she asks for.
"""

from __future__ import annotations

import os

import pytest
from tests.interop.test_docker_registry import (  # noqa: F401 - fixtures
    Corral,
    _requirements,
    env,
    stores,
)
from tests.support.docker_registry import DockerRegistry
from tests.support.token_server import OPENSSL, TokenServer

pytestmark = pytest.mark.interop


@pytest.fixture
def token_registry(tmp_path):
    if not os.path.exists(OPENSSL):
        pytest.skip("needs openssl (the token signer)")
    with TokenServer(tmp_path / "token", users={"alice": "s3cret"}) as tokens, \
            DockerRegistry(tmp_path / "registry", token=tokens) as reg:
        yield reg, tokens


def test_bearer_login_push_pull_with_scopes(token_registry, stores: list[Corral]) -> None:  # noqa: F811
    reg, tokens = token_registry
    a, b = stores
    a("image", "busybox", "bb")
    name = f"{reg.host}/test/busybox:1"

    # anonymous tokens are pull-only: the push is refused in one line
    refused = a("push", "--retry", "0", "bb", name, check=False)
    assert refused.returncode == 125 and "Traceback" not in refused.err
    assert "corral login" in refused.err
    assert (None, ["repository:test/busybox:pull,push"], False) in tokens.requests

    bad = a("login", "-u", "alice", "-p", "wrong", reg.host, check=False)
    assert bad.returncode != 0 and "invalid username/password" in bad.err
    assert a("login", "-u", "alice", "-p", "s3cret", reg.host).out == "Login Succeeded!\n"
    assert tokens.requests[-1][0] == "alice" and tokens.requests[-1][2]

    tokens.requests.clear()
    a("push", "bb", name)
    assert ("alice", ["repository:test/busybox:pull,push"], True) in tokens.requests
    assert b("pull", "-q", name).returncode == 0
    assert b("run", "--rm", name, "echo", "hello").out == "hello\n"

    # a cross-repository mount asks for both repositories in one token
    tokens.requests.clear()
    a("push", "bb", f"{reg.host}/other/busybox:2")
    assert ("alice", ["repository:other/busybox:pull,push", "repository:test/busybox:pull"],
            True) in tokens.requests
    assert "mount=sha256" in reg.log.read_text()

    # logged out: pulls go on with anonymous (pull-only) tokens
    a("logout", reg.host)
    b("rmi", name)
    tokens.requests.clear()
    assert b("pull", "-q", f"{reg.host}/other/busybox:2").returncode == 0
    assert tokens.requests and all(not creds for _, _, creds in tokens.requests)
    assert a("push", "--retry", "0", "bb", name, check=False).returncode == 125
