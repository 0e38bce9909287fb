"""Start and drive the tests' authorization server (see __init__.py)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from apps.localmail.dovecot import free_port

REPO = Path(__file__).resolve().parents[3]

_BOOTSTRAP = """
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0, interactive=False)
"""


@dataclass(frozen=True)
class Client:
    client_id: str
    client_secret: str


class OAuthServer:
    """One authorization server on a free loopback port, its state in a temporary directory.

    with OAuthServer(access_token_seconds=20) as oauth:
        portal = oauth.register_client("portal", redirect_uris=[...])
        oauth.add_user("alice@example.test", "secret")
        tokens = oauth.issue_tokens("alice@example.test", portal)
    """

    def __init__(self, access_token_seconds: int = 20) -> None:
        self.access_token_seconds = access_token_seconds
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = Path(tempfile.mkdtemp(prefix="oauth-server-"))
        self._control_secret = secrets.token_urlsafe(16)
        self._proc: subprocess.Popen | None = None
        # The client Dovecot authenticates with when it introspects a token.
        self.introspector = Client("dovecot-introspection", secrets.token_urlsafe(16))

    def __enter__(self) -> OAuthServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def issuer(self) -> str:
        return f"{self.url}/o"

    @property
    def authorize_url(self) -> str:
        return f"{self.url}/o/authorize/"

    @property
    def token_url(self) -> str:
        return f"{self.url}/o/token/"

    @property
    def userinfo_url(self) -> str:
        return f"{self.url}/o/userinfo/"

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/o/.well-known/jwks.json"

    @property
    def introspection_url(self) -> str:
        """For Dovecot: the introspecting client's credentials in the URL (Basic auth)."""
        c = self.introspector
        return f"http://{c.client_id}:{c.client_secret}@127.0.0.1:{self.port}/o/introspect/"

    def _environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.support.oauth_server.settings",
            "OAUTH_TEST_DIR": str(self.dir),
            "OAUTH_TEST_SECRET": secrets.token_urlsafe(32),
            "OAUTH_TEST_CONTROL_SECRET": self._control_secret,
            "OAUTH_TEST_ACCESS_TOKEN_SECONDS": str(self.access_token_seconds),
            "PYTHONPATH": str(REPO),
        }

    def start(self, timeout: float = 30.0) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.dir / "oidc.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        env = self._environment()
        subprocess.run([sys.executable, "-c", _BOOTSTRAP], env=env, cwd=REPO, check=True, timeout=120)
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "tests.support.oauth_server.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--worker-class",
                "gthread",
                "--workers",
                "1",
                "--threads",
                "8",
                "--log-level",
                "warning",
                "--error-logfile",
                str(self.dir / "gunicorn.log"),
            ],
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            try:
                urllib.request.urlopen(f"{self.url}/o/.well-known/openid-configuration", timeout=2).read()  # noqa: S310
                break
            except OSError:
                time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError("the OAuth server did not start")
        if self._proc is None or self._proc.poll() is not None:
            log = (self.dir / "gunicorn.log").read_text() if (self.dir / "gunicorn.log").exists() else ""
            self.stop()
            raise RuntimeError(f"the OAuth server exited: {log[-2000:]}")
        self.register_client(self.introspector, grant="client-credentials")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------------ control
    def _control(self, path: str, payload: dict) -> dict:
        request = urllib.request.Request(  # noqa: S310 (loopback)
            f"{self.url}{path}",
            data=json.dumps(payload).encode(),
            headers={"X-Control-Secret": self._control_secret, "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return json.loads(answer.read())

    def register_client(
        self, client: Client | str, redirect_uris: list[str] | None = None, grant: str = "authorization-code"
    ) -> Client:
        if isinstance(client, str):
            client = Client(client, secrets.token_urlsafe(24))
        self._control(
            "/test/applications/",
            {
                "client_id": client.client_id,
                "client_secret": client.client_secret,
                "redirect_uris": redirect_uris or [],
                "grant": grant,
            },
        )
        return client

    def add_user(self, username: str, password: str, email: str | None = None) -> None:
        self._control("/test/users/", {"username": username, "password": password, "email": email or username})

    def issue_tokens(self, username: str, client: Client, expires_in: int | None = None) -> dict:
        """The tokens a finished sign-in gives `client`: access_token, refresh_token, expires_in."""
        return self._control(
            "/test/tokens/", {"username": username, "client_id": client.client_id, "expires_in": expires_in}
        )

    def revoke_consent(self, username: str) -> dict:
        return self._control("/test/revoke/", {"username": username})

    def require_admin_consent(self, username: str) -> None:
        self._control("/test/admin-consent-required/", {"username": username})

    def refresh(self, client: Client, refresh_token: str) -> dict:
        """A plain RFC 6749 refresh, as any client would send it (for tests of the server itself)."""
        from urllib.parse import urlencode

        request = urllib.request.Request(  # noqa: S310 (loopback)
            self.token_url,
            data=urlencode(
                {
                    "grant_type": "refresh_token",
                    "refresh_token": refresh_token,
                    "client_id": client.client_id,
                    "client_secret": client.client_secret,
                }
            ).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return json.loads(answer.read())

    def consent(self, authorize_url: str, username: str, password: str, allow: bool = True) -> str:
        """What a customer does in the browser, without one: sign in at the server, press
        Authorize (or Cancel) on its consent page.  Returns the URL the server sends the browser
        back to (the client's redirect URI with code and state, or with an error)."""
        import re

        import requests

        with requests.Session() as browser:
            page = browser.get(authorize_url, timeout=10)
            if "/accounts/login/" in page.url:
                csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
                page = browser.post(
                    page.url,
                    data={
                        "csrfmiddlewaretoken": csrf,
                        "username": username,
                        "password": password,
                        "next": re.search(r'name="next" value="([^"]*)"', page.text).group(1).replace("&amp;", "&"),
                    },
                    headers={"Referer": page.url},
                    allow_redirects=False,
                    timeout=10,
                )
                page = browser.get(self.url + page.headers["Location"], allow_redirects=False, timeout=10)
            if page.status_code in (301, 302):
                return page.headers["Location"]  # refused before any consent page (tenant rules)
            fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
            fields = {k: v.replace("&amp;", "&") for k, v in fields.items()}
            if allow:
                fields["allow"] = "Authorize"
            answer = browser.post(
                page.url, data=fields, headers={"Referer": page.url}, allow_redirects=False, timeout=10
            )
            return answer.headers["Location"]
