"""The guest agent of fresh VMs, and the host's side of it.

The agent is a Perl program (the image's perl-base: nothing to install) that
starts in the snapshot's guest before the snapshot is saved, so every fresh VM
restored from it has the agent running from memory since before any student
code existed.  It talks to the host over a virtio-serial port only (never SSH,
never the student's shell), and it does two jobs:

1. **Personalising a clone** (see clone.py): the host's randomness, clock, a
   host key of the clone's own, a new machine-id.
2. **Judging from outside the student's reach** (a *sealed* VM, i.e. every
   fresh VM, which is what reruns use).  The student is root in a rerun VM
   while their cells run, so a check run through sshd, the student's shell,
   ``env`` or any program the student could replace could be made to pass.
   The agent instead:

   - before the snapshot was saved: entered a mount namespace of its own with a
     fresh ``/proc`` (the student's mounts never reach it), and set inotify
     watches on every directory of programs and libraries (``/usr`` but its
     data, ``/etc/ld.so.conf.d``, ``/etc/alternatives``) and on ``/`` and
     ``/etc`` for the names that steer every program (``/bin``,
     ``/etc/ld.so.preload``, ``/etc/ld.so.cache``...); the kernel keeps
     those watches whatever the student does, and reports every change made
     through any path or mount;
   - when sealed: allows no ``ptrace`` at all (Yama's ptrace_scope 3, which
     nothing can lower again before a reboot), so no process can read or
     change the agent's memory; keeps a list of one-time tokens from the host
     in that memory, one of which signs each answer, so a process that killed
     the agent and took over its port cannot answer in its name;
   - runs each check the host sends at the moment it runs (the source never
     touches the guest's disk or a command line): ``/bin/bash`` by absolute
     path, an empty environment, no rc files, in a copy of the student shell's
     mount namespace with a fresh ``/proc`` on top, in the student shell's
     real working directory (the kernel's, not ``$PWD``);
   - before and after each check, and once more after the last cell, reports
     every change to those watched places and every mount the student put over
     ``/``, ``/usr``, ``/etc``, ``/proc``, ``/sys`` or ``/dev`` (a bind mount over
     ``/proc/self/mounts``, a tmpfs over ``/usr/bin``...).  The kernel marks
     the checks that ran on a changed system as not counted, and the grader
     flags the submission ``system-tampered`` with what was changed.

   - makes the cgroup the student's shells join as they start
     (``shell.framing.CELLS_CGROUP``): at most ``CELLS_PIDS`` processes, all
     the memory but what the agent, sshd and the relay keep, and the least
     weight on the CPU, so a fork bomb is stopped there, the checks still run,
     and the rerun names the limit it hit.

What this cannot see (a student's kernel module, say) is stated in the
README's trust section.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..lock import FileLock
from ..shell.framing import CELLS_CGROUP
from ..shell.result import CommandResult
from .qmp import QMP, QMPError

PORT_NAME = "workshop.setup"
TOKEN_BYTES = 16
TOKENS = 4096  # answers a sealed VM can sign: far more checks than a notebook has
OUTPUT_LIMIT = 1 << 20  # bytes of each stream of a check kept (as the SSH path keeps)
# A running check's agent says it is alive every second; this long without a word, it is gone.
# (Generous: under software emulation on a loaded host a guest can wait seconds for a CPU.)
SILENCE = 20.0
# The student's processes in a sealed VM (their shells join CELLS_CGROUP): at most this
# many at once, and all the VM's memory but this much, which the agent, sshd and the relay keep.
CELLS_PIDS = 256
CELLS_RESERVE_MB = 160

AGENT = r"""# workshop's guest agent (see workshop/vm/agent.py): personalises a clone,
# then, when sealed, runs the host's checks and reports changes to the system.
use strict;
use warnings;
my $dev;
for (1 .. 200) {
    for my $p (glob "/sys/class/virtio-ports/*") {
        open(my $n, "<", "$p/name") or next;
        my $name = <$n> // "";
        chomp $name;
        $dev = "/dev/" . (split m{/}, $p)[-1] if $name eq "PORT_NAME";
    }
    last if $dev && -c $dev;
    select(undef, undef, undef, 0.05);
}
die "workshop agent: no setup port\n" unless $dev && -c $dev;
open(my $port, "+<", $dev) or die "workshop agent: $dev: $!\n";
binmode $port;

