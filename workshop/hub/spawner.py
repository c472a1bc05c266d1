"""The hub's spawner: JupyterHub's local-process one, with each student's server
started inside the student's own cgroup (``limits.py``), whose ceiling comes from
hub.json when the server starts, and everything left in it ended when it stops."""

from __future__ import annotations

import asyncio
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Unicode

from workshop.hub.config import read_settings, vm_settings
from workshop.hub.limits import StudentCgroup, parent_name, student_ceiling


class StudentSpawner(LocalProcessSpawner):
    hub_dir = Unicode(help="The hub's folder (hub.json: the ceilings).").tag(config=True)

    _student_cgroup: StudentCgroup | None = None

    def _cgroup(self) -> StudentCgroup:
        """The cgroup this server was started in (after a hub restart: the one hub.json names)."""
        if self._student_cgroup is None:
            self._student_cgroup = StudentCgroup(self.user.name, parent_name(read_settings(Path(self.hub_dir))["port"]))
        return self._student_cgroup

    def make_preexec_fn(self, name):
        hub_dir = Path(self.hub_dir)
        settings = read_settings(hub_dir)
        self._student_cgroup = cgroup = StudentCgroup(name, parent_name(settings["port"]))
        cgroup.create(*student_ceiling(settings, vm_settings(hub_dir)))
        join, become_student = cgroup.join_in_child(), super().make_preexec_fn(name)

        def preexec() -> None:
            join()  # as root, before the student's uid: the student cannot undo it
            become_student()
        return preexec

    async def stop(self, now: bool = False) -> None:
        await super().stop(now=now)
        # what the server left (a VM still ending, a process the student detached); in a
        # thread, since ending it may wait seconds and the hub serves the other students meanwhile
        cgroup = self._cgroup()
        if not await asyncio.get_running_loop().run_in_executor(None, cgroup.end):
            self.log.warning("%s's cgroup is still in use: %s", self.user.name, sorted(cgroup.pids()))
