"""The course hub for real: `workshop hub install` lays out a JupyterHub (proxy
from the npm registry), `workshop hub up` starts it on loopback without systemd,
three local users log in (two with tokens through the hub's REST API, one with
their password through the login form: PAM), each student's server and kernel
run as that student, and another student can read none of their files."""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import sys
from pathlib import Path

import pytest
from harness import RECORD_MIME, KernelSocket

requests = pytest.importorskip("requests")
pytest.importorskip("jupyterhub", reason="jupyterhub is missing: bash scripts/setup --hub installs it")

from hub_lab import ROOT, kernel_uid, running_hub, stdout_of, students_of, workshop  # noqa: E402

from workshop.hub.limits import StudentCgroup, parent_name  # noqa: E402
from workshop.hub.server import others_can_run  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="the hub runs as root: it starts servers as other users"),
              pytest.mark.skipif(os.geteuid() == 0 and not others_can_run(sys.executable),
                                 reason=f"students cannot run {sys.executable} (a Python under root's home?): "
                                        "bash scripts/setup --test --python /usr/bin/python3"),
              pytest.mark.skipif(shutil.which("npm") is None, reason="npm is missing: bash scripts/setup --hub"),
              pytest.mark.timeout(420)]

PASSWORD = "Course-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def hub():
    with running_hub("workshop-hub-", "--course", str(ROOT / "notebooks")) as the_hub:
        yield the_hub


@pytest.fixture(scope="module")
def students(hub):
    with students_of(hub, 3, PASSWORD) as names:
        yield names


def test_three_students_run_cells_as_themselves_and_cannot_read_each_other(hub, students):
    tokens = {students[0]: hub.login_with_password(students[0], PASSWORD)}
    tokens |= {name: hub.token_for(name) for name in students[1:]}
    hub.start_servers(tokens)

    sockets = {}
    for name, token in tokens.items():
        user = pwd.getpwnam(name)
        home = Path(user.pw_dir)
        assert (home.stat().st_mode & 0o077) == 0, f"{home} is open to other users"
        notebook = home / "course" / "00-demo.ipynb"
        assert notebook.stat().st_uid == user.pw_uid, "the course notebooks are the student's own copies"
        specs = hub.call(token, "GET", f"/user/{name}/api/kernelspecs").json()
        assert specs["default"] == "workshop", specs
        kernel = hub.call(token, "POST", f"/user/{name}/api/kernels", {}).json()
        assert kernel["name"] == "workshop"
        assert kernel_uid(kernel["id"]) == user.pw_uid
        sockets[name] = KernelSocket(f"ws://127.0.0.1:{hub.port}/user/{name}/api/kernels/{kernel['id']}/channels",
                                     token, in_header=True)
        messages, reply = sockets[name].execute(
            "whoami", "id -u; id -un; sudo -n true 2>/dev/null && echo ROOT || echo no-sudo\n"
            "mkdir -p ~/.ssh && ssh-keygen -q -t ed25519 -N '' -f ~/.ssh/id_ed25519 && cp ~/.ssh/id_ed25519.pub ~/.ssh/known_hosts\n"
            "ls ~/.ssh")
        assert reply["content"]["status"] == "ok", messages
        out = stdout_of(messages).split()
        assert out[:3] == [str(user.pw_uid), name, "no-sudo"], out
        assert {"id_ed25519", "known_hosts"} <= set(out[3:])
        records = [m for m in messages if RECORD_MIME in m["content"].get("data", {})]
        assert records, "the cell left a record"
        # the server and all it starts stay in the student's cgroup, even what they detach
        # (workshop/hub/limits.py); `workshop hub down` ends that too (see the last test)
        messages, _ = sockets[name].execute("cgroup", "cat /proc/self/cgroup; setsid sleep 1003 </dev/null >/dev/null 2>&1 &")
        assert f"/{parent_name(hub.port)}/{name}\n" in stdout_of(messages), stdout_of(messages)
        saved = {"cells": [{"cell_type": "code", "id": "whoami", "source": "id -u", "metadata": {}, "execution_count": 1,
                            "outputs": [{"output_type": "display_data", "data": records[0]["content"]["data"],
                                         "metadata": {}}]}],
                 "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
        hub.call(token, "PUT", f"/user/{name}/api/contents/work.ipynb",
                 {"type": "notebook", "format": "json", "content": saved})
        assert (home / "work.ipynb").stat().st_uid == user.pw_uid

    # each student tries the others' files from their own kernel, and their server with their own token
    for name, sock in sockets.items():
        for other in students:
            if other == name:
                continue
            home = pwd.getpwnam(other).pw_dir
            messages, _ = sock.execute("peek", f"for f in {home}/.ssh/id_ed25519 {home}/.ssh/known_hosts "
                                               f"{home}/work.ipynb {home}/course/00-demo.ipynb; do "
                                               "cat $f >/dev/null 2>&1 && echo READ $f || echo denied; done; "
                                               f"ls {home} >/dev/null 2>&1 && echo LISTED || echo denied")
            assert stdout_of(messages).split() == ["denied"] * 5, stdout_of(messages)
            reply = hub.call(tokens[name], "GET", f"/user/{other}/api/contents/work.ipynb", ok=False)
            assert reply.status_code in (403, 404) or reply.status_code >= 300 and "work.ipynb" not in reply.text
    for sock in sockets.values():
        sock.close()


@pytest.mark.browser
def test_a_student_logs_in_with_chromium_and_opens_a_course_notebook_on_the_workshop_kernel(hub, students):
    pytest.importorskip("playwright")
    from playwright.sync_api import expect
    from test_browser_lab import WAIT_MS, _artifact, _chromium, chromium_page

    executable, name = _chromium(), students[0]
    with chromium_page(executable, height=900) as (_, page):
        page.goto(f"{hub.url}/hub/login?next=/hub/user-redirect/lab/tree/course/00-demo.ipynb")
        page.fill("input[name=username]", name)
        page.fill("input[name=password]", PASSWORD)
        page.click("input[type=submit], button[type=submit]")
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell")
        status = page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"^Workshop \(bash\) \| "))
        expect(status).to_have_text("Workshop (bash) | Idle", timeout=WAIT_MS)
        page.screenshot(path=str(_artifact("hub-student-lab.png")))
        where = page.url
    assert where.startswith(f"{hub.url}/user/{name}/lab/tree/course/00-demo.ipynb"), where


