"""PullImage with an identity token (AuthConfig.identity_token: an OAuth2 refresh token)
from a `corral registry serve` using docker token auth; the token server (the test
support's, plus the refresh_token grant kubelet's credential providers rely on)
grants nothing to anonymous clients.

The server and teardown are test_cri.py's (`cri` fixture).
"""

from __future__ import annotations

import json
import os
import time
from urllib.parse import parse_qs

import pytest
from tests.integration import test_cri as base
from tests.integration.test_cri import CORRAL, Server, _code, grpc, pb

cri = base.cri  # the module's server (fixture)

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (containers, CNI)")]

REFRESH = "corral-test-refresh-token"


def _with_refresh_grant(ts, seen: list) -> None:
    """POST /token with grant_type=refresh_token: a token for the scopes asked when the
    refresh token is REFRESH, else 401 (distribution's token spec, oauth.md)."""
    from tests.support.token_server import ISSUER, SERVICE

    def do_POST(h) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        form = parse_qs(h.rfile.read(length).decode())
        seen.append(form)
        if form.get("grant_type") != ["refresh_token"] or form.get(
                "refresh_token") != [REFRESH]:
            h.send_response(401)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        access = []
        for scope in " ".join(form.get("scope", [])).split():
            kind, _, rest = scope.partition(":")
            repo, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": repo, "actions": actions.split(",")})
        now = int(time.time())
        token = ts.sign({"iss": ISSUER, "sub": "refreshed", "aud": SERVICE,
                         "exp": now + 300, "nbf": now - 10, "iat": now,
                         "jti": os.urandom(8).hex(), "access": access})
        body = json.dumps({"access_token": token, "expires_in": 300}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    ts.httpd.RequestHandlerClass.do_POST = do_POST


def test_pull_image_with_an_identity_token(cri, tmp_path):
    import subprocess

    from tests.support.registry_server import ServeProcess
    from tests.support.token_server import ISSUER, SERVICE, TokenServer

    seen: list = []
    with TokenServer(tmp_path / "tokens", users={"corral": "s3cret"}, anonymous=()) as ts:
        _with_refresh_grant(ts, seen)
        registry = ServeProcess(tmp_path / "registry", "--token-realm", ts.realm,
                                "--token-service", SERVICE, "--token-issuer", ISSUER,
                                "--token-rootcertbundle", str(ts.cert))
        other = None
        try:
            ref = f"{registry.addr}/corral-test/tok:1"
            subprocess.run([CORRAL, "--root", str(cri.root), "push", "-q", "--creds",
                            "corral:s3cret", "busybox", f"docker://{ref}"], check=True,
                           capture_output=True, timeout=120)
            other = Server(tmp_path / "store", tmp_path / "pull.sock")
            other.start()
            im = other.images
            code, _ = _code(im.PullImage, pb.PullImageRequest(image=pb.ImageSpec(image=ref)))
            assert code != grpc.StatusCode.OK  # anonymous: no pull
            code, _ = _code(im.PullImage, pb.PullImageRequest(
                image=pb.ImageSpec(image=ref),
                auth=pb.AuthConfig(identity_token="corral-test-wrong")))
            assert code != grpc.StatusCode.OK
            pulled = im.PullImage(pb.PullImageRequest(
                image=pb.ImageSpec(image=ref), auth=pb.AuthConfig(identity_token=REFRESH)))
            assert pulled.image_ref.startswith("sha256:")
            st = im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref))).image
            assert st.id == pulled.image_ref and ref in st.repo_tags
            assert [f["refresh_token"] for f in seen] == [["corral-test-wrong"], [REFRESH]]
            assert "repository:corral-test/tok:pull" in seen[-1]["scope"][0]
            # the request's token is not left on disk
            assert not list((tmp_path / "store" / "tmp").glob("pull-auth-*"))
            code, message = _code(im.PullImage, pb.PullImageRequest(
                image=pb.ImageSpec(image=ref), auth=pb.AuthConfig(registry_token="x")))
            assert code == grpc.StatusCode.INVALID_ARGUMENT
            assert "PullImageRequest.auth.registry_token" in message
        finally:
            if other is not None:
                other.stop()
            registry.stop()
