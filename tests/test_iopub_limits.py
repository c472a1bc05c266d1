"""A notebook run in JupyterLab's way, through a real jupyter_server with its
default IOPub rate limits (1,000,000 bytes/s, 1,000 messages/s, over 3 s), saved
through the server and graded: what the server forwarded must grade clean.

The test is the browser: it uploads the student's notebook, opens a session for
it through the REST API (so the server starts the kernel with JPY_SESSION_NAME,
as for JupyterLab), executes the cells over the kernel websocket with the v1
protocol JupyterLab 4 speaks, builds the outputs from the messages the server
forwards (consecutive stream messages of one name merge into one output, as in
JupyterLab), saves the notebook with PUT /api/contents and reads it back.
"""

from __future__ import annotations

import copy
import json
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from harness import KernelSocket, clean_env

from workshop.pacing import MESSAGE_BURST

pytestmark = pytest.mark.slow

RECORD = "application/vnd.workshop.record+json"
LINE = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-=+"  # 66 characters and a newline


def _big(size: int, end: str) -> str:
    return (f"%expect exit 0\n%expect stdout-contains {end}\n"
            f"yes {LINE} | head -c {size}\necho; echo {end}\necho a line on stderr >&2")


CELLS = {
    "small": "%expect stdout /^small$/\n%expect stderr empty\necho small",
    "big35": _big(3_500_000, "END-OF-3.5MB"),
    "big6": _big(6_000_000, "END-OF-6MB"),
}
PRINTED = {"small": len("small\n"), "big35": 3_500_000 + len("\nEND-OF-3.5MB\n"),
           "big6": 6_000_000 + len("\nEND-OF-6MB\n")}
SERVER_NOTICE = "rate exceeded"


def _notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "workshop", "display_name": "Workshop (bash)", "language": "bash"}
    nb.cells = [nbformat.v4.new_markdown_cell("# Big output")]
    nb.cells += [nbformat.v4.new_code_cell(source, id=cell_id) for cell_id, source in CELLS.items()]
    nbformat.write(nb, str(path))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A jupyter_server on loopback with a token and its default settings."""

    def __init__(self, root: Path, **env: str):
        self.root, self.port, self.token = root, _free_port(), secrets.token_hex(16)
        config = root.parent / f"config-{self.port}"
        config.mkdir()
        server_env = clean_env(JUPYTER_CONFIG_DIR=str(config), JUPYTER_RUNTIME_DIR=str(config / "runtime"), **env)
        for name in ("WORKSHOP_IOPUB_PACING", "WORKSHOP_IOPUB_DATA_RATE_LIMIT", "WORKSHOP_OUTPUT_LIMIT"):
            if name not in env:
                server_env.pop(name, None)
        self.log = open(root.parent / f"server-{self.port}.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
             "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}",
             "--ServerApp.open_browser=False", "--allow-root"],
            env=server_env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.call("GET", "/api/status")
                break
            except OSError:  # not listening yet
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"jupyter_server did not start: {Path(self.log.name).read_text()[-3000:]}")
            time.sleep(0.2)

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        """The REST API, with the token in the Authorization header."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as reply:  # raises on an HTTP error
            return json.loads(reply.read() or b"{}")

    def put_notebook(self, name: str, nb: dict) -> None:
        self.call("PUT", f"/api/contents/{name}", {"type": "notebook", "format": "json", "content": nb})

    def get_notebook(self, name: str) -> dict:
        return self.call("GET", f"/api/contents/{name}?content=1")["content"]

    def open_session(self, name: str) -> str:
        """As JupyterLab opening a notebook: a session for its path; the kernel's id."""
        body = {"path": name, "name": name, "type": "notebook", "kernel": {"name": "workshop"}}
        return self.call("POST", "/api/sessions", body)["kernel"]["id"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def log_text(self) -> str:
        return Path(self.log.name).read_text()


class Browser(KernelSocket):
    """The kernel websocket as JupyterLab 4 uses it (v1 binary protocol, token in the URL)."""

    def __init__(self, server: Server, kernel_id: str):
        super().__init__(f"ws://127.0.0.1:{server.port}/api/kernels/{kernel_id}/channels", server.token)


def outputs_of(messages: list[dict]) -> list[dict]:
    """The outputs JupyterLab keeps for these messages."""
    outputs: list[dict] = []
    for msg in messages:
        kind, content = msg["header"]["msg_type"], msg["content"]
        if kind == "stream":
            if outputs and outputs[-1]["output_type"] == "stream" and outputs[-1]["name"] == content["name"]:
                outputs[-1]["text"] += content["text"]
            else:
                outputs.append(nbformat.v4.new_output("stream", name=content["name"], text=content["text"]))
        elif kind in ("display_data", "execute_result", "error"):
            outputs.append(nbformat.v4.output_from_msg(msg))
    return outputs


def run_in_jupyterlab(server: Server, student: Path) -> tuple[dict, dict[str, list[dict]]]:
    """Upload, open, run every code cell, save through the server, read back."""
    name = student.name
    nb = json.loads(student.read_text())
    server.put_notebook(name, nb)
    browser = Browser(server, server.open_session(name))
    forwarded: dict[str, list[dict]] = {}
    try:
        for cell in nb["cells"]:
            if cell["cell_type"] != "code":
                continue
            messages, reply = browser.execute(cell["id"], "".join(cell["source"]))
            forwarded[cell["id"]] = messages
            cell["outputs"] = outputs_of(messages)
            cell["execution_count"] = reply["content"].get("execution_count")
    finally:
        browser.close()
    server.put_notebook(name, nb)
    return server.get_notebook(name), forwarded


def stream_text(messages: list[dict], name: str) -> str:
    return "".join(m["content"]["text"] for m in messages
                   if m["header"]["msg_type"] == "stream" and m["content"]["name"] == name)


def grade(reference: Path, submission: Path) -> dict:
    out = submission.with_suffix(".grade.json")
    done = subprocess.run([sys.executable, "-m", "workshop", "grade", str(reference), str(submission),
                           "--json", str(out), "--quiet"], capture_output=True, text=True, timeout=300)
    assert out.exists(), done.stdout + done.stderr
    return json.loads(out.read_text())["submissions"][0]


def flags(result: dict) -> dict[tuple[str, str | None], str]:
    return {(f["kind"], f["cell"]): f["message"] for f in result["flags"]}


def save(nb: dict, path: Path) -> Path:
    nbformat.write(nbformat.from_dict(nb), str(path))
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory, installed_kernelspec):
    """The notebook run through a default jupyter_server and saved through it."""
    base = tmp_path_factory.mktemp("iopub")
    root = base / "server-root"
    root.mkdir()
    reference = _notebook(base / "reference.ipynb")
    server = Server(root, WORKSHOP_SERVER_OUTPUT_LIMIT="0")  # every byte through, to see none is lost
    try:
        started = time.monotonic()
        saved, forwarded = run_in_jupyterlab(server, _notebook(base / "student.ipynb"))
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    yield {"base": base, "reference": reference, "saved": saved, "forwarded": forwarded,
           "submission": save(saved, base / "submission.ipynb"), "log": server.log_text(), "elapsed": elapsed}