def test_status_lists_the_students_and_down_stops_hub_proxy_and_servers(hub, students):
    status = json.loads(workshop("hub", "status", "--dir", str(hub.dir), "--json").stdout)
    assert status["running"] and status["url"] == f"{hub.url}/"
    assert all(status["users"].get(name) == [""] for name in students), status["users"]
    listening = Path("/proc/net/tcp").read_text()
    assert f"0100007F:{hub.port:04X} " in listening, "the hub listens on loopback"
    assert f"00000000:{hub.port:04X} " not in listening, "and on loopback only"
    again = workshop("hub", "up", "--dir", str(hub.dir))
    assert again.returncode == 0 and int((hub.dir / "hub.pid").read_text()) == status["pid"]

    servers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _owned_by(p, students)]
    assert servers, "the students' servers run"
    proxy = int((hub.dir / "proxy.pid").read_text())
    assert _alive(proxy)
    assert workshop("hub", "down", "--dir", str(hub.dir)).stdout.strip() == "stopped"
    stopped = workshop("hub", "status", "--dir", str(hub.dir), check=False)
    assert stopped.returncode == 1 and "no hub is running" in stopped.stdout
    assert not _alive(status["pid"]) and not _alive(proxy)
    assert not [p for p in servers if _alive(int(p.name))], "the students' servers and kernels ended with the hub"
    assert not StudentCgroup(students[0], parent_name(hub.port)).tops[0].exists(), "the students' cgroups are removed"
    uids = {pwd.getpwnam(name).pw_uid for name in students}
    left = [str(d) for d in Path("/tmp").glob(".workshop-*") if d.stat().st_uid in uids]
    assert not left, f"the students' shells left their state directories: {left}"
    with pytest.raises(requests.ConnectionError):
        requests.get(hub.url + "/hub/api/", timeout=10)


def _owned_by(proc: Path, names: list[str]) -> bool:
    uids = {pwd.getpwnam(name).pw_uid for name in names}
    try:
        return proc.stat().st_uid in uids
    except OSError:
        return False


def _alive(pid: int) -> bool:
    """Runs (a zombie no longer does: its parent may be an init that reaps late)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
