"""`bash scripts/setup --hub` then `workshop hub up`, the README's two lines, run
for real on this machine: in a mount namespace of its own where /usr/local is an
overlay thrown away afterwards, with a venv and a hub directory of the test's."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.root, pytest.mark.timeout(900),
              pytest.mark.skipif(os.geteuid() != 0, reason="setup runs as root")]

SCRIPT = """
set -e
mount -t overlay overlay -o lowerdir=/usr/local,upperdir="$T/upper",workdir="$T/work" /usr/local
cd "$SRC"
bash scripts/setup --hub --venv "$T/venv" > "$T/first.log" 2>&1
bash scripts/setup --hub --venv "$T/venv" > "$T/again.log" 2>&1
cd /
readlink /usr/local/bin/workshop
workshop hub up
workshop hub status
workshop hub down
"""


def _missing_packages() -> list[str]:
    """System packages the hub part wants and this machine lacks: installing them
    here would change the machine, so the test leaves that to setup proper."""
    listing = subprocess.run(["bash", str(ROOT / "scripts" / "setup"), "--list"], capture_output=True, text=True,
                             check=True).stdout
    wanted = [p for line in listing.splitlines() if line.split()[:1] in (["local"], ["hub"]) for p in line.split()[1:]]
    have = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev} ${Package}\\n", *wanted],
                          capture_output=True, text=True).stdout
    installed = {line.split()[1] for line in have.splitlines() if line.startswith("ii")}
    return [p for p in wanted if p not in installed] + ([] if shutil.which("npm") else ["npm"])


def test_setup_hub_then_hub_up_serves_the_login_page_on_loopback():
    if shutil.which("dpkg-query") is None or _missing_packages():
        pytest.skip("the hub's system packages are not all installed here: bash scripts/setup --hub")
    tmp = Path(tempfile.mkdtemp(prefix="workshop-setup-hub-", dir="/var/tmp"))
    os.chmod(tmp, 0o755)
    try:
        for name in ("upper", "work"):
            (tmp / name).mkdir()
        port = 20000 + int.from_bytes(os.urandom(2), "big") % 20000
        hub_dir = tmp / "hub"
        hub_dir.mkdir()
        (hub_dir / "hub.json").write_text(
            f'{{"ip": "127.0.0.1", "port": {port}, "group": "users", "admins": []}}\n')  # one Debian has
        env = {**os.environ, "T": str(tmp), "SRC": str(ROOT), "WORKSHOP_HUB_DIR": str(hub_dir)}
        env.pop("PYTHONPATH", None)  # the venv's own copy of the package, as a user gets it
        done = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", SCRIPT],
                              env=env, capture_output=True, text=True, timeout=840, cwd="/")
        logs = "".join((tmp / f"{n}.log").read_text() for n in ("first", "again") if (tmp / f"{n}.log").exists())
        assert done.returncode == 0, done.stdout + done.stderr + logs
        lines = done.stdout.splitlines()
        assert lines[0] == f"{tmp}/venv/bin/workshop", lines
        assert lines[1].startswith(f"http://127.0.0.1:{port}/ (log: {hub_dir}/hub.log)"), lines
        assert lines[2].startswith("running (pid ") and lines[3] == "stopped", lines
        first = (tmp / "first.log").read_text()
        assert f"pip install '.[hub]' into {tmp}/venv" in first and "configurable-http-proxy@4" in first
        if not shutil.which("python3") or not Path(shutil.which("python3")).resolve().is_relative_to("/usr"):
            assert "the venv is made from /usr/bin/python3 instead" in first
        again = (tmp / "again.log").read_text()
        assert "pip install" not in again and "configurable-http-proxy" not in again and "course notebooks" not in again
        assert (hub_dir / "course" / "00-demo.ipynb").exists()
        kernel = (hub_dir / "share" / "jupyter" / "kernels" / "workshop" / "kernel.json").read_text()
        assert f"{tmp}/venv/bin/python" in kernel
        assert not Path("/usr/local/bin/workshop").resolve().is_relative_to(tmp), "the machine's own link is kept"
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/hub/login", timeout=10)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
