"""``workshop doctor``: preflight checks of this machine and of a target.

Each check gives ✔ or ✘, what was found, and for a ✘ how to fix it.  A check
is *required* when the chosen target cannot work without it; only a required
✘ makes the exit status non-zero.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass

from .settings import Settings
from .shell.leftovers import parse_sweep, sweep_script
from .targets import Target, TargetError, kind_class, parse_target


@dataclass
class Check:
    name: str
    ok: bool
    found: str
    fix: str = ""
    required: bool = False


def _version(cmd: list[str]) -> str | None:
    exe = shutil.which(cmd[0]) or (f"/usr/sbin/{cmd[0]}" if os.path.exists(f"/usr/sbin/{cmd[0]}") else None)
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return "present (no version)"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0].strip() if text else "present"


def host_checks(needs: frozenset[str] = frozenset()) -> list[Check]:
    """This machine's virtualization and VM tools; ``needs``: the rows the target cannot work without."""
    from .vm.image import image_for
    from .vm.machine import kvm_device, kvm_failed_recently

    checks: list[Check] = []
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        pass
    vt = "vmx (Intel VT-x)" if re.search(r"\bvmx\b", flags) else "svm (AMD-V)" if re.search(r"\bsvm\b", flags) else ""
    checks.append(Check(
        "CPU virtualization flags", bool(vt), vt or "no vmx/svm in /proc/cpuinfo",
        "enable VT-x/AMD-V in the firmware, or nested virtualization for this VM; without it the micro VM "
        "runs under TCG (slower)",
    ))
    kvm_ok, why = kvm_device()
    checks.append(Check(
        "KVM (/dev/kvm)", kvm_ok, why,
        "load kvm_intel or kvm_amd and give yourself access to /dev/kvm (the kvm group); "
        "qemu VMs fall back to TCG software emulation meanwhile",
    ))
    recent = kvm_failed_recently()
    checks.append(Check(
        "no recent KVM failure", recent is None, recent or "none remembered: VMs use KVM when /dev/kvm works",
        "VMs boot under TCG software emulation (slower) until then", False,
    ))
    for label, cmd, pkg in (
        ("qemu", ["qemu-system-x86_64", "--version"], "qemu-system-x86"),
        ("qemu-img", ["qemu-img", "--version"], "qemu-utils"),
    ):
        version = _version(cmd)
        checks.append(Check(label, version is not None, version or "not found", f"apt-get install {pkg}",
                            label in needs))
    image = image_for()
    built = image.built
    checks.append(Check(
        "micro VM image", built, str(image.dir) if built else "not built yet",
        "`workshop vm up NAME` builds it once (needs root, debootstrap, e2fsprogs and Debian's mirror)",
    ))
    checks.append(_orphan_vms_check())
    for label, cmd, pkg in (
        ("debootstrap", ["debootstrap", "--version"], "debootstrap"),
        ("mkfs.ext4", ["mkfs.ext4", "-V"], "e2fsprogs"),
    ):
        version = _version(cmd)
        checks.append(Check(
            label, version is not None, version or "not found", f"apt-get install {pkg}", label in needs and not built,
        ))
    for label, cmd, fix in (
        ("bakerx", ["bakerx", "--version"], "npm install -g ottomatica/bakerx"),
        ("VBoxManage", ["VBoxManage", "--version"], "install VirtualBox (https://www.virtualbox.org)"),
        ("vagrant", ["vagrant", "--version"], "install Vagrant (apt-get install vagrant, or HashiCorp's package)"),
    ):
        version = _version(cmd)
        checks.append(Check(label, version is not None, version or "not found", fix, label in needs))
    return checks


def _orphan_vms_check() -> Check:
    from .vm.clone import orphans

    names = [entry.name for entry, _ in orphans()]
    return Check(
        "fresh VMs of dead graders", not names, "none" if not names else ", ".join(names),
        "`workshop vm sweep` stops and removes them (the next fresh VM does too)",
    )


# The parts of a machine's setup (`scripts/setup` in a clone of workshop
# installs each one; its README's "Installing" says how much), the commands
# each needs here and the Debian package of each command.
PARTS = (
    ("local notebooks", "", (("busybox", "busybox-static"), ("unshare", "util-linux"), ("nsenter", "util-linux"),
                             ("ps", "procps"), ("ip", "iproute2"), ("runc", "runc"), ("skopeo", "skopeo"))),
    ("qemu micro VM", "--vm", (("qemu-system-x86_64", "qemu-system-x86"), ("qemu-img", "qemu-utils"),
                               ("debootstrap", "debootstrap"), ("mkfs.ext4", "e2fsprogs"),
                               ("ssh-keygen", "openssh-client"))),
    ("Vagrant", "--vagrant", (("vagrant", "vagrant"),)),
    ("Docker", "--docker", (("docker", "docker.io"), ("dockerd", "docker.io"))),
    ("Go (notebook 9)", "--go", (("go", "golang-go"),)),
)


def _have(tool: str) -> bool:
    return bool(shutil.which(tool)) or any(os.path.exists(f"{d}/{tool}") for d in ("/usr/sbin", "/sbin"))


def part_checks(needs: frozenset[str] = frozenset()) -> list[Check]:
    """One row per part: what of it is missing here and the command that installs it;
    ``needs``: the rows the target cannot work without."""
    checks = []
    for label, option, tools in PARTS:
        missing = sorted({package for tool, package in tools if not _have(tool)})
        command = " ".join(("bash scripts/setup", option)).strip()
        fix = f"`{command}` in a clone of workshop, or apt-get install {' '.join(missing)}" if missing else ""
        checks.append(Check(
            f"setup: {label}", not missing, "all there" if not missing else f"missing {', '.join(missing)}", fix,
            f"setup: {label}" in needs,
        ))
    checks.append(Check(
        "setup: SSH targets", True, "nothing to install here (the kernel speaks SSH itself)", "",
    ))
    checks.append(engine_check("Docker engine" in needs))
    return checks


