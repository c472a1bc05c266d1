"""%rootfs DIR [--from ...]: arguments checked before anything is fetched."""

from __future__ import annotations

import pytest
from fake_context import apply, fake_context

from workshop.errors import MagicError


def test_upload_goes_only_with_busybox_and_sources_are_known(tmp_path):
    ctx, _ = fake_context()
    with pytest.raises(MagicError, match="--upload goes with --from busybox"):
        apply(ctx, f"%rootfs {tmp_path}/r --from tar:x.tar --upload")
    with pytest.raises(MagicError):
        apply(ctx, f"%rootfs {tmp_path}/r --from floppy:x")
