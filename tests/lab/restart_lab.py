#!/usr/bin/env python3
"""A sensor restarted in the middle of a live reverse SSH tunnel (issue 11,
item 4), with the real tools in two namespaces.

The client namespace (10.84.0.10, the cluster) opens `ssh -N -R` to the
server namespace (10.84.0.20, the Internet) with keepalives every second;
the server logs back in through the forward. The sensor captures the
client's interface with `--state-file`. It is stopped with SIGTERM in the
middle of the tunnel, started again with the same state file, the server
logs in through the tunnel once more, and the second sensor is stopped.
A third sensor then starts with a fresh state file, so it picks the tunnel
up mid-stream with no history, and the server logs in once more.

    restart_lab.py OUTDIR EGRESSWATCH_BINARY RULES_DIR [CAPTURE_ARG ...]

(CAPTURE_ARGs go to every `egresswatch capture`, e.g. `--capture-method
af-packet --workers 4`.)

Writes OUTDIR/{first,second,third}.eve.json, the logs, and
OUTDIR/result.json ({"error": null | "...", "state_bytes": N}). Every
namespace and process it starts is gone when it returns.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from twohosts import TwoHosts, ensure_privsep, ns, run  # noqa: E402

NS_C, NS_S = "ewrs-c", "ewrs-s"
ADDR_C, ADDR_S = "10.84.0.10", "10.84.0.20"
WEB = "127.0.0.1:9598"


def log(msg):
    print(f"restart-lab: {msg}", file=sys.stderr, flush=True)


class Lab(TwoHosts):
    def __init__(self, work, binary, rules, extra):
        super().__init__(work, (NS_C, NS_S), (ADDR_C, ADDR_S), ("ewrs0", "ewrs1"))
        self.binary, self.rules, self.extra = binary, rules, extra

    def wait_for(self, what, probe, timeout=15):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if probe():
                return
            time.sleep(0.1)
        raise RuntimeError(f"timed out waiting for {what}")

    def sensor(self, name, state="state"):
        argv = [self.binary, "--log-level", "info", "capture", "--interface", "ewrs0",
                "--rules", self.rules, "--eve", os.path.join(self.work, f"{name}.eve.json"),
                "--state-file", os.path.join(self.work, state), "--web.listen-address", WEB, *self.extra]
        p = self.spawn(NS_C, argv, name)
        ready = ns(NS_C, "curl", "-sf", "--max-time", "1", f"http://{WEB}/-/ready")
        self.wait_for(f"{name} ready", lambda: run(ready, check=False).returncode == 0)
        return p

    def login_back(self, tag):
        """The server logs in through the forward and runs a command."""
        ensure_privsep()
        r = run(ns(NS_S, *self.ssh_argv(2222), "uname", "-a"), check=False, timeout=20)
        if r.returncode != 0:
            raise RuntimeError(f"login back ({tag}) failed: {r.stderr.strip()[:300]}")


def scenario(lab):
    lab.up()
    lab.ssh_keys()
    lab.sshd(NS_S, "sshd-s", listen=ADDR_S)
    lab.sshd(NS_C, "sshd-c")
    first = lab.sensor("first")
    forward = ["-N", "-R", "2222:127.0.0.1:22", "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=1"]
    tunnel = lab.spawn(NS_C, lab.ssh_argv(22, ADDR_S, forward), "tunnel")
    lab.wait_listen(NS_S, 2222)
    time.sleep(1.0)
    lab.login_back("before the restart")
    time.sleep(2.0)
    log("restarting the sensor")
    if lab.stop(first, timeout=10) != 0:
        raise RuntimeError("the first sensor did not exit cleanly")
    state = os.path.join(lab.work, "state")
    if not os.path.exists(state):
        raise RuntimeError("the first sensor wrote no state file")
    size = os.path.getsize(state)
    second = lab.sensor("second")
    time.sleep(2.0)
    lab.login_back("after the restart")
    time.sleep(2.0)
    if tunnel.poll() is not None:
        raise RuntimeError("the tunnel ended early")
    if lab.stop(second, timeout=10) != 0:
        raise RuntimeError("the second sensor did not exit cleanly")
    # A third sensor starts with no state: it picks the tunnel up
    # mid-stream and can only infer it from the sizes of the login back.
    third = lab.sensor("third", state="fresh-state")
    time.sleep(1.0)
    lab.login_back("to a sensor without state")
    time.sleep(2.0)
    if lab.stop(third, timeout=10) != 0:
        raise RuntimeError("the third sensor did not exit cleanly")
    lab.stop(tunnel)
    return size


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    work, binary, rules = sys.argv[1:4]
    os.makedirs(work, exist_ok=True)
    lab = Lab(os.path.abspath(work), binary, rules, sys.argv[4:])
    result = {"error": None, "state_bytes": 0}
    try:
        result["state_bytes"] = scenario(lab)
    except Exception as e:  # reported by the Rust test
        result["error"] = f"{type(e).__name__}: {e}"
        log(f"FAILED: {result['error']}")
    finally:
        lab.down()
    with open(os.path.join(work, "result.json"), "w") as f:
        json.dump(result, f)
    return 0 if result["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