sub _lines { my ($f) = @_; open(my $h, "<", $f) or return (); my @l = <$h>; chomp @l; return @l; }
my %sys_fs = map { $_ => 1 } qw(sysfs cgroup cgroup2 securityfs debugfs tracefs pstore bpf configfs fusectl);

# ---- a view of the system the student's mounts cannot reach ----------------------
my ($none, $slash, $procfs, $procdir) = ("none", "/", "proc", "/proc");
my $own_ns = syscall(272, 0x20000) == 0                                   # unshare(CLONE_NEWNS)
    && syscall(165, $none, $slash, $none, 0x4000 | 0x40000, 0) == 0       # mount --make-rprivate /
    && syscall(165, $procfs, $procdir, $procfs, 2 | 4 | 8, 0) == 0;       # a fresh proc on /proc
my %baseline_mounts = map { (split / /)[0] => 1 } _lines("/proc/1/mountinfo");

# ---- inotify watches on what steers every program ------------------------------
my $ifd = syscall(294, 04000 | 02000000);                                 # inotify_init1(NONBLOCK|CLOEXEC)
my $inot;
open($inot, "<&=", $ifd) if $ifd >= 0;
my $MASK = 0x2 | 0x4 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800;
my (%watched, %only);    # wd -> directory; wd -> names that count there (the others do not)
sub watch {
    my ($dir, $names) = @_;
    my $path = $dir;
    my $wd = syscall(254, $ifd, $path, $MASK | 0x01000000 | 0x02000000);   # ONLYDIR|DONT_FOLLOW
    return 0 if $wd < 0;
    $watched{$wd} = $dir;
    $only{$wd} = $names if $names;
    return 1;
}
my %data = map { $_ => 1 } qw(/usr/share /usr/include /usr/src /usr/games);
my %code = map { $_ => 1 } qw(/usr/share/perl /usr/share/perl5);
sub watch_tree {
    my ($dir) = @_;
    return if $data{$dir};
    watch($dir) or return;
    opendir(my $dh, $dir) or return;
    my @entries = readdir $dh;
    closedir $dh;
    for my $e (@entries) {
        next if $e eq "." || $e eq "..";
        my $p = $dir eq "/" ? "/$e" : "$dir/$e";
        next if -l $p;
        watch_tree($p) if -d _;
    }
}
if ($inot) {
    watch("/", { map { $_ => 1 } qw(bin sbin lib lib32 lib64 libx32 usr etc) });
    watch("/etc", { map { $_ => 1 } qw(ld.so.preload ld.so.conf ld.so.conf.d ld.so.cache alternatives
                                       environment bash.bashrc profile) });
    watch_tree($_) for grep { -d $_ && !-l $_ } qw(/usr /etc/ld.so.conf.d /etc/alternatives);
    watch_tree($_) for grep { -d $_ } sort keys %code;
}
my @changes;     # what the student changed, in the order it was seen
my %seen_change;
sub note {
    my ($what) = @_;
    return if $seen_change{$what}++;
    push @changes, @changes < 40 ? $what : @changes == 40 ? "(more changes not listed)" : ();
}
note("the agent has no mount namespace of its own") unless $own_ns;
note("the agent cannot watch the system (no inotify)") unless $inot;
my (@limits, %seen_limit);    # limits of the VM the student's code ran into (a full disk, no more processes)
sub limit { my ($what) = @_; push @limits, $what unless $seen_limit{$what}++; }
sub check_disk {
    my ($buf, $root) = ("\0" x 128, "/");
    return unless syscall(137, $root, $buf) == 0;    # statfs
    my (undef, $bsize, $blocks, undef, $bavail) = unpack("q5", $buf);
    limit("the VM's disk was full") if $blocks > 0 && $bavail * $bsize < (8 << 20);
}
sub drain {
    my ($keep) = @_;
    return unless $inot;
    while (1) {
        my $n = sysread($inot, my $buf, 65536);
        last unless $n;
        my $off = 0;
        while ($off + 16 <= length $buf) {
            my ($wd, $mask, $cookie, $len) = unpack("l L L L", substr($buf, $off, 16));
            my $name = substr($buf, $off + 16, $len);
            $name =~ s/\0+\z//;
            $off += 16 + $len;
            next unless $keep;
            if ($mask & 0x4000) { note("more changes to system files than can be listed"); next; }
            next if $mask & 0x8000;    # IN_IGNORED: the watch itself went (its directory was deleted)
            my $dir = $watched{$wd} // "?";
            next if $only{$wd} && !($name ne "" && $only{$wd}{$name});
            my $path = $name eq "" ? $dir : ($dir eq "/" ? "/$name" : "$dir/$name");
            my $verb = ($mask & 0x100) ? "created" : ($mask & (0x200 | 0x400)) ? "deleted"
                     : ($mask & (0x40 | 0x80 | 0x800)) ? "moved" : ($mask & 0x4) ? "changed (attributes)"
                     : "modified";
            note("$verb $path");
        }
    }
}
sub scan_mounts {
    my ($pid) = @_;
    $pid = "" unless defined $pid && $pid =~ /^\d+$/;
    for my $who (1, ($pid ? $pid : ())) {
        for my $line (_lines("/proc/$who/mountinfo")) {
            my @f = split / /, $line;
            next if $baseline_mounts{$f[0]};
            my ($root, $point) = ($f[3], $f[4]);
            my ($sep) = grep { $f[$_] eq "-" } 6 .. $#f;
            my $fstype = defined $sep ? $f[$sep + 1] : "?";
            $point =~ s/\\([0-7]{3})/chr(oct($1))/ge;
            my $bad = $point eq "/" || $point =~ m{^/(usr|bin|sbin|lib|lib32|lib64|libx32|etc)(/|\z)}
                || $point =~ m{^/proc/} || ($point eq "/proc" && $fstype ne "proc")
                || ($point =~ m{^/sys(/|\z)} && (!$sys_fs{$fstype} || $root ne "/"))
                || ($point =~ m{^/dev(/|\z)} && $point ne "/dev/mqueue");
            note("mounted $fstype over $point") if $bad;
        }
    }
    note("exists /etc/ld.so.preload") if -e "/etc/ld.so.preload";
}
sub scan { my ($pid) = @_; drain(1); scan_mounts($pid); check_disk(); check_cells(); return join("\n", @changes); }

