"""A student's first session on the course server, run inside a fresh Debian by
tests/test_setup_fresh.py once the README's course-server lines have set the hub
up and started it: as root, with the hub's own Python (the venv setup made).

    python tests/fresh_hub.py PORT STUDENT PASSWORD

STUDENT (of group students, with PASSWORD) logs in through the hub's login form,
asks for a token and starts their server through the REST API, opens a kernel
and runs one cell. Prints what a user would see, one ``name: value`` line each,
for the test to check; the hub's log follows when something fails.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import RECORD_MIME, KernelSocket  # noqa: E402

HUB_DIR = Path(os.environ.get("WORKSHOP_HUB_DIR") or "/var/lib/workshop-hub")


def show(name: str, value: object) -> None:
    print(f"{name}: {value}", flush=True)


def kernel_process(kernel_id: str) -> Path:
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and f"kernel-{kernel_id}.json".encode() in (proc / "cmdline").read_bytes():
                return proc
        except OSError:
            continue
    raise SystemExit(f"no process runs kernel {kernel_id}")


def main(port: int, name: str, password: str) -> None:
    url = f"http://127.0.0.1:{port}"
    browser = requests.Session()
    page = browser.get(url + "/hub/login", timeout=60)
    show("login page", f"{page.status_code} {'password' in page.text}")
    xsrf = browser.cookies.get("_xsrf", path="/hub/")
    login = browser.post(url + "/hub/login", data={"username": name, "password": password, "_xsrf": xsrf},
                         allow_redirects=False, timeout=60)
    show("login", login.status_code)
    reply = browser.post(url + f"/hub/api/users/{name}/tokens", json={"note": "fresh"},
                         headers={"X-XSRFToken": browser.cookies.get("_xsrf", path="/hub/")}, timeout=60)
    token = reply.json()["token"]
    api = requests.Session()
    api.headers["Authorization"] = f"token {token}"
    show("user", api.get(url + "/hub/api/user", timeout=60).json()["name"])
    started = time.monotonic()
    api.post(url + f"/hub/api/users/{name}/server", timeout=60).raise_for_status()
    while not (api.get(url + f"/hub/api/users/{name}", timeout=60).json().get("servers", {}).get("") or {}).get("ready"):
        if time.monotonic() - started > 300:
            raise SystemExit(f"{name}'s server was not ready in 300 s")
        time.sleep(1)
    show("server ready in", f"{time.monotonic() - started:.0f} s")
    show("default kernel", api.get(url + f"/user/{name}/api/kernelspecs", timeout=60).json()["default"])
    kernel = api.post(url + f"/user/{name}/api/kernels", json={}, timeout=60).json()
    proc = kernel_process(kernel["id"])
    environ = dict(line.split("=", 1) for line in (proc / "environ").read_bytes().decode().split("\0") if "=" in line)
    show("kernel runs as", proc.stat().st_uid)
    show("kernel target", environ.get("WORKSHOP_TARGET"))
    sock = KernelSocket(f"ws://127.0.0.1:{port}/user/{name}/api/kernels/{kernel['id']}/channels", token, in_header=True)
    sock.ws.settimeout(600)  # the VM is restored under TCG before the cell's first output
    started = time.monotonic()
    messages, reply = sock.execute("first", "id -u; cat /proc/sys/kernel/random/boot_id", timeout=600)
    show("first cell took", f"{time.monotonic() - started:.0f} s")
    show("cell status", reply["content"]["status"])
    out = "".join(m["content"]["text"] for m in messages
                  if m["header"]["msg_type"] == "stream" and m["content"]["name"] == "stdout").split()
    show("cell uid", out[0] if out else None)
    show("cell boot", "the server's" if out[1:] == [Path("/proc/sys/kernel/random/boot_id").read_text().strip()]
         else "another kernel's" if len(out) == 2 else out)
    records = [m["content"]["data"][RECORD_MIME] for m in messages if RECORD_MIME in m["content"].get("data", {})]
    show("cell target", json.dumps(records[-1].get("target")) if records else None)
    sock.close()


if __name__ == "__main__":
    try:
        main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
    except BaseException:
        log = HUB_DIR / "hub.log"
        print(log.read_text(errors="replace")[-6000:] if log.exists() else f"no {log}", file=sys.stderr)
        raise