def test_every_byte_and_every_record_get_through_a_default_server(lab):
    for cell_id, messages in lab["forwarded"].items():
        assert len(stream_text(messages, "stdout")) == PRINTED[cell_id], cell_id
        assert SERVER_NOTICE not in stream_text(messages, "stderr"), cell_id
        records = [m for m in messages if m["header"]["msg_type"] == "display_data" and RECORD in m["content"]["data"]]
        assert len(records) == 1, f"{cell_id}: the record did not arrive"
        stdout = records[0]["content"]["data"][RECORD]["stdout"]
        assert stdout["chars"] == PRINTED[cell_id] and not stdout["truncated"]
    assert SERVER_NOTICE not in lab["log"], lab["log"][-3000:]
    # paced, not stalled: 9.5 MB at 60 % of 1 MB/s, plus starting a server and a kernel
    assert lab["elapsed"] < 60, lab["elapsed"]


def test_the_saved_notebook_grades_clean_with_full_points(lab):
    result = grade(lab["reference"], lab["submission"])
    assert result["flags"] == [], result["flags"]
    assert result["total"] == result["max"] == 6
    assert all(check["passed"] for check in result["checks"].values()), result["checks"]


def _cell(nb: dict, cell_id: str) -> dict:
    return next(c for c in nb["cells"] if c.get("id") == cell_id)


def _stdout_output(cell: dict) -> dict:
    return next(o for o in cell["outputs"] if o["output_type"] == "stream" and o["name"] == "stdout")


def test_an_edited_output_is_still_flagged_as_edited(lab):
    nb = copy.deepcopy(lab["saved"])
    out = _stdout_output(_cell(nb, "big35"))
    text = "".join(out["text"])
    middle = len(text) // 2
    out["text"] = text[:middle] + ("X" if text[middle] != "X" else "Y") + text[middle + 1 :]  # same length
    result = grade(lab["reference"], save(nb, lab["base"] / "edited.ipynb"))
    assert ("output-edited", "cell 2 (id big35)") in flags(result), result["flags"]
    assert not [f for f in result["flags"] if f["kind"] == "output-truncated-by-client"]
    assert result["total"] == 6 - 2  # the edited cell's two checks earn nothing