open(my $ready, ">", "/run/workshop-agent.ready") or die "workshop agent: $!\n";
close $ready;

# ---- requests: "name hex" lines, then "end" --------------------------------------
my $inbuf = "";
sub read_request {
    my %req;
    while (1) {
        while ($inbuf !~ /\n/) {
            my $n = sysread($port, my $chunk, 65536);
            die "workshop agent: the port closed\n" unless $n;
            $inbuf .= $chunk;
        }
        $inbuf =~ s/\A([^\n]*)\n//;
        my $line = $1;
        return \%req if $line eq "end";
        next if $line eq "stop";   # a stop that came after its check had ended
        my ($k, $v) = split / /, $line, 2;
        $req{$k} = pack("H*", $v // "");
    }
}
sub answer {
    my (%a) = @_;
    my $text = join("", map { "$_ " . unpack("H*", $a{$_}) . "\n" } sort keys %a) . "end\n";
    while (length $text) {
        my $n = syswrite($port, $text);
        die "workshop agent: the port closed\n" unless defined $n;
        substr($text, 0, $n) = "";
    }
}

my $req = read_request();
sub fail { answer(error => $_[0]); die "workshop agent: $_[0]\n"; }
sub put {
    my ($path, $mode, $data) = @_;
    open(my $f, ">", "$path.new") or fail("$path: $!");
    chmod($mode, "$path.new");
    print $f $data or fail("$path: $!");
    close $f or fail("$path: $!");
    rename("$path.new", $path) or fail("$path: $!");
}
exists $req->{$_} or fail("no $_ in the request") for qw(seed time key pub);
# the host's bytes into the input pool, then a reseed of the CRNG now (RNDRESEEDCRNG)
open(my $rnd, ">", "/dev/urandom") or fail("urandom: $!");
syswrite($rnd, $req->{seed}) or fail("urandom: $!");
ioctl($rnd, 0x5207, 0) or fail("reseed: $!");
close $rnd;
# the host's clock: clock_settime(CLOCK_REALTIME), syscall 227 on x86_64
my ($sec, $nsec) = split /\./, $req->{time};
syscall(227, 0, pack("q q", $sec, $nsec)) == 0 or fail("clock: $!");
put("/etc/ssh/ssh_host_ed25519_key", 0600, $req->{key});
put("/etc/ssh/ssh_host_ed25519_key.pub", 0644, $req->{pub});
# a login key of this VM's own, in place of the image's (sshd reads it at every login)
if (exists $req->{login}) { mkdir("/root/.ssh", 0700); put("/root/.ssh/authorized_keys", 0600, $req->{login}); }
open(my $u, "<", "/proc/sys/kernel/random/uuid") or fail("uuid: $!");
my $id = <$u>;
$id =~ tr/-\n//d;
put("/etc/machine-id", 0444, "$id\n");
my $tokens = $req->{tokens};
unless (defined $tokens) { answer(ok => "ok"); exit 0; }

# ---- sealed: nothing may reach into this process ---------------------------------
drain(0);    # the agent's own writes above
if (open(my $y, ">", "/proc/sys/kernel/yama/ptrace_scope")) { print $y "3\n"; close $y; }
my $yama = join("", _lines("/proc/sys/kernel/yama/ptrace_scope"));
if (open(my $o, ">", "/proc/self/oom_score_adj")) { print $o "-1000\n"; close $o; }
$SIG{PIPE} = "IGNORE";

# ---- the student's processes: a cgroup with limits, which their shells join ------
# (a fork bomb stops at its limit; the agent, sshd and the relay stay outside it,
# with memory kept for them and first call on the CPU)
sub put_line { my ($f, $v) = @_; open(my $h, ">", $f) or return 0; print $h "$v\n"; return close $h; }
my $cells = "CELLS_CGROUP";
if ((mkdir($cells) || -d $cells) && put_line("$cells/pids.max", CELLS_PIDS)) {
    put_line("$cells/cpu.weight", 10);
    my ($kb) = map { /^MemTotal:\s+(\d+)/ ? $1 : () } _lines("/proc/meminfo");
    put_line("$cells/memory.max", ($kb - CELLS_RESERVE_KB) * 1024) if $kb && $kb > 2 * CELLS_RESERVE_KB;
}
sub check_cells {
    my %pids = map { split / / } _lines("$cells/pids.events");
    limit("the student's processes reached the VM's limit of CELLS_PIDS at once (a fork bomb?)") if $pids{max};
    my %mem = map { split / / } _lines("$cells/memory.events");
    limit("the student's processes ran out of the VM's memory (the kernel ended $mem{oom_kill} of them)")
        if $mem{oom_kill};
}
answer(ok => "ok", ptrace_scope => $yama);

my $last = -1;
sub sign {
    my ($n) = @_;
    return "" unless $n =~ /^\d+$/ && $n > $last && ($n + 1) * TOKEN_BYTES <= length $tokens;
    $last = $n;
    return substr($tokens, $n * TOKEN_BYTES, TOKEN_BYTES);
}
sub run_check {
    my ($r) = @_;
    my $pid = ($r->{pid} // "") =~ /^(\d+)$/ && -d "/proc/$1" ? $1 : 1;
    my $timeout = ($r->{timeout} // "") =~ /^(\d+(?:\.\d+)?)$/ ? $1 : 60;
    pipe(my $pr, my $pw) or return (255, "", "agent: pipe: $!", 0);
    pipe(my $or, my $ow) or return (255, "", "agent: pipe: $!", 0);
    pipe(my $er, my $ew) or return (255, "", "agent: pipe: $!", 0);
    my $child = fork();
    unless (defined $child) {
        limit("the VM could not start another process (a fork bomb?): $!");
        return (255, "", "agent: fork: $!", 0);
    }
    if ($child == 0) {
        close $_ for ($pw, $or, $er);
        open(STDOUT, ">&", $ow);
        open(STDERR, ">&", $ew);
        syscall(112);    # setsid: the check and all it starts are one group to stop
        open(my $ns, "<", "/proc/$pid/ns/mnt") or die "agent: the shell's namespace: $!\n";
        syscall(308, fileno($ns), 0x20000) == 0 or die "agent: setns: $!\n";
        my ($n2, $s2, $p2, $d2) = ("none", "/", "proc", "/proc");
        syscall(272, 0x20000) == 0 or die "agent: unshare: $!\n";
        syscall(165, $n2, $s2, $n2, 0x4000 | 0x40000, 0) == 0 or die "agent: private mounts: $!\n";
        syscall(165, $p2, $d2, $p2, 2 | 4 | 8, 0) == 0 or die "agent: proc: $!\n";
        # the shell's real directory, by its path in this copy of the shell's mounts (its
        # PWD is not read); a directory held open from the agent's own namespace would
        # leave the check's mounts there refused (EINVAL)
        chdir(readlink("/proc/$pid/cwd") // "/") or chdir("/");
        # the agent itself is never the OOM killer's choice; a check's processes are
        # (a memory cgroup's limit must kill what it caught, not fail its allocations)
        if (open(my $o, ">", "/proc/self/oom_score_adj")) { print $o "0\n"; close $o; }
        open(STDIN, "<", "/dev/null");
        fcntl($pr, 2, 0);    # F_SETFD: the program's pipe stays open across exec
        %ENV = (PATH => "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                LANG => "C.UTF-8", TERM => "dumb", HOME => "/root");
        exec { "/bin/bash" } "bash", "--norc", "--noprofile", "/proc/self/fd/" . fileno($pr);
        die "agent: bash: $!\n";
    }
    close $_ for ($pr, $ow, $ew);
    my $program = $r->{program} // "";
    my %out = (fileno($or) => "", fileno($er) => "");
    my %open = (fileno($or) => $or, fileno($er) => $er);
    my $deadline = time() + $timeout;
    my $ended = 0;    # 1: stopped by the host, 2: timed out
    my $beat = 0;
    while (%open) {
        if (time() != $beat) { syswrite($port, "beat\n"); $beat = time(); }    # alive, for the host
        my ($rin, $win) = ("", "");
        vec($rin, $_, 1) = 1 for keys %open;
        vec($rin, fileno($port), 1) = 1;
        vec($win, fileno($pw), 1) = 1 if $pw;
        my $left = $deadline - time();
        if ($left <= 0) { $ended = 2; last; }
        select(my $rout = $rin, my $wout = $win, undef, $left < 0.5 ? $left : 0.5) >= 0 or next;
        if ($pw && vec($wout, fileno($pw), 1)) {
            my $n = syswrite($pw, $program);
            if (!defined $n || $n == length $program) { close $pw; undef $pw; }
            else { substr($program, 0, $n) = ""; }
        }
        if (vec($rout, fileno($port), 1)) {
            my $n = sysread($port, my $chunk, 4096);
            $inbuf .= $chunk if $n;
            if ($inbuf =~ s/^stop\n//m) { $ended = 1; last; }
        }
        for my $fd (keys %open) {
            next unless vec($rout, $fd, 1);
            my $n = sysread($open{$fd}, my $chunk, 65536);
            if (!$n) { delete $open{$fd}; next; }
            $out{$fd} .= $chunk if length($out{$fd}) < OUTPUT_LIMIT;
        }
    }
    close $pw if $pw;
    while (!$ended && waitpid($child, 1) == 0) {    # WNOHANG: its output ended, it may not have
        if (time() > $deadline) { $ended = 2; last; }
        select(undef, undef, undef, 0.05);
    }
    if ($ended) { kill("KILL", -$child); waitpid($child, 0); }
    my $status = $ended == 1 ? 130 : $ended == 2 ? 124 : ($? & 127) ? 128 + ($? & 127) : $? >> 8;
    return ($status, substr($out{fileno($or)}, 0, OUTPUT_LIMIT), substr($out{fileno($er)}, 0, OUTPUT_LIMIT),
            $ended);
}
while (1) {
    my $r = read_request();
    my $n = $r->{n} // "";
    my $token = sign($n);
    my $op = $r->{op} // "";
    if ($op eq "check") {
        my $before = scan($r->{pid});
        my ($status, $out, $err, $ended) = run_check($r);
        answer(n => $n, token => $token, status => $status, stdout => $out, stderr => $err,
               ended => $ended, before => $before, changes => scan($r->{pid}), limits => join("\n", @limits));
    } else {
        answer(n => $n, token => $token, changes => scan($r->{pid}), limits => join("\n", @limits));
    }
}
""".replace("PORT_NAME", PORT_NAME).replace("TOKEN_BYTES", str(TOKEN_BYTES)).replace(
    "OUTPUT_LIMIT", str(OUTPUT_LIMIT)).replace("CELLS_CGROUP", CELLS_CGROUP).replace(
    "CELLS_PIDS", str(CELLS_PIDS)).replace("CELLS_RESERVE_KB", str(CELLS_RESERVE_MB * 1024))


class AgentGone(Exception):
    """The agent did not answer, or not with its token: a student killed or replaced it."""


class VMBusy(Exception):
    """The agent holds its port but did not answer: the guest has no time left for it (a fork bomb)."""


@dataclass
class AgentAnswer:
    status: int = 0
    stdout: str = ""
    stderr: str = ""
    interrupted: bool = False
    timed_out: bool = False
    changes: list[str] = field(default_factory=list)  # what the student changed in the system, so far


def new_tokens() -> bytes:
    return secrets.token_bytes(TOKEN_BYTES * TOKENS)


def save_tokens(vm_dir: Path, tokens: bytes) -> None:
    """Keep the tokens on the host, readable by the grader's user only."""
    path = vm_dir / "agent.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"tokens": tokens.hex(), "next": 0}, f)


def is_sealed(vm_dir: Path) -> bool:
    return (vm_dir / "agent.json").exists()


class GuestAgent:
    """The host's end of a sealed VM's agent: the FIFOs behind its port (clone.py)
    and the tokens that sign its answers.  One request at a time, from any process
    of the grader (the kernel during the run, the grader after it)."""

    def __init__(self, vm_dir: Path):
        self.dir = vm_dir

    def check(self, program: bytes, shell_pid: int | None, timeout: float,
              stop: threading.Event | None = None) -> AgentAnswer:
        """Run a check program (bash) as the agent does; raises AgentGone."""
        fields = {"op": b"check", "program": program, "pid": str(shell_pid or "").encode(),
                  "timeout": f"{timeout:g}".encode()}
        reply = self._ask(fields, timeout + 30, stop)
        ended = reply.get("ended", b"0")
        return AgentAnswer(status=int(reply.get("status", b"255") or 255),
                           stdout=reply.get("stdout", b"").decode("utf-8", "replace"),
                           stderr=reply.get("stderr", b"").decode("utf-8", "replace"),
                           interrupted=ended == b"1", timed_out=ended == b"2",
                           changes=_changes(reply))

    def run_check(self, program: bytes, shell_pid: int | None, timeout: float,
                  stop: threading.Event | None = None) -> CommandResult:
        """A check's result as every runner gives it; a gone or replaced agent is a change to the system."""
        try:
            answer = self.check(program, shell_pid, timeout, stop)
        except AgentGone as exc:
            return CommandResult(255, system_changes=[str(exc)])
        except VMBusy as exc:
            return CommandResult(255, stderr=f"the check could not run: {exc}")
        return CommandResult(answer.status, answer.stdout, answer.stderr, interrupted=answer.interrupted,
                             timed_out=answer.timed_out, system_changes=answer.changes)

    def scan(self, shell_pid: int | None = None, timeout: float = 30) -> tuple[list[str], list[str]]:
        """What the student changed in the system so far, and the VM's limits their code ran into
        (a full disk, no more processes); raises AgentGone."""
        reply = self._ask({"op": b"scan", "pid": str(shell_pid or "").encode()}, timeout, None)
        return _changes(reply), _changes(reply, "limits")

    def _ask(self, fields: dict[str, bytes], timeout: float, stop: threading.Event | None) -> dict[str, bytes]:
        with FileLock(self.dir / "agent.lock", "another process is talking to the VM's agent", None):
            state = json.loads((self.dir / "agent.json").read_text())
            if state.get("gone"):  # once gone, never back: no more waiting for it
                raise AgentGone(state["gone"])
            n = int(state["next"])
            tokens = bytes.fromhex(state["tokens"])
            expected = tokens[n * TOKEN_BYTES:(n + 1) * TOKEN_BYTES]
            state["next"] = n + 1
            self._save(state)
            request = "".join(f"{k} {v.hex()}\n" for k, v in ({"n": str(n).encode()} | fields).items()) + "end\n"
            try:
                reply = self._exchange(request.encode(), str(n).encode(), timeout, stop)
                if not expected or reply.get("token") != expected:
                    raise AgentGone("the VM's agent answered without its token: it was replaced by another program")
            except AgentGone as exc:
                self._save(state | {"gone": str(exc)})
                raise
        return reply

    def _port_open(self) -> bool:
        """Whether a program in the guest holds the agent's port open (qemu knows; the guest cannot lie)."""
        try:
            with QMP(self.dir / "qmp.sock", timeout=5) as q:
                devices = q.command("query-chardev")
        except (QMPError, OSError):
            return False
        return any(d.get("label") == "setup" and d.get("frontend-open") for d in devices or [])

    def _save(self, state: dict) -> None:
        (self.dir / "agent.json").write_text(json.dumps(state))

    def _exchange(self, request: bytes, n: bytes, timeout: float,
                  stop: threading.Event | None) -> dict[str, bytes]:
        try:
            out = os.open(self.dir / "setup.out", os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            raise AgentGone(f"the VM's agent cannot be reached ({exc.strerror}): is the VM still running?") from None
        try:
            fd = os.open(self.dir / "setup.in", os.O_WRONLY | os.O_NONBLOCK)
            try:
                write_all(fd, request)
                deadline = time.monotonic() + timeout
                heard = time.monotonic()
                stopped = False
                data = b""
                while True:
                    for reply in parse_replies(data):
                        if reply.get("n") == n:
                            return reply
                    now = time.monotonic()
                    if now > deadline or now - heard > SILENCE:
                        if self._port_open():
                            raise VMBusy(f"the VM stopped responding (its agent, which is still there, said nothing "
                                         f"for {now - heard:.0f} s): its processes took all of it (a fork bomb?)")
                        raise AgentGone(f"the VM's agent stopped answering (nothing for {now - heard:.0f} s) and "
                                        "closed its port: it was killed")
                    if stop is not None and stop.is_set() and not stopped:
                        write_all(fd, b"stop\n")
                        stopped = True
                    ready, _, _ = select.select([out], [], [], 0.1)
                    if ready:
                        data += os.read(out, 1 << 20)
                        heard = time.monotonic()
            finally:
                os.close(fd)
        finally:
            os.close(out)


def write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            data = data[os.write(fd, data):]
        except BlockingIOError:
            select.select([], [fd], [], 1)


def parse_replies(data: bytes) -> list[dict[str, bytes]]:
    """The complete answers in ``data`` (each a block of ``name hex`` lines ending ``end``)."""
    replies = []
    for block in data.split(b"end\n")[:-1]:
        reply = {}
        for line in block.splitlines():
            name, _, value = line.partition(b" ")
            try:
                reply[name.decode()] = bytes.fromhex(value.decode())
            except ValueError:
                continue
        replies.append(reply)
    return replies


def _changes(reply: dict[str, bytes], field: str = "changes") -> list[str]:
    text = reply.get(field, b"").decode("utf-8", "replace")
    return [line for line in text.splitlines() if line]
