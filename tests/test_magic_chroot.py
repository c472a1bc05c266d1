"""%%chroot ROOTFS: its arguments become a chroot into the resolved root (no root needed to compile)."""

from __future__ import annotations

import shlex

import pytest
from fake_context import apply, fake_context

from workshop.errors import MagicError


def _rootfs(tmp_path):
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "sh").symlink_to("busybox")
    return root


def test_the_body_runs_under_the_roots_own_sh(tmp_path):
    ctx, _ = fake_context()
    root = _rootfs(tmp_path)
    code = apply(ctx, f"%%chroot {tmp_path}/./rootfs", "echo 'hi'")
    assert shlex.split(code)[:4] == ["chroot", str(root.resolve()), "/bin/sh", "-c"]
    assert ctx.stack["root"] == str(root.resolve())


def test_a_directory_without_bin_sh_is_refused_with_the_fix(tmp_path):
    ctx, _ = fake_context()
    (tmp_path / "empty").mkdir()
    with pytest.raises(MagicError, match="no /bin/sh.*%rootfs"):
        apply(ctx, f"%%chroot {tmp_path}/empty", "true")
    with pytest.raises(MagicError, match="no such directory"):
        apply(ctx, f"%%chroot {tmp_path}/absent", "true")