def test_a_prefix_kept_by_the_client_is_recognised_and_not_held_against_the_student(lab):
    """A client that kept only the first 2.5 MB of the 6 MB cell's output (what
    jupyter_server's rate limit did to unpaced output): a distinct flag that
    accuses no one, and the checks earn their points from the record's live
    results (the saved prefix lacks the END line the check looks for)."""
    nb = copy.deepcopy(lab["saved"])
    out = _stdout_output(_cell(nb, "big6"))
    out["text"] = "".join(out["text"])[:2_500_000]
    result = grade(lab["reference"], save(nb, lab["base"] / "cut.ipynb"))
    found = flags(result)
    assert set(found) == {("output-truncated-by-client", "cell 3 (id big6)")}, result["flags"]
    assert "kept 2500000 of the 6000012 characters of stdout" in found[("output-truncated-by-client", "cell 3 (id big6)")]
    assert result["total"] == result["max"] == 6
    # an edit inside the verified prefix of a cut output is still an edit
    out["text"] = "Z" + out["text"][1:]
    result = grade(lab["reference"], save(nb, lab["base"] / "cut-edited.ipynb"))
    assert ("output-edited", "cell 3 (id big6)") in flags(result), result["flags"]
    assert result["total"] == 6 - 2


def test_the_server_in_these_tests_does_drop_unpaced_output(tmp_path, installed_kernelspec):
    """The control: with pacing forced off, the same server loses output of the
    3.5 MB cell (and says so), so the tests above measure the real limit."""
    root = tmp_path / "root"
    root.mkdir()
    student = _notebook(tmp_path / "student.ipynb")
    nb = json.loads(student.read_text())
    nb["cells"] = [c for c in nb["cells"] if c["cell_type"] == "markdown" or c["id"] == "big35"]
    student.write_text(json.dumps(nb))
    server = Server(root, WORKSHOP_IOPUB_PACING="off")
    try:
        _, forwarded = run_in_jupyterlab(server, student)
    finally:
        server.stop()
    messages = forwarded["big35"]
    assert len(stream_text(messages, "stdout")) < PRINTED["big35"]
    assert SERVER_NOTICE in stream_text(messages, "stderr")


def _busiest(times: list[float], sizes: list[int], span: float) -> int:
    """The most of ``sizes`` sent within any ``span`` seconds."""
    best = total = first = 0
    for last, when in enumerate(times):
        total += sizes[last]
        while when - times[first] > span:
            total -= sizes[first]
            first += 1
        best = max(best, total)
    return best


@pytest.mark.parametrize("env, paced", [
    ({}, False),  # nbclient, `workshop run`, jupyter console: full speed
    ({"JPY_SESSION_NAME": "/home/student/lab.ipynb"}, True),  # started by a Jupyter server
    ({"JPY_SESSION_NAME": "/home/student/lab.ipynb", "WORKSHOP_IOPUB_PACING": "off"}, False),
    ({"WORKSHOP_IOPUB_PACING": "on"}, True),
], ids=["direct", "server", "server-forced-off", "forced-on"])
def test_output_is_paced_only_when_a_server_may_be_the_client(start_kernel, env, paced):
    # every byte shown, to see its pace (a browser's default cap is 1 MiB: test_kernel_shell, test_browser_lab)
    kernel = start_kernel("local", WORKSHOP_SERVER_OUTPUT_LIMIT="0", **env)
    started = time.monotonic()
    result = kernel.run(f"yes {LINE} | head -c 2500000", timeout=120)
    elapsed = time.monotonic() - started
    assert len(result.stdout) == 2_500_000 and result.record is not None
    streams = [m for m in result.messages if m["msg_type"] == "stream"]
    times = [m["header"]["date"].timestamp() for m in streams]
    sizes = [len(json.dumps(m["content"], ensure_ascii=False).encode()) + 2048 for m in streams]
    if not paced:
        assert elapsed < 2.5, elapsed
        return
    assert elapsed > 3, elapsed  # 2.5 MB at 60 % of 1 MB/s
    assert _busiest(times, sizes, 3.0) <= 0.7 * 3_000_000  # the server drops above 3,000,000 in 3 s
    # the server allows 1,000 messages a second; the pacer a burst, then 50 a second
    assert _busiest(times, [1] * len(times), 1.0) <= MESSAGE_BURST + 60
