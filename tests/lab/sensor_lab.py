#!/usr/bin/env python3
"""The live sensor on the namespace lab (`tests/netns_sensor.rs` runs this).

    sensor_lab.py live OUTDIR --bin EGRESSWATCH --rules RULESDIR
    sensor_lab.py load OUTDIR --bin EGRESSWATCH [--max-seconds 150]

`live` sets up the lab topology of `lab.py` (reused as it is), runs
`egresswatch capture` on the router port facing the cluster (`c0`, the span
port) as user `nobody`, with a real Prometheus server scraping it over the
router namespace's loopback, then:
  1. a long-lived TCP connection starts (it must survive the rule reloads);
  2. the `rev_login_ok-chacha20` scenario: real OpenSSH opens `ssh -N -R` from
     the cluster and a password login comes back through the tunnel;
  3. Prometheus is asked for the alert counter through its HTTP API, and
     `promtool check metrics` reads /metrics;
  4. SIGHUP with a broken rules file (must keep the old rules), then with a
     good one that allowlists SSH to the external host; the long-lived
     connection sends more, and a new SSH session runs under the new rules;
  5. SIGTERM: every open flow must be written, and the sensor exit 0.
Everything seen goes to OUTDIR/result.json (metrics snapshots, Prometheus
answers, timings) and OUTDIR/eve.json; the Rust test judges them.

`load` makes two namespaces joined by a veth pair, runs the sensor on one
end and pushes `egresswatch generate bench` traffic into the other with
tcpreplay at increasing rates; per step it records what tcpreplay sent and
what the sensor's counters say was received, dropped (kernel, interface,
queue) and processed. Loopback and namespaces only; bounded in time.

Needs root. Everything started is stopped and every namespace removed on
any exit.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# The lab harness lives beside this file; EGRESSWATCH_LAB_DIR points
# elsewhere (a checkout of it) when needed.
sys.path.insert(0, os.environ.get("EGRESSWATCH_LAB_DIR", HERE))

SENSOR_PORT = 8463
PROM_PORT = 9090
SCENARIO = "rev_login_ok-chacha20"
ECHO_PORT = 7000


def log(msg):
    print(f"[sensor-lab {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_metrics(text):
    """`name{labels}` -> value, from the text exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            pass
    return out


