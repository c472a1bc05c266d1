"""A cell's stdout and stderr in the order they were written, kept apart.

Two pipes (or an SSH channel's two streams) lose the order between them: a
reader that finds both readable cannot tell which was written first.  So on
the target a small relay gives the shell, as its stdout and stderr, two unix
datagram sockets, each bound to an address of its own and both connected to
one receiving socket.  The kernel queues every ``write()`` as one datagram on
that one socket, in the order the writes happened, whichever process made them,
and ``recvfrom`` names the socket it came from.  The relay passes them on as
frames on its stdout (one byte for the stream, four for the length, the data),
which :class:`OrderedChannel` turns back into ``(stream, data)`` pairs.

Two more senders make a second pair, the shell's fds 3 and 4: in a grading
rerun a student's cell writes there (see ``framing._ISOLATION``), so what it
leaves running cannot write into the output of a later cell the grader vouches
for.  And the shell's input is a socket only the relay holds, which it fills
with what arrives on its own stdin in frames signed with a key the kernel sent
first (HMAC-SHA256 over a frame number and the data): a root process that
opens the relay's stdin pipe through /proc and writes a command gets the shell
stopped instead (exit status ``FORGED_INPUT``).  Signing needs Digest::SHA
(Debian's ``perl``, not ``perl-base``); without it the shell reads the pipe.

The relay is Perl with its core modules (``perl-base`` is on every Debian and
Ubuntu system, minimal ones included).  A target without Perl, or where the
sockets cannot be made, runs the shell on plain pipes as before: each stream
stays in order, the two may not be (:attr:`OrderedChannel.ordered` says which).

What sockets change for a cell's programs (see the README's "Output order"):
a program that opens ``/dev/stdout`` or ``/dev/stderr`` by name gets ENXIO
(bash's own redirections to them still work), and one ``write()`` larger
than the send buffer fails (EMSGSIZE or ENOBUFS): about 4 MiB as root, where
the relay raises the buffer with SO_SNDBUFFORCE (past that the kernel cannot
allocate one datagram, whatever the buffer), ``net.core.wmem_max`` times two
otherwise (416 KiB on a stock kernel).  Programs that stream write far less at a time.
``WORKSHOP_ORDERED_OUTPUT=0`` runs the shell on plain pipes instead.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import shlex
import struct

from .channels import ISOLATED_ERR, STDOUT, Channel
from .result import CommandResult

# What the relay writes first: not a marker (its fourth byte is no hex digit).
# "+signed": the shell's input comes only through the relay, in signed frames.
GREETING = b"\0WS-ordered\0"
SIGNED_GREETING = b"\0WS-ordered+signed\0"
_HEADER = struct.Struct(">BI")
_INPUT_HEADER = struct.Struct(">I")
# the relay's exit status when something else than the kernel wrote to its input
FORGED_INPUT = 125

# argv[1]: the shell command.  The senders stay open in the relay too, so that
# their addresses stay taken: nothing else can bind one and pass for a stream.
# SO_SNDBUFFORCE is 32 on Linux's x86, arm and riscv ABIs.
RELAY = r"""
use strict; use Socket; use POSIX ();
$0 = 'workshop-relay';
my ($inner, $max, $r, @s) = ($ARGV[0], 4 << 20);
sub plain { exec '/bin/sh', '-c', $inner; exit 127 }
eval {
  socket($r, AF_UNIX, SOCK_DGRAM, 0) && bind($r, pack('S', AF_UNIX)) or die;
  for my $i (0 .. 3) {
    socket($s[$i], AF_UNIX, SOCK_DGRAM, 0) && bind($s[$i], pack('S', AF_UNIX))
      && connect($s[$i], getsockname($r)) or die;
    setsockopt($s[$i], SOL_SOCKET, 32, $max) or setsockopt($s[$i], SOL_SOCKET, SO_SNDBUF, $max);
  }
  # the largest datagram fits the send buffer the kernel granted (it doubles the request)
  $max = unpack('i', getsockopt($s[0], SOL_SOCKET, SO_SNDBUF)) or die;
  1;
} or plain();
# Signed input: the shell reads a socket the relay fills with what the kernel
# signed, never the pipe it was started on (a pipe anyone root can open by /proc).
my ($in, $to);
my $sign = eval { require Digest::SHA; socketpair($in, $to, AF_UNIX, SOCK_STREAM, 0) };
my %stream = map { getsockname($s[$_]) => $_ + 1 } 0 .. 3;
my $done = 0;
$SIG{CHLD} = sub { $done = 1 };
my $pid = fork;
plain() unless defined $pid;
if (!$pid) {
  setpgrp(0, 0);
  POSIX::dup2(fileno $s[0], 1) && POSIX::dup2(fileno $s[1], 2) or POSIX::_exit(127);
  POSIX::dup2(fileno $s[2], 3) && POSIX::dup2(fileno $s[3], 4) or POSIX::_exit(127);  # isolated cells'
  if ($sign) { POSIX::dup2(fileno $in, 0) or POSIX::_exit(127); close $to }
  exec '/bin/sh', '-c', $inner; POSIX::_exit(127);
}
close $in if $sign;
$SIG{PIPE} = 'IGNORE';  # a shell gone while its input is written (not inherited: set after the fork)
my ($rin, $d, $out, $cur, $status) = ('', '', "\0" x 5, 0, 0);  # $out: a frame, its header filled last
vec($rin, fileno $r, 1) = 1;
vec($rin, 0, 1) = 1 if $sign;
sub put {  # $_[0] is the caller's string, not a copy
  for (my $o = 0; $o < length $_[0];) {
    my $n = syswrite STDOUT, $_[0], length($_[0]) - $o, $o;
    if (defined $n) { $o += $n } elsif (!$!{EINTR}) { exit 141 }
  }
}
sub flush {
  return if length $out == 5;
  substr($out, 0, 5) = pack('CN', $cur, length($out) - 5);
  put($out); $out = "\0" x 5;
}
# stdin: a line with the key, the hello line, then frames: length, HMAC-SHA256
# of the frame's number and its data, the data
my ($key, $buf, $lines, $seq) = (undef, '', 0, 0);
sub drain {  # every datagram queued, as frames
  while (defined(my $from = recv($r, $d, $max, Socket::MSG_DONTWAIT()))) {
    my $s = $stream{$from} or next;
    flush() if $s != $cur;
    $cur = $s; $out .= $d;
    flush() if length $out >= 1 << 20;
  }
  flush();
}
sub forged {  # the shell's output so far, then why it ends
  kill 'KILL', -$pid; drain(); put(pack('CN', 2, length $_[0]) . $_[0]); exit 125;
}
sub feed {
  my $n = sysread STDIN, $buf, 1 << 16, length $buf;
  return if !defined $n && $!{EINTR};
  if (!$n) { vec($rin, 0, 1) = 0; shutdown($to, 1); return }
  while ($lines < 2 && (my $nl = index $buf, "\n") >= 0) {
    my $line = substr $buf, 0, $nl + 1, '';
    if ($lines++) { syswrite $to, $line } else { ($key) = $line =~ /^#WSKEY ([0-9a-f]{64})\n\z/ or forged("workshop-relay: no key\n") }
  }
  while ($lines == 2 && length $buf >= 4) {
    my $len = unpack 'N', $buf;
    forged("workshop-relay: the shell's input was written by something else than the kernel\n") if $len > 64 << 20;
    last if length $buf < 36 + $len;
    my ($mac, $data) = (substr($buf, 4, 32), substr($buf, 36, $len));
    forged("workshop-relay: the shell's input was written by something else than the kernel\n")
      if Digest::SHA::hmac_sha256(pack('N', $seq) . $data, pack('H*', $key)) ne $mac;
    substr($buf, 0, 36 + $len, ''); $seq++;
    for (my $o = 0; $o < length $data;) {
      my $w = syswrite $to, $data, length($data) - $o, $o;
      if (defined $w) { $o += $w } elsif (!$!{EINTR}) { last }
    }
  }
}
put($sign ? "\0WS-ordered+signed\0" : "\0WS-ordered\0");
while (1) {
  my $n = select(my $ready = $rin, undef, undef, $done ? 0 : 0.5);  # interrupted (-1): $ready is not set
  feed() if $sign && $n > 0 && vec($ready, 0, 1);
  drain();
  last if $done == 2;
  if (waitpid($pid, POSIX::WNOHANG()) == $pid) { $status = $?; $done = 2 }
}
exit($status & 127 ? 128 + ($status & 127) : $status >> 8);
"""


def relayed(command: str, ordered: bool = True) -> str:
    """``command`` (sh code) run under the relay where the target has Perl;
    ``ordered=False``: on plain pipes, for programs that need /dev/stdout by name."""
    if not ordered:
        return command
    return (f"if command -v perl >/dev/null 2>&1; then exec perl -e {shlex.quote(RELAY)} "
            f"-- {shlex.quote(command)}; fi; {command}")


class OrderedChannel(Channel):
    """A shell's channel whose stdout carries the relay's frames.

    ``ordered`` is None until the first output says whether the relay runs:
    True, or False for a target that runs the shell on plain pipes.
    """

    def __init__(self, channel: Channel) -> None:
        self.inner = channel
        self.ordered: bool | None = None
        self.signed = False  # what is written goes in signed frames (after the first two lines)
        self._key = secrets.token_bytes(32)
        self._seq = 0
        self._raw_lines = 2  # the key line and the hello line go as they are
        self._head = b""  # the start of the greeting, or of a frame's header
        self._stream = STDOUT
        self._left = 0  # bytes of the current frame still to come

    def read(self, timeout: float | None) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        for stream, data in self.inner.read(timeout):
            if stream != STDOUT or self.ordered is False:
                out.append((stream, data))
            elif not data:
                if self._head and self.ordered is None:
                    out.append((STDOUT, self._head))  # a short plain output, then the end
                out.append((STDOUT, b""))
            elif self.ordered is None:
                self._greeting(data, out)
            else:
                self._frames(data, out)
        return _joined(out)

    def _greeting(self, data: bytes, out: list[tuple[int, bytes]]) -> None:
        data, self._head = self._head + data, b""
        for greeting in (GREETING, SIGNED_GREETING):
            if data.startswith(greeting):
                self.ordered, self.signed = True, greeting == SIGNED_GREETING
                self._frames(data[len(greeting):], out)
                return
        if GREETING.startswith(data) or SIGNED_GREETING.startswith(data):
            self._head = data
        else:
            self.ordered = False
            out.append((STDOUT, data))

    def _frames(self, data: bytes, out: list[tuple[int, bytes]]) -> None:
        view, pos = memoryview(data), 0
        while pos < len(view):
            if not self._left:
                need = _HEADER.size - len(self._head)
                self._head += bytes(view[pos : pos + need])
                pos += need
                if len(self._head) < _HEADER.size:
                    return
                stream, self._left = _HEADER.unpack(self._head)
                self._stream = stream if STDOUT <= stream <= ISOLATED_ERR else STDOUT
                self._head = b""
                continue
            take = min(self._left, len(view) - pos)
            out.append((self._stream, bytes(view[pos : pos + take])))
            pos += take
            self._left -= take

    def key_line(self) -> bytes:
        """The first line to send: the key of the input frames (a comment to a
        shell that runs without the relay)."""
        return b"#WSKEY " + self._key.hex().encode() + b"\n"

    def write(self, data: bytes) -> None:
        if self._raw_lines:
            self._raw_lines -= 1
        elif self.signed:
            mac = hmac.new(self._key, struct.pack(">I", self._seq) + data, hashlib.sha256).digest()
            self._seq += 1
            data = _INPUT_HEADER.pack(len(data)) + mac + data
        self.inner.write(data)

    def run_aside(self, command: str, stdin: bytes = b"") -> CommandResult:
        return self.inner.run_aside(command, stdin)

    def exit_status(self) -> int | None:
        return self.inner.exit_status()

    def close(self) -> None:
        self.inner.close()

    def lost_reason(self) -> str | None:
        return self.inner.lost_reason()


def _joined(events: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """Neighbouring pieces of one stream as one: fewer, larger pieces to scan."""
    out: list[tuple[int, bytes]] = []
    run: list[bytes] = []
    for stream, data in events:
        if run and data and out[-1][0] == stream:
            run.append(data)
            continue
        if len(run) > 1:
            out[-1] = (out[-1][0], b"".join(run))
        run = [data] if data else []
        out.append((stream, data))
    if len(run) > 1:
        out[-1] = (out[-1][0], b"".join(run))
    return out