def engine_check(required: bool) -> Check:
    """Whether the lab's Docker engine answers on this machine, and how to get it to."""
    from .engine import engine_problem, server_version

    version = server_version()
    if version:
        return Check("Docker engine", True, f"answers (Docker {version})", "", required)
    problem = engine_problem() or "the Docker engine did not answer"
    found, _, fix = problem.partition("; ")
    return Check("Docker engine", False, found, fix, required)


PROBE = r"""
echo "uid=$(id -u)"
if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then echo sudo=yes; else echo sudo=no; fi
fs=$(stat -fc %T /sys/fs/cgroup 2>/dev/null)
if [ "$fs" = cgroup2fs ]; then echo cgroup=2
elif [ -d /sys/fs/cgroup/memory ] || grep -q ' cgroup ' /proc/mounts 2>/dev/null; then echo cgroup=1
else echo cgroup=none; fi
if grep -qw overlay /proc/filesystems 2>/dev/null; then echo overlay=yes
elif modprobe -n overlay >/dev/null 2>&1 || ls /lib/modules/"$(uname -r)"/kernel/fs/overlayfs >/dev/null 2>&1; then
  echo overlay=module
else echo overlay=no; fi
u=$(command -v unshare 2>/dev/null); echo "unshare=${u:-no}"
b=$(command -v busybox 2>/dev/null)
if [ -n "$b" ]; then
  if ldd "$b" >/dev/null 2>&1; then echo "busybox=$b (dynamic)"; else echo "busybox=$b (static)"; fi
else echo busybox=no; fi
echo "kernel=$(uname -sr)"
"""


def _probe_output(target: Target) -> tuple[str | None, str, str]:
    """Run PROBE and the dry-run sweep for dead kernels' leftovers on the
    target; (probe output, error, sweep output)."""
    transport = target.open()
    try:
        result = transport.exec("sh -c " + shlex.quote(PROBE), timeout=60)
        sweep = transport.exec("sh -c " + shlex.quote(sweep_script(dry_run=True)), timeout=60)
    except TargetError as exc:
        return None, str(exc), ""
    finally:
        transport.close()
    if not result.stdout.strip():
        return None, result.problem(), ""
    return result.stdout, "", sweep.stdout


def _leftovers_check(sweep_output: str) -> Check:
    found = parse_sweep(sweep_output)
    items = [item for listed in found.values() for item in listed]
    shown = "; ".join(items[:6]) + (f" (+{len(items) - 6} more)" if len(items) > 6 else "")
    return Check(
        "leftovers of dead kernels", not found,
        "none" if not found else f"{len(found)} kernel(s) that died left: {shown}",
        "run %cleanup in a notebook on this target (any new kernel there removes them too)", False,
    )


def target_checks(spec: str, settings: Settings | None = None) -> list[Check]:
    try:
        target = parse_target(spec, settings)
    except TargetError as exc:
        return [Check("target", False, str(exc), "give a valid --target", True)]
    not_ready = target.not_ready()
    if not_ready is not None:
        return [Check("target reachable", False, *not_ready, True)]
    fix = target.start_hint()
    try:
        target.prepare(None)
    except TargetError as exc:
        return [Check("target reachable", False, str(exc), fix, True)]
    output, error, sweep = _probe_output(target)
    where = target.describe()
    if output is None:
        return [Check("target reachable", False, error or "no answer", fix, True)]
    facts = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    checks = [Check("target reachable", True, f"{where}, {facts.get('kernel', '?')}", required=True)]
    root = facts.get("uid") == "0"
    sudo = facts.get("sudo") == "yes"
    checks.append(Check(
        "root or sudo on the target", root or sudo,
        "root" if root else "passwordless sudo" if sudo else f"uid {facts.get('uid', '?')}, no passwordless sudo",
        "log in as root, or allow passwordless sudo for this user (mounts, namespaces and cgroups need it)",
        True,
    ))
    cg = facts.get("cgroup", "none")
    checks.append(Check(
        "cgroup version", cg in ("1", "2"), {"2": "v2 (unified)", "1": "v1"}.get(cg, "no cgroup file system mounted"),
        "mount cgroup2 on /sys/fs/cgroup (or boot with systemd.unified_cgroup_hierarchy=1)", True,
    ))
    ov = facts.get("overlay", "no")
    checks.append(Check(
        "overlayfs", ov != "no", {"yes": "in /proc/filesystems", "module": "as a module"}.get(ov, "not available"),
        "use a kernel with overlayfs (CONFIG_OVERLAY_FS)", True,
    ))
    un = facts.get("unshare", "no")
    checks.append(Check("unshare", un != "no", un if un != "no" else "not found", "apt-get install util-linux", True))
    bb = facts.get("busybox", "no")
    checks.append(Check(
        "busybox", bb != "no" and "static" in bb, bb if bb != "no" else "not found",
        "apt-get install busybox-static (a static busybox for root file systems)", True,
    ))
    checks.append(_leftovers_check(sweep))
    return checks


def run_checks(spec: str | None, settings: Settings | None = None) -> list[Check]:
    needs = kind_class(spec or "local").doctor_needs
    checks = host_checks(needs)
    checks.extend(part_checks(needs))
    checks.extend(target_checks(spec or "local", settings))
    return checks