def wait_for(what, probe, timeout, step=0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = probe()
        if got:
            return got
        time.sleep(step)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


def stop_and_time(proc, sig, timeout):
    """Sends `sig`, waits; returns (exit code, seconds) or (None, timeout)."""
    t0 = time.monotonic()
    os.kill(proc.pid, sig)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, timeout
    return code, round(time.monotonic() - t0, 3)


def proc_status(pid):
    fields = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Uid", "Gid", "CapEff", "CapPrm", "CapBnd", "NoNewPrivs"):
                    fields[k] = v.strip()
    except OSError as e:
        fields["error"] = str(e)
    return fields


# ---- live ----------------------------------------------------------------------

HELD_SERVER = r"""
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(4)
def echo(c):
    while True:
        d = c.recv(4096)
        if not d: break
        c.sendall(d)
while True:
    c, _ = s.accept()
    threading.Thread(target=echo, args=(c,), daemon=True).start()
"""

# Sends 5 messages, waits for the marker file, sends 5 more, then holds
# the connection open until killed (no FIN before the sensor stops).
HELD_CLIENT = r"""
import os, socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), 5)
print(c.getsockname()[1], flush=True)
def burst():
    for i in range(5):
        c.sendall(b"x" * 100); c.recv(4096); time.sleep(0.1)
burst()
while not os.path.exists(sys.argv[3]): time.sleep(0.1)
burst()
print("phase2", flush=True)
time.sleep(3600)
"""

BROKEN_RULES = """# deliberately broken
[[allow]]
name = "oops"
cidrs = ["not-an-address"]
reason =
"""

GOOD_RULES = """# allowlists SSH to the lab's external host
[[allow]]
name = "external-ssh"
cidrs = ["198.51.100.10/32"]
ports = [22]
protocol = "ssh"
reason = "sensor reload test"
"""


class Live:
    def __init__(self, lab_mod, outdir, binary, rules_src):
        self.L = lab_mod
        self.outdir = outdir
        self.binary = binary
        self.lab = lab_mod.Lab(outdir, 1)
        # nobody must be able to read the rules on reload.
        self.shared = tempfile.mkdtemp(prefix="ewsensor-")
        os.chmod(self.shared, 0o755)
        self.rules = os.path.join(self.shared, "rules")
        shutil.copytree(rules_src, self.rules)
        for root, dirs, files in os.walk(self.shared):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)
            for f in files:
                os.chmod(os.path.join(root, f), 0o644)
        self.eve = os.path.join(outdir, "eve.json")
        self.result = {"scenario": SCENARIO, "snapshots": {}, "events": {}}
        self.sensor = None

    def router(self, argv, **kw):
        return self.lab.ns_run("router", argv, check=False, **kw)

    def http(self, url):
        res = self.router(["curl", "-sS", "--max-time", "5", url], timeout=10)
        return res.stdout if res.returncode == 0 else None

    def metrics(self):
        text = self.http(f"http://127.0.0.1:{SENSOR_PORT}/metrics")
        return text, parse_metrics(text or "")

    def snapshot(self, name):
        text, m = self.metrics()
        self.result["snapshots"][name] = m
        with open(os.path.join(self.outdir, f"metrics-{name}.txt"), "w") as f:
            f.write(text or "")
        return m

    def mark(self, name):
        self.result["events"][name] = time.time()

    def start_sensor(self):
        if os.path.exists(self.eve):
            os.unlink(self.eve)
        argv = [
            self.binary, "--log-format", "json", "--log-level", "info",
            "capture", "--interface", self.L.CAPTURE_PORT,
            "--rules", self.rules, "--eve", self.eve,
            "--web.listen-address", f"127.0.0.1:{SENSOR_PORT}",
            "--workers", "2", "--user", "nobody",
            # Short enough that finished sessions are written before the end.
            "--idle-timeout", "tcp-closed=2",
        ]
        self.sensor = self.lab.spawn("router", argv, "sensor")
        wait_for("the sensor's /-/ready",
                 lambda: (self.http(f"http://127.0.0.1:{SENSOR_PORT}/-/ready") or "").startswith("egresswatch is Ready"),
                 20)
        self.result["sensor_status"] = proc_status(self.sensor.pid)

    def start_prometheus(self):
        d = os.path.join(self.shared, "prometheus")
        os.makedirs(d)
        cfg = os.path.join(d, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "scrape_configs:\n  - job_name: egresswatch\n    static_configs:\n"
                f"      - targets: ['127.0.0.1:{SENSOR_PORT}']\n"
            )
        self.prom = self.lab.spawn("router", [
            "prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={d}/data",
            f"--web.listen-address=127.0.0.1:{PROM_PORT}", "--log.level=warn",
        ], "prometheus")
        wait_for("Prometheus /-/ready",
                 lambda: "Ready" in (self.http(f"http://127.0.0.1:{PROM_PORT}/-/ready") or ""), 30)

    def prom_query(self, query):
        res = self.router(["curl", "-sS", "--max-time", "5", "-G", "--data-urlencode", f"query={query}",
                           f"http://127.0.0.1:{PROM_PORT}/api/v1/query"], timeout=10)
        try:
            return json.loads(res.stdout)
        except ValueError:
            return {"status": "error", "raw": res.stdout + res.stderr}

    def start_held(self):
        ext = self.L.HOSTS["external"][0]
        self.lab.spawn("external", [sys.executable, "-c", HELD_SERVER, ext, str(ECHO_PORT)], "held-server")
        self.lab.wait_listen("external", ECHO_PORT)
        self.go2 = os.path.join(self.shared, "held-phase2")
        path = os.path.join(self.lab.logdir, "held-client.log")
        self.held = self.lab.spawn("cluster", [sys.executable, "-u", "-c", HELD_CLIENT, ext, str(ECHO_PORT), self.go2],
                                   "held-client")
        port = wait_for("the held connection", lambda: open(path).read().split("\n")[0].strip(), 10)
        self.result["held"] = {"client": self.L.HOSTS["cluster"][0], "client_port": int(port),
                               "server": ext, "server_port": ECHO_PORT}

    def run_scenario(self):
        sc = next(s for s in self.L.catalog() if s["name"] == SCENARIO)
        ctx = self.L.Ctx(self.lab, sc)
        self.mark("scenario_start")
        try:
            sc["func"](ctx, **sc["params"])
        finally:
            ctx.close()
            self.lab.settle()
        self.mark("scenario_end")
        self.result["typed_commands"] = ctx.typed

    def hup(self):
        os.kill(self.sensor.pid, signal.SIGHUP)

    def reloads(self):
        broken = os.path.join(self.rules, "zz-broken.toml")
        with open(broken, "w") as f:
            f.write(BROKEN_RULES)
        os.chmod(broken, 0o644)
        self.mark("broken_reload")
        self.hup()
        wait_for("the failed reload in the metrics",
                 lambda: self.metrics()[1].get("egresswatch_rules_reloads_total", 0) >= 1, 10)
        self.snapshot("after_broken")
        os.unlink(broken)
        good = os.path.join(self.rules, "zz-external-ssh.toml")
        with open(good, "w") as f:
            f.write(GOOD_RULES)
        os.chmod(good, 0o644)
        self.mark("good_reload")
        self.hup()
        wait_for("the good reload in the metrics",
                 lambda: self.metrics()[1].get("egresswatch_rules_reloads_total", 0) >= 2, 10)
        self.snapshot("after_good")

    def ssh_after_reload(self):
        ctx = self.L.Ctx(self.lab, {"name": "after_reload", "index": 4321})
        self.mark("ssh_after_reload_start")
        try:
            res = ctx.run_in("cluster", ctx.ssh("chacha20", "external") + ["true"])
            self.result["ssh_after_reload"] = res.returncode
        finally:
            ctx.close()
            self.lab.settle()

    def run(self):
        self.lab.cleanup_stale()
        self.lab.setup()
        log(f"topology up (namespaces {self.lab.tag}*)")
        self.start_sensor()
        self.start_prometheus()
        self.snapshot("start")
        self.start_held()
        self.run_scenario()
        time.sleep(1.0)
        self.snapshot("after_scenario")
        query = 'sum(egresswatch_alerts_total{detection="ssh-reverse-forward"})'
        try:
            wait_for("Prometheus to see the alert",
                     lambda: float((self.prom_query(query).get("data", {}).get("result") or [{"value": [0, "0"]}])[0]["value"][1]) >= 1,
                     30, step=0.5)
        except RuntimeError as e:
            self.result["prometheus_wait"] = str(e)
        self.result["prometheus"] = {
            "query": query,
            "answer": self.prom_query(query),
            "up": self.prom_query('up{job="egresswatch"}'),
            "sensor_value": self.metrics()[1].get(
                'egresswatch_alerts_total{detection="ssh-reverse-forward",severity="high"}'),
        }
        text, _ = self.metrics()
        res = subprocess.run(["promtool", "check", "metrics"], input=text or "", capture_output=True, text=True)
        self.result["promtool"] = {"rc": res.returncode, "output": res.stdout + res.stderr}
        self.reloads()
        open(self.go2, "w").close()
        wait_for("the held connection's second burst",
                 lambda: "phase2" in open(os.path.join(self.lab.logdir, "held-client.log")).read(), 10)
        self.mark("held_phase2")
        self.ssh_after_reload()
        time.sleep(4.0)  # tcp-closed=2 s, and the sweep runs every second
        self.snapshot("before_term")
        self.mark("sigterm")
        code, secs = stop_and_time(self.sensor, signal.SIGTERM, 15)
        self.result["exit_code"] = code
        self.result["shutdown_seconds"] = secs
        self.lab.stop(self.sensor)

    def cleanup(self):
        try:
            self.lab.cleanup()
        finally:
            shutil.rmtree(self.shared, ignore_errors=True)


