"""Who `workshop collect` expects: a hub's users a page at a time (JupyterHub 2's paginated list,
served here by a small HTTP server until the course hub runs in the suite), else the course group."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from workshop.errors import ExchangeError
from workshop.exchange.collect import group_members, hub_users

USERS = [{"name": "instructor", "admin": True}] + [{"name": f"s{n:03}", "admin": False} for n in range(120)]


class PagedHub(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def do_GET(self):  # noqa: N802 (the http.server name)
        asked = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(asked.query).items()}
        PagedHub.seen.append({"path": asked.path, "auth": self.headers.get("Authorization"), **query})
        if asked.path != "/hub/api/users" or self.headers.get("Authorization") != "token secret":
            self.send_response(403)
            self.end_headers()
            return
        offset, limit = int(query.get("offset", 0)), min(int(query.get("limit", 50)), 50)
        items = USERS[offset:offset + limit]
        after = offset + limit
        following = ({"offset": after, "limit": limit, "url": f"http://elsewhere:8081/hub/api/users?offset={after}"}
                     if after < len(USERS) else None)
        body = json.dumps({"items": items, "_pagination": {"offset": offset, "limit": limit, "total": len(USERS),
                                                            "next": following}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def hub():
    server = HTTPServer(("127.0.0.1", 0), PagedHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    PagedHub.seen = []
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_every_page_of_the_hub_users_makes_the_roster_without_admins(hub):
    names = hub_users(hub, "secret")
    assert names == [f"s{n:03}" for n in range(120)]
    assert len(PagedHub.seen) == 3 and all(s["auth"] == "token secret" for s in PagedHub.seen)
    assert [s.get("offset", "0") for s in PagedHub.seen] == ["0", "50", "100"]


def test_a_hub_that_refuses_says_which_token_is_needed(hub):
    with pytest.raises(ExchangeError, match=r"^the hub at .* did not list its users \(HTTP Error 403: Forbidden\); "
                                            r"check the URL and that JUPYTERHUB_API_TOKEN holds a token allowed"):
        hub_users(hub + "/hub/api", "wrong")


def test_a_group_that_does_not_exist_is_named():
    with pytest.raises(ExchangeError, match=r"^there is no group no-such-group-x on this machine; make it"):
        group_members("no-such-group-x")
