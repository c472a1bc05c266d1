"""The course exchange: assignments released to students, handed in, collected for grading.

The choice: a root-owned course directory for what everyone may read (the released
assignments), and a small collector process, run by the directory's owner, for what
students hand in.  Students never write anywhere in the course directory.

- ``workshop release`` (the instructor) copies the student notebooks of ``workshop
  assign`` into ``COURSE/released/NAME/`` (mode 0644 in 0755 directories owned by the
  course's owner), with the deadline in ``assignment.json``.  The reference never goes there.
- ``workshop fetch`` (a student) copies a released notebook into the student's home,
  as the student: nothing privileged runs, and a notebook already there is kept.
- ``workshop submit`` and ``%submit`` run the notebook's self-check (the visible checks,
  from its records, as ``workshop check`` does), then send the saved notebook to the
  collector over the Unix socket ``COURSE/collector.sock``.  The collector asks the
  kernel who is on the other end (``SO_PEERCRED``): the student's uid is not something
  the request says, so no one can hand in as someone else.  It stamps the submission with
  its own clock (a request that names a time is refused), marks it late against the
  deadline, and files it under ``COURSE/submissions/NAME/USER/STAMP.ipynb`` with a receipt
  beside it, in directories of mode 0700 only the collector's user can enter: students
  can neither read nor overwrite one another's submissions, nor their own earlier ones
  (every resubmission is kept).  Sizes and counts are capped before anything is stored.
- ``workshop collect`` (the instructor) copies the latest submission of each student of
  the roster (the hub's users when the course names a hub, else the course group's
  members) to ``OUT/USER.ipynb``, which ``workshop grade REFERENCE OUT`` takes as it is,
  with ``OUT/collected.csv`` (time, late, how many handed in, digest, missing students).

Why not nbgrader's exchange (a shared directory students write into): its inbound
directory has to be writable by every student, so a student who can guess a file name
can read or replace another's submission; the file names and times come from the client,
so a student can hand in under another name or with a chosen time; and whatever a student
puts in it (a symbolic link to another's file, a file of any size) is later read by the
instructor's tools.  A per-student drop directory (root-owned, group the student, mode
1730) closes the first hole but not the others: the student owns the dropped files, so can
change or delete earlier submissions and set their times, can plant links there for the
collector to follow, and can fill the disk.  The collector needs no setuid program and no
write access for students; its cost is one small process to keep running
(``workshop exchange start``, no systemd needed).  A JupyterHub service that checks the
hub's tokens would close the same holes only where a hub runs; the socket serves every
local user, with the hub or without it.
"""

from __future__ import annotations
