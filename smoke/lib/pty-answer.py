"""Run a shell command on a fresh pseudo-terminal and answer its password prompts.

usage: python3 pty-answer.py SHELLCMD < ANSWERS

Each line of stdin answers one prompt, in order. A prompt is output ending in
"password...:" (case-insensitive). An answer is typed only once the program has
turned terminal echo off (as getpass-style readers such as pkttyagent do, with
TCSAFLUSH, which would discard anything typed earlier). The command's output is
copied to stdout; the exit status is the command's (128+N for signal N, 124 on
timeout). Prompts left over after the answers run out are not answered.
Environment: PTY_ANSWER_TIMEOUT (seconds, default 120).
"""

import os
import pty
import re
import select
import signal
import sys
import termios
import time

PROMPT = re.compile(rb"(?i)(password|passphrase)[^\n]*:\s*$")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: pty-answer.py SHELLCMD < ANSWERS")
    answers = [line.rstrip("\n") for line in sys.stdin.readlines()]
    deadline = time.monotonic() + float(os.environ.get("PTY_ANSWER_TIMEOUT", "120"))
    out = sys.stdout.buffer

    pid, fd = pty.fork()
    if pid == 0:
        os.execv("/bin/sh", ["sh", "-c", sys.argv[1]])

    tail = b""
    status = None
    drain_until = None
    while True:
        now = time.monotonic()
        if now > deadline:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            out.write(b"\npty-answer: timed out\n")
            out.flush()
            return 124
        if status is None:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
                drain_until = now + 0.3  # collect what is still buffered in the pty
        if drain_until is not None and now > drain_until:
            break
        ready, _, _ = select.select([fd], [], [], 0.05)
        if not ready:
            continue
        try:
            data = os.read(fd, 4096)
        except OSError:  # EIO: every slave side is closed
            data = b""
        if not data:
            if status is None:
                _, status = os.waitpid(pid, 0)
            break
        out.write(data)
        out.flush()
        tail = (tail + data)[-512:]
        if answers and PROMPT.search(tail):
            wait_for_echo_off(fd, deadline)
            os.write(fd, answers.pop(0).encode() + b"\n")
            tail = b""

    if status is None:
        _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def wait_for_echo_off(fd, deadline):
    """On Linux the master side reports the slave's termios."""
    limit = min(deadline, time.monotonic() + 10)
    while time.monotonic() < limit:
        try:
            if not termios.tcgetattr(fd)[3] & termios.ECHO:
                return
        except termios.error:
            return
        time.sleep(0.01)


if __name__ == "__main__":
    sys.exit(main())