def cmd_live(args):
    import lab as lab_mod  # noqa: E402  (the harness beside this file)
    live = Live(lab_mod, args.outdir, args.bin, args.rules)
    error = None
    try:
        live.run()
    except Exception as e:  # recorded; the Rust test reports it
        error = f"{type(e).__name__}: {e}"
        log(f"FAILED: {error}")
    finally:
        live.cleanup()
        live.result["error"] = error
        with open(os.path.join(args.outdir, "result.json"), "w") as f:
            json.dump(live.result, f, indent=1)
    return 0 if error is None else 1


# ---- load ----------------------------------------------------------------------

class Pair:
    """Two namespaces joined by a veth pair: `ew<PID>ls` sends on `ls0`,
    `ew<PID>lr` receives on `lr0`."""

    def __init__(self):
        tag = f"ew{os.getpid()}"
        self.tx, self.rx = f"{tag}ls", f"{tag}lr"
        self.made = []

    def run(self, argv, check=True, timeout=60):
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and res.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {res.stderr.strip()}")
        return res

    def ns(self, name, argv, **kw):
        return self.run(["ip", "netns", "exec", name] + argv, **kw)

    def up(self):
        for n in (self.tx, self.rx):
            self.run(["ip", "netns", "add", n])
            self.made.append(n)
            self.ns(n, ["ip", "link", "set", "lo", "up"])
            self.ns(n, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
            self.ns(n, ["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])
        self.run(["ip", "link", "add", "ls0", "netns", self.tx, "mtu", "9000", "type", "veth",
                  "peer", "name", "lr0", "netns", self.rx, "mtu", "9000"])
        for n, dev in ((self.tx, "ls0"), (self.rx, "lr0")):
            self.ns(n, ["ethtool", "-K", dev, "gro", "off", "gso", "off", "tso", "off"], check=False)
            self.ns(n, ["ip", "link", "set", dev, "up"])

    def link_stats(self, name, dev):
        res = self.ns(name, ["ip", "-j", "-s", "link", "show", dev], check=False)
        try:
            s = json.loads(res.stdout)[0]["stats64"]
            return {"rx_packets": s["rx"]["packets"], "rx_dropped": s["rx"]["dropped"],
                    "tx_packets": s["tx"]["packets"], "tx_dropped": s["tx"]["dropped"]}
        except (ValueError, LookupError):
            return {}

    def down(self):
        for n in self.made:
            for pid in self.run(["ip", "netns", "pids", n], check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            self.run(["ip", "netns", "del", n], check=False)
        self.made = []


def sensor_metrics(pair):
    res = pair.ns(pair.rx, ["curl", "-sS", "--max-time", "5", f"http://127.0.0.1:{SENSOR_PORT}/metrics"],
                  check=False, timeout=10)
    m = parse_metrics(res.stdout)

    def get(key):
        return m.get(key, 0.0)
    lbl = 'interface="lr0"'
    return {
        "received": get(f"egresswatch_capture_received_packets_total{{{lbl}}}"),
        "kernel": get(f'egresswatch_capture_dropped_packets_total{{{lbl},reason="kernel"}}'),
        "interface": get(f'egresswatch_capture_dropped_packets_total{{{lbl},reason="interface"}}'),
        "queue": get(f'egresswatch_capture_dropped_packets_total{{{lbl},reason="queue"}}'),
        "processed": get("egresswatch_processed_packets_total"),
    }


def quiesce(pair, timeout=15.0):
    """Metrics once they stop moving (the sensor has caught up)."""
    last, stable_since = None, None
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        now = sensor_metrics(pair)
        if now == last:
            if stable_since and time.monotonic() - stable_since >= 1.2:
                return now
            stable_since = stable_since or time.monotonic()
        else:
            stable_since = None
        last = now
        time.sleep(0.3)
    return last


def tcpreplay(pair, pcap, rate, count):
    argv = ["tcpreplay", "-i", "ls0", "-K", f"--limit={count}"]
    argv += ["--topspeed"] if rate is None else [f"--pps={rate}"]
    res = pair.ns(pair.tx, argv + [pcap], check=False, timeout=120)
    text = res.stdout + res.stderr
    actual = re.search(r"Actual:\s+(\d+) packets", text)
    failed = re.search(r"Failed packets:\s+(\d+)", text)
    rated = re.search(r"Rated:.*?([\d.]+) pps", text)
    return {
        "rc": res.returncode,
        "sent": int(actual.group(1)) - (int(failed.group(1)) if failed else 0) if actual else None,
        "failed": int(failed.group(1)) if failed else None,
        "achieved_pps": float(rated.group(1)) if rated else None,
        "output": text[-600:],
    }


def cmd_load(args):
    result = {"steps": [], "error": None}
    pair = Pair()
    sensor = None
    t0 = time.monotonic()
    try:
        pcap = os.path.join(args.outdir, "bench.pcap")
        subprocess.run([args.bin, "generate", "bench", "--packets", str(args.packets), "--out", pcap],
                       check=True, capture_output=True)
        pair.up()
        log_path = os.path.join(args.outdir, "sensor.log")
        with open(log_path, "w") as logf:
            sensor = subprocess.Popen(
                ["ip", "netns", "exec", pair.rx, args.bin, "--log-level", "info", "capture",
                 "--interface", "lr0", "--eve", os.path.join(args.outdir, "eve.json"),
                 "--web.listen-address", f"127.0.0.1:{SENSOR_PORT}"],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for("the sensor", lambda: sensor_metrics(pair)["processed"] is not None and
                 "Ready" in pair.ns(pair.rx, ["curl", "-s", f"http://127.0.0.1:{SENSOR_PORT}/-/ready"],
                                    check=False).stdout, 20)
        rates = [10_000, 25_000, 50_000, 100_000, 200_000, 400_000, None]
        for rate in rates:
            if time.monotonic() - t0 > args.max_seconds:
                result["stopped_early"] = f"--max-seconds {args.max_seconds} reached"
                break
            count = args.packets if rate is None else max(10_000, min(args.packets, rate * 2))
            before = quiesce(pair)
            links_before = (pair.link_stats(pair.tx, "ls0"), pair.link_stats(pair.rx, "lr0"))
            replay = tcpreplay(pair, pcap, rate, count)
            after = quiesce(pair)
            links_after = (pair.link_stats(pair.tx, "ls0"), pair.link_stats(pair.rx, "lr0"))
            delta = {k: after[k] - before[k] for k in after}
            # Frames the veth could not hand to its peer count as the
            # sender's tx_dropped. (The receiver's rx_dropped counts frames
            # its own stack discarded after the capture saw them, such as
            # ethertypes it has no handler for: not capture loss.)
            veth_dropped = links_after[0].get("tx_dropped", 0) - links_before[0].get("tx_dropped", 0)
            stack_dropped = links_after[1].get("rx_dropped", 0) - links_before[1].get("rx_dropped", 0)
            step = {"requested_pps": rate, "count": count, "tcpreplay": replay, "sensor": delta,
                    "veth_dropped": veth_dropped, "receiver_stack_dropped": stack_dropped}
            step["zero_drop"] = (replay["sent"] is not None and delta["received"] == replay["sent"]
                                 and delta["kernel"] == 0 and delta["queue"] == 0 and delta["interface"] == 0)
            log(f"rate {rate or 'top'}: sent {replay['sent']} at {replay['achieved_pps']} pps; sensor {delta}")
            result["steps"].append(step)
        zero = [s for s in result["steps"] if s["zero_drop"]]
        result["highest_zero_drop_pps"] = max((s["tcpreplay"]["achieved_pps"] or 0 for s in zero), default=None)
        code, secs = stop_and_time(sensor, signal.SIGTERM, 15)
        result["exit_code"], result["shutdown_seconds"] = code, secs
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {e}"
        log(f"FAILED: {result['error']}")
    finally:
        if sensor is not None and sensor.poll() is None:
            sensor.kill()
            sensor.wait()
        pair.down()
        result["elapsed_s"] = round(time.monotonic() - t0, 1)
        with open(os.path.join(args.outdir, "result.json"), "w") as f:
            json.dump(result, f, indent=1)
        pcap = os.path.join(args.outdir, "bench.pcap")
        if os.path.exists(pcap):
            os.unlink(pcap)
    return 0 if result["error"] is None else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    live = sub.add_parser("live")
    live.add_argument("outdir")
    live.add_argument("--bin", required=True)
    live.add_argument("--rules", required=True)
    load = sub.add_parser("load")
    load.add_argument("outdir")
    load.add_argument("--bin", required=True)
    load.add_argument("--packets", type=int, default=200_000)
    load.add_argument("--max-seconds", type=float, default=150.0)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("sensor-lab: needs root (network namespaces)", file=sys.stderr)
        return 2
    args.outdir = os.path.abspath(args.outdir)
    os.makedirs(args.outdir, exist_ok=True)

    def on_signal(sig, _frame):
        raise SystemExit(128 + sig)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    return cmd_live(args) if args.mode == "live" else cmd_load(args)


if __name__ == "__main__":
    sys.exit(main())
