"""shell/channels.py: the local transport runs commands and uploads files here, for real."""

from __future__ import annotations

from workshop.shell.channels import LocalTransport


def test_exec_returns_status_and_both_streams():
    transport = LocalTransport()
    try:
        result = transport.exec("echo out; echo err >&2; exit 3")
        assert (result.status, result.stdout, result.stderr) == (3, "out\n", "err\n")
        assert transport.exec("cat", stdin=b"fed in").stdout == "fed in"
    finally:
        transport.close()


def test_upload_writes_exact_bytes_with_a_mode(tmp_path):
    transport = LocalTransport()
    try:
        path = tmp_path / "f.bin"
        data = bytes(range(256)) * 4
        assert transport.upload(str(path), data, "750").ok
        assert path.read_bytes() == data
        assert oct(path.stat().st_mode & 0o777) == "0o750"
    finally:
        transport.close()
