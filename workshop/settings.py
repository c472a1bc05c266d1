"""Every setting of workshop in one typed object, read from ``WORKSHOP_*``.

Each trait names the environment variable it is read from (``env``).  A value
there that does not fit the trait is not dropped silently: it is logged, and
the default stays.  The kernel mixes these traits into its own class, so
``--WorkshopKernel.timeout=30`` on the kernel's command line and a Jupyter
config file work as for any traitlets setting, over the environment.
"""

from __future__ import annotations

import logging
import os

from traitlets import Bool, Enum, Float, HasTraits, Integer, Unicode, default
from traitlets.config import Configurable

DEFAULT_OUTPUT_LIMIT = 8 * 1024 * 1024  # characters per stream per cell shown in the notebook
# ... when a Jupyter server relays it to a browser: JupyterLab renders this much at once without
# freezing the tab (bench/browser_output.py), and at the paced rate it is shown within seconds
DEFAULT_SERVER_OUTPUT_LIMIT = 1024 * 1024
# Seconds a cell may run in a notebook a Jupyter server runs, unless a timeout is set: a
# forgotten `yes` or a hung command ends instead of holding the kernel for the rest of the
# class; long enough for a package install or an image pull.
DEFAULT_NOTEBOOK_TIMEOUT = 600.0


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


