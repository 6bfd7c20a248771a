"""Drive a program through a pseudo-terminal the way a person would.

A person types one key at a time (here 80-250 ms apart, drawn from a seeded
generator so runs are repeatable), waits for the prompt, reads the output
for a moment and types the next command. Everything the program prints is
kept in a transcript. Standard library only.
"""

import fcntl
import os
import pty
import random
import re
import select
import signal
import struct
import termios
import time


class DriveError(Exception):
    """The program did not print what was expected in time, or ended early."""


class PtySession:
    """One program running on its own pty, read and typed into by us."""

    def __init__(self, argv, rng, transcript_path, env=None, cols=100, rows=30):
        self.rng = rng
        self.eof = False
        self.buf = ""
        self.status = None
        self.log = open(transcript_path, "ab", buffering=0)
        pid, fd = pty.fork()
        if pid == 0:
            try:
                os.execvpe(argv[0], argv, env if env is not None else os.environ)
            finally:
                os._exit(127)
        self.pid = pid
        self.fd = fd
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def _read_once(self, timeout):
        if self.eof:
            time.sleep(max(0.0, timeout))
            return
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return
        try:
            data = os.read(self.fd, 65536)
        except OSError:
            data = b""
        if not data:
            self.eof = True
            return
        self.log.write(data)
        self.buf += data.decode("utf-8", "replace")
        if len(self.buf) > 200_000:
            self.buf = self.buf[-100_000:]

    def pause(self, seconds):
        """Wait while still reading output, so the program never blocks on a full pty."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            self._read_once(left)

    def expect(self, pattern, timeout=10.0):
        """Wait for `pattern` (a regex) in the output; consume output up to its end."""
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        while True:
            m = rx.search(self.buf)
            if m:
                self.buf = self.buf[m.end():]
                return m
            left = end - time.monotonic()
            if left <= 0 or self.eof:
                tail = self.buf[-300:]
                why = "ended" if self.eof else "timed out"
                raise DriveError(f"{why} waiting for {pattern!r}; last output: {tail!r}")
            self._read_once(min(left, 0.5))

    def type(self, text, lo=0.08, hi=0.25):
        """Type `text` one key at a time with human-like gaps."""
        for ch in text:
            os.write(self.fd, ch.encode())
            gap = self.rng.uniform(lo, hi)
            # Now and then a slightly longer hesitation, as people do.
            if ch == " " and self.rng.random() < 0.2:
                gap += self.rng.uniform(0.05, 0.2)
            self.pause(gap)

    def line(self, text):
        """Type a line and press Enter (a terminal sends CR)."""
        self.type(text + "\r")

    def think(self, lo=0.4, hi=1.2):
        """The pause of a person reading output before typing again."""
        self.pause(self.rng.uniform(lo, hi))

    def wait(self, timeout=10.0):
        """Wait for the program to end; returns its exit code (or -signal)."""
        end = time.monotonic() + timeout
        while True:
            if self.status is None:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid == self.pid:
                    self.status = status
            if self.status is not None and self.eof:
                break
            if self.status is not None:
                # Drain what is left, but do not wait for EOF forever.
                self._read_once(0.05)
                if time.monotonic() > end:
                    break
                if not select.select([self.fd], [], [], 0)[0]:
                    break
                continue
            left = end - time.monotonic()
            if left <= 0:
                raise DriveError(f"program still running after {timeout}s")
            self._read_once(min(left, 0.2))
        return os.waitstatus_to_exitcode(self.status)

    def close(self):
        """End the program if it still runs and release the pty."""
        if self.status is None:
            for sig, grace in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
                try:
                    # pty.fork made the child a session and group leader.
                    os.killpg(self.pid, sig)
                except ProcessLookupError:
                    pass
                end = time.monotonic() + grace
                while time.monotonic() < end:
                    pid, status = os.waitpid(self.pid, os.WNOHANG)
                    if pid == self.pid:
                        self.status = status
                        break
                    time.sleep(0.05)
                if self.status is not None:
                    break
        try:
            os.close(self.fd)
        except OSError:
            pass
        self.log.close()


def seeded(seed, name):
    """A generator seeded from the run seed and a scenario name (repeatable)."""
    import zlib

    return random.Random((seed << 32) ^ zlib.crc32(name.encode()))