class Settings(Configurable):
    """What a session, the VM and the tools read from the environment."""

    target = Unicode("", help="Where cells run when the notebook does not say (WORKSHOP_TARGET).").tag(
        config=True, env="WORKSHOP_TARGET")
    timeout = Float(None, allow_none=True,
                    help="Seconds before a cell is interrupted; 0 or off: never; unset: notebook_timeout in a "
                    "kernel a Jupyter server started, no limit otherwise (WORKSHOP_TIMEOUT).").tag(
        config=True, env="WORKSHOP_TIMEOUT", off=0.0)
    notebook_timeout = Float(DEFAULT_NOTEBOOK_TIMEOUT, min=0,
                             help="Seconds before a cell is interrupted when no timeout is set and a Jupyter "
                             "server started the kernel (a notebook in a browser); 0 or off: never.  Headless "
                             "runs (workshop run, papermill) keep their own limit (WORKSHOP_NOTEBOOK_TIMEOUT).").tag(
        config=True, env="WORKSHOP_NOTEBOOK_TIMEOUT", off=0.0)
    output_limit = Integer(DEFAULT_OUTPUT_LIMIT, min=0,
                           help="Characters per stream per cell shown; 0: no limit (WORKSHOP_OUTPUT_LIMIT).").tag(
        config=True, env="WORKSHOP_OUTPUT_LIMIT")
    server_output_limit = Integer(DEFAULT_SERVER_OUTPUT_LIMIT, min=0,
                                  help="Characters per stream per cell shown when a Jupyter server relays the "
                                  "output to a browser, if fewer than output_limit; 0: output_limit "
                                  "(WORKSHOP_SERVER_OUTPUT_LIMIT).").tag(config=True, env="WORKSHOP_SERVER_OUTPUT_LIMIT")
    saved_output_dir = Unicode("workshop-outputs",
                               help="Where the whole of a cut stream is saved, relative to the kernel's working "
                               "directory (beside the notebook, under Jupyter) (WORKSHOP_SAVED_OUTPUT_DIR).").tag(
        config=True, env="WORKSHOP_SAVED_OUTPUT_DIR")
    iopub_pacing = Enum(["auto", "on", "off"], "auto",
                        help="Pace output to stay under a Jupyter server's IOPub rate limits; 'auto': when a "
                        "server started the kernel (it sets JPY_SESSION_NAME) (WORKSHOP_IOPUB_PACING).").tag(
        config=True, env="WORKSHOP_IOPUB_PACING")
    iopub_data_rate_limit = Integer(1_000_000, min=0,
                                    help="The server's ServerApp.iopub_data_rate_limit in bytes/s that paced "
                                    "output stays well under; 0: no data limit (WORKSHOP_IOPUB_DATA_RATE_LIMIT).").tag(
        config=True, env="WORKSHOP_IOPUB_DATA_RATE_LIMIT")
    records = Bool(True, help="Show each cell's record as an output (WORKSHOP_RECORDS=0 hides it).").tag(
        config=True, env="WORKSHOP_RECORDS")
    target_locked = Bool(False, help="Cells cannot change where they run: %target is refused and the "
                         "notebook's metadata ignored (WORKSHOP_TARGET_LOCKED=1; set by grading reruns).").tag(
        config=True, env="WORKSHOP_TARGET_LOCKED")
    isolate_cells = Bool(False, help="Run each cell in a subshell that hands only its variables and working "
                         "directory to the next, except the cells the run vouches for (WORKSHOP_ISOLATE_CELLS=1; "
                         "set by grading reruns, which vouch for the instructor's locked cells).").tag(
        config=True, env="WORKSHOP_ISOLATE_CELLS")
    bashrc = Bool(False, help="Source the target user's ~/.bashrc when a bash shell starts, for its aliases and "
                  "functions; off so that a notebook runs the same for everyone, and never in grading reruns "
                  "(WORKSHOP_BASHRC=1).").tag(config=True, env="WORKSHOP_BASHRC")
    ordered_output = Bool(True, help="Deliver a cell's stdout and stderr in the order they were written (the "
                          "target's shell writes to sockets through a relay); 0: plain pipes, for programs "
                          "that open /dev/stdout by name (WORKSHOP_ORDERED_OUTPUT=0).").tag(
        config=True, env="WORKSHOP_ORDERED_OUTPUT")
    failed_check = Enum(["record", "error"], "record",
                        help="'error': a failed check also fails the cell (WORKSHOP_FAILED_CHECK).").tag(
        config=True, env="WORKSHOP_FAILED_CHECK")
    ssh_config = Unicode(help="The ssh_config file ssh:ALIAS targets read (WORKSHOP_SSH_CONFIG).").tag(
        config=True, env="WORKSHOP_SSH_CONFIG")
    course_dir = Unicode("/srv/workshop-course", help="The course's exchange: released assignments, the hand-in "
                         "collector's socket, the submissions (WORKSHOP_COURSE_DIR).").tag(
        config=True, env="WORKSHOP_COURSE_DIR")
    data_dir = Unicode(help="The tool's own state: known hosts, VMs (WORKSHOP_DATA_DIR).").tag(
        config=True, env="WORKSHOP_DATA_DIR")
    vm_cache = Unicode("", help="Where built VM images are kept (WORKSHOP_VM_CACHE).").tag(
        config=True, env="WORKSHOP_VM_CACHE")
    vm_accel = Enum(["auto", "kvm", "tcg"], "auto", help="qemu acceleration (WORKSHOP_VM_ACCEL).").tag(
        config=True, env="WORKSHOP_VM_ACCEL")
    vm_boot_timeout = Float(None, allow_none=True,
                            help="Seconds of its own time a TCG VM may take to answer on SSH; time the "
                            "host's other load keeps it from a CPU is not counted (WORKSHOP_VM_BOOT_TIMEOUT).").tag(
        config=True, env="WORKSHOP_VM_BOOT_TIMEOUT")
    vm_cpus = Integer(min=1, help="Virtual CPUs of a new VM (WORKSHOP_VM_CPUS).").tag(
        config=True, env="WORKSHOP_VM_CPUS")
    vm_memory = Integer(1024, min=128, help="Memory of a new VM in MB (WORKSHOP_VM_MEMORY).").tag(
        config=True, env="WORKSHOP_VM_MEMORY")
    vm_network = Enum(["user", "none"], "user",
                      help="An interactive VM's network: qemu's user network (the host and beyond), or none "
                      "(SSH in, nothing out; rerun VMs always have none) (WORKSHOP_VM_NETWORK).").tag(
        config=True, env="WORKSHOP_VM_NETWORK")
    vm_init = Enum(["busybox", "systemd"], "busybox",
                   help="The VM's init: the tool's busybox init or systemd (WORKSHOP_VM_INIT).").tag(
        config=True, env="WORKSHOP_VM_INIT")
    vm_mirror = Unicode("", help="The Debian mirror VM images are built from (WORKSHOP_VM_MIRROR).").tag(
        config=True, env="WORKSHOP_VM_MIRROR")
    vm_restore = Bool(False, help="A qemu: VM is restored from the VM snapshot in the (shared, read-only) "
                      "image cache, never booted from scratch: sealed from every network, with a login key of its "
                      "own, stopped with the kernel, replaced when it stops (WORKSHOP_VM_RESTORE=1; a course hub "
                      "sets it).").tag(config=True, env="WORKSHOP_VM_RESTORE")
    vm_idle_minutes = Float(0, min=0, help="Minutes without a cell after which a restored VM (vm_restore) is "
                            "stopped; the next cell restores a new one and says so; 0: never "
                            "(WORKSHOP_VM_IDLE_MINUTES).").tag(config=True, env="WORKSHOP_VM_IDLE_MINUTES")
    vm_max_per_user = Integer(0, min=0, help="Restored VMs one user may run at once; 0: no limit "
                              "(WORKSHOP_VM_MAX_PER_USER).").tag(config=True, env="WORKSHOP_VM_MAX_PER_USER")
    vm_max_running = Integer(0, min=0, help="The tool's VMs the machine runs at once, all users together, before a "
                             "restored VM is refused; 0: no limit (WORKSHOP_VM_MAX_RUNNING).").tag(
        config=True, env="WORKSHOP_VM_MAX_RUNNING")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        read_environment(self, given=set(kwargs))

    @default("data_dir")
    def _default_data_dir(self) -> str:
        base = _env("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
        return os.path.join(base, "workshop")

    @default("vm_cpus")
    def _default_vm_cpus(self) -> int:
        return min(2, os.cpu_count() or 1)

    @default("ssh_config")
    def _default_ssh_config(self) -> str:
        return os.path.join(os.path.expanduser("~"), ".ssh", "config")


def read_environment(obj: HasTraits, log: logging.Logger | None = None, given: set[str] = frozenset()) -> None:
    """Set each trait tagged ``env`` from its variable, unless config or the
    constructor (``given``) already set it."""
    log = log or logging.getLogger("workshop")
    given = set(given) | _configured(obj)
    for name, trait in obj.traits(env=lambda v: v is not None).items():
        variable = trait.metadata["env"]
        text = _env(variable)
        if text is None or name in given:
            continue
        try:
            setattr(obj, name, _convert(trait, text))
        except (ValueError, TypeError) as exc:
            log.warning("%s=%r is not usable (%s); using %r", variable, text, exc, getattr(obj, name))


def _configured(obj: HasTraits) -> set[str]:
    """Traits that traitlets config (command line, config file) set on ``obj``."""
    config = getattr(obj, "config", None)
    if config is None:
        return set()
    names: set[str] = set()
    for cls in type(obj).mro():
        section = config.get(cls.__name__) if cls.__name__ in config else None
        if section:
            names.update(section)
    return names


def _convert(trait, text: str):
    if isinstance(trait, Bool):
        lowered = text.strip().lower()
        if lowered not in ("0", "1", "true", "false", "yes", "no", "on", "off"):
            raise ValueError("write 1 or 0")
        return lowered in ("1", "true", "yes", "on")
    if isinstance(trait, Integer):
        return int(text.strip())
    if isinstance(trait, Float):
        value = text.strip().lower()
        return trait.metadata.get("off") if value in ("off", "none") else float(value)
    return text
