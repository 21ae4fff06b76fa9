#!/usr/bin/env python3
"""A reference Adagio agent in Python 3, standard library only.

It implements a `shell` runtime over the agent API's plain JSON routes
(POST /v0/agent/<method>, see docs/agent-api.md):

    register    once per process: grants the process's lease, registers its agents
    heartbeat   every ttl/3 from a background thread, also while a node runs
    claim-next  long-poll: returns a claimed node (with its inputs), or {} after the wait
    append-output  while the command runs: its output so far, every 0.25 s or 64 KiB
    finish      SUCCESS / FAIL / ERROR (the output was streamed), fenced by the claim id
    claims-held with each heartbeat, for the nodes running: a command whose
                claim is gone (run cancelled, claim lapsed) is killed

The node's command is `adagio.arguments.shell.command` (run with /bin/sh -c;
further values become $1, $2, ...). Output is stdout and stderr combined.
Exit 0 -> SUCCESS, any other exit -> FAIL, cannot start or timed out -> ERROR.

    python3 adagio_agent.py --address http://127.0.0.1:7890 --token "$ADAGIO_TOKEN"
"""

import argparse
import base64
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

MAX_OUTPUT_BYTES = 1024 * 1024


def log(msg, **fields):
    """One JSON line per event on stderr."""
    line = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "msg": msg}
    line.update(fields)
    sys.stderr.write(json.dumps(line) + "\n")
    sys.stderr.flush()


class ApiError(Exception):
    """The API answered with an error: HTTP status, code, and reason when known."""

    def __init__(self, status, code, message, reason=None):
        super().__init__("%s (%s): %s" % (code, status, message))
        self.status = status
        self.code = code
        self.reason = reason


class Unreachable(Exception):
    """The API could not be reached; the call may succeed later."""


class AgentApi:
    """The agent API's JSON routes over urllib."""

    def __init__(self, address, token=None, timeout=30.0):
        self.address = address.rstrip("/")
        self.token = token
        self.timeout = timeout

    def call(self, method, body, timeout=None):
        data = json.dumps(body).encode("utf-8")
        req = urllib.request.Request(
            "%s/v0/agent/%s" % (self.address, method), data=data, method="POST"
        )
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as res:
                return json.loads(res.read() or b"{}")
        except urllib.error.HTTPError as e:
            try:
                err = json.loads(e.read() or b"{}")
            except ValueError:
                err = {}
            if e.code >= 500 and e.code != 501:
                raise Unreachable("HTTP %d: %s" % (e.code, err.get("message", e.reason)))
            raise ApiError(e.code, err.get("code", "unknown"), err.get("message", str(e)), err.get("reason"))
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise Unreachable(str(e))


def argument(spec, inputs, name, runtime):
    """A runtime argument's values: from metadata, or from an upstream output (adagio.inputs...)."""
    metadata = spec.get("metadata", {})
    upstream = metadata.get("adagio.inputs.%s.%s" % (runtime, name), {}).get("values", [])
    if upstream:
        return [inputs.get(upstream[0], b"").decode("utf-8", "replace")]
    for prefix in ("adagio.arguments", "adagio.runtime"):
        values = metadata.get("%s.%s.%s" % (prefix, runtime, name), {}).get("values", [])
        if values:
            return values
    return []


def parse_seconds(text):
    """'90', '90s', '500ms', '2m', '1h30m' -> seconds."""
    units = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if m:
        return float(m.group(1)) * units[m.group(2)]
    parts = re.findall(r"(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)", text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError("not a duration: %r" % text)
    return sum(float(n) * units[u] for n, u in parts)


class OutputStreamer:
    """Streams a running attempt's output with append-output while it runs:
    every 0.25 s or 64 KiB, in order; a chunk keeps its seq until the server
    took it, so a retry after a lost reply is a repeat the server ignores.
    Once the claim is refused (409: run cancelled, claim lapsed) the rest is
    dropped. close() returns what the server could not be sent: it goes in
    front of the finish output, so nothing written is lost."""

    FLUSH_S = 0.25
    FLUSH_BYTES = 64 * 1024

    def __init__(self, api, ref):
        self.api = api
        self.ref = ref
        self.seq = 0
        self.pending = []  # formed chunks the server has not taken, in order
        self.buf = bytearray()
        self.total = 0
        self.refused = False
        self.last_flush = time.monotonic()

    def write(self, data):
        # One byte past the cap is kept so the server marks the cut.
        room = MAX_OUTPUT_BYTES + 1 - self.total
        if self.refused or room <= 0 or not data:
            return
        data = data[:room]
        self.total += len(data)
        self.buf += data
        if len(self.buf) >= self.FLUSH_BYTES:
            self.flush()

    def tick(self):
        if self.buf and time.monotonic() - self.last_flush >= self.FLUSH_S:
            self.flush()

    def flush(self):
        if self.buf:
            self.pending.append(bytes(self.buf))
            self.buf = bytearray()
        self.last_flush = time.monotonic()
        while self.pending and not self.refused:
            body = dict(self.ref, seq=self.seq, chunk=base64.b64encode(self.pending[0]).decode("ascii"))
            try:
                self.api.call("append-output", body)
            except ApiError as e:
                if e.status in (404, 409):
                    self.refused = True
                    self.pending = []
                    return
                log("output refused", status=e.status, error=str(e))
                return
            except Unreachable as e:
                log("output not sent; retrying later", error=str(e))
                return
            self.pending.pop(0)
            self.seq += 1

    def close(self):
        self.flush()
        return b"" if self.refused else b"".join(self.pending)


def run_shell(claimed, runtime, started, out):
    """Runs the node's command, passing its output to `out` (an OutputStreamer)
    as it comes; returns (conclusion, bytes to add after the streamed output)."""
    node = claimed["node"]
    spec = node["spec"]
    inputs = {k: base64.b64decode(v) for k, v in node.get("inputs", {}).items()}
    command = argument(spec, inputs, "command", runtime)
    if not command or not command[0].strip():
        return "ERROR", b'argument "command" of runtime "%s" is missing' % runtime.encode()
    stdin = argument(spec, inputs, "stdin", runtime)
    timeout = argument(spec, inputs, "timeout", runtime)
    try:
        timeout_s = parse_seconds(timeout[0]) if timeout else None
        # Rule 11: the node's own timeout (the spec's "timeout") bounds the attempt too; the
        # store ends an attempt past it anyway, so stopping here only frees the slot sooner.
        node_timeout_s = parse_seconds(spec["timeout"]) if spec.get("timeout") else None
    except ValueError as e:
        return "ERROR", str(e).encode()
    why = None
    if node_timeout_s is not None and (timeout_s is None or node_timeout_s <= timeout_s):
        timeout_s, why = node_timeout_s, "%s (the node's timeout)" % spec["timeout"]
    env = dict(os.environ)
    env.update(
        ADAGIO_RUN_ID=claimed["runId"],
        ADAGIO_NODE=spec["name"],
        ADAGIO_ATTEMPT=str(claimed.get("attempt", 1)),
        # The attempt's idempotency key: the same for every retry of a finish, unique per attempt.
        ADAGIO_CLAIM_ID=claimed["claimId"],
    )
    for name, value in inputs.items():
        env["ADAGIO_INPUT_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()] = value.decode("utf-8", "replace")
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command[0], "sh"] + command[1:],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    except OSError as e:
        return "ERROR", ("cannot start /bin/sh: %s" % e).encode()
    started(proc)
    threading.Thread(target=feed, args=(proc.stdin, stdin[0].encode() if stdin else b""), daemon=True).start()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    fd = proc.stdout.fileno()
    last = b"\n"
    timed_out = False
    while True:
        wait = OutputStreamer.FLUSH_S
        if deadline is not None:
            wait = max(0.0, min(wait, deadline - time.monotonic()))
        ready, _, _ = select.select([fd], [], [], wait)
        if ready:
            data = os.read(fd, 65536)
            if not data:
                break
            last = data[-1:]
            out.write(data)
        out.tick()
        if deadline is not None and time.monotonic() >= deadline:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.stdout.close()
    proc.wait()
    if timed_out:
        sep = b"" if last == b"\n" else b"\n"
        return "ERROR", sep + ("[adagio] timed out after %s; killed\n" % (why or format_seconds(timeout_s))).encode()
    return ("SUCCESS" if proc.returncode == 0 else "FAIL"), b""


def feed(pipe, data):
    """Writes the command's stdin, then closes it (the command may exit without reading)."""
    try:
        pipe.write(data)
        pipe.close()
    except OSError:
        pass


def format_seconds(s):
    """1.5 -> '1.5s', 2.0 -> '2s', 0.25 -> '250ms'."""
    if s < 1:
        return "%gms" % (s * 1000)
    return "%gs" % s


def kill_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


class Agent:
    """One process: one lease, `workers` registered agents, each long-polling for work."""

    def __init__(self, api, runtime, workers, ttl_ms, wait_ms, prefix):
        self.api = api
        self.runtime = runtime
        self.ttl_ms = ttl_ms
        self.wait_ms = wait_ms
        self.agent_ids = ["%s-%d" % (prefix, i + 1) for i in range(workers)]
        self.lease_id = None
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.busy = 0
        self.idle = threading.Condition(self.lock)
        # claim id -> {"ref": claim as claims-held takes it, "proc": its command once started}
        self.running = {}

    # ---- lease and registration

    def register(self):
        """Grants a lease (first agent) and registers every agent under it; retries while unreachable."""
        delay = 0.2
        while not self.stopping.is_set():
            try:
                first = self.api.call(
                    "register",
                    {
                        "agent_id": self.agent_ids[0],
                        "runtimes": [{"name": self.runtime}],
                        "hostname": socket.gethostname(),
                        "ttl_ms": self.ttl_ms,
                    },
                )
                lease = first["lease"]["id"]
                for agent_id in self.agent_ids[1:]:
                    self.api.call(
                        "register",
                        {"agent_id": agent_id, "runtimes": [{"name": self.runtime}],
                         "hostname": socket.gethostname(), "lease_id": lease},
                    )
                with self.lock:
                    self.lease_id = lease
                log("registered", lease=lease, agents=self.agent_ids, runtime=self.runtime)
                return lease
            except Unreachable as e:
                log("cannot register; retrying", error=str(e))
                self.stopping.wait(delay)
                delay = min(delay * 2, 5)
        return None

    def lease_lost(self, lease):
        """The lease lapsed: its claims are orphaned already. Register again (once per lost lease)."""
        with self.lock:
            if self.lease_id != lease:
                return
            self.lease_id = None
        log("lease lost; registering again", lease=lease)
        try:
            self.register()
        except ApiError as e:
            log("cannot register again; stopping", error=str(e))
            self.stopping.set()

    def heartbeat(self):
        interval = self.ttl_ms / 3000.0
        while not self.stopping.wait(interval):
            lease = self.lease_id
            if lease is None:
                continue
            try:
                self.api.call("heartbeat", {"lease_id": lease}, timeout=interval * 2)
            except ApiError as e:
                if e.status in (404, 409):
                    self.lease_lost(lease)
                else:
                    log("heartbeat refused", error=str(e))
                continue
            except Unreachable as e:
                log("heartbeat failed; retrying", error=str(e))
                continue
            self.stop_lost_claims(timeout=interval * 2)

    def stop_lost_claims(self, timeout):
        """Kills the commands of claims the server no longer holds (run cancelled, claim lapsed)."""
        with self.lock:
            entries = [e for e in self.running.values() if e["proc"] is not None]
        if not entries:
            return
        try:
            held = self.api.call("claims-held", {"claims": [e["ref"] for e in entries]}, timeout=timeout)["held"]
        except (ApiError, Unreachable) as e:
            log("cannot check claims; next heartbeat will", error=str(e))
            return
        for entry, still in zip(entries, held):
            proc = entry["proc"]
            if still or proc.poll() is not None:
                continue
            log("claim no longer held (run cancelled or claim lapsed); stopping the command", **entry["ref"])
            kill_group(proc, signal.SIGTERM)
            timer = threading.Timer(2.0, lambda p=proc: p.poll() is None and kill_group(p, signal.SIGKILL))
            timer.daemon = True
            timer.start()

    # ---- work

    def work(self, agent_id):
        delay = 0.2
        while not self.stopping.is_set():
            lease = self.lease_id
            if lease is None:
                self.stopping.wait(0.2)
                continue
            try:
                res = self.api.call(
                    "claim-next",
                    {"lease_id": lease, "agent_id": agent_id, "runtimes": [self.runtime], "wait_ms": self.wait_ms},
                    timeout=self.wait_ms / 1000.0 + 30,
                )
                delay = 0.2
            except ApiError as e:
                if e.status in (404, 409):
                    self.lease_lost(lease)
                else:
                    log("claim-next refused", error=str(e))
                    self.stopping.wait(delay)
                continue
            except Unreachable as e:
                log("claim-next failed; retrying", error=str(e))
                self.stopping.wait(delay)
                delay = min(delay * 2, 5)
                continue
            claimed = res.get("claimed")
            if claimed:
                with self.lock:
                    self.busy += 1
                try:
                    self.run(agent_id, claimed)
                finally:
                    with self.lock:
                        self.busy -= 1
                        self.idle.notify_all()

    def run(self, agent_id, claimed):
        name = claimed["node"]["spec"]["name"]
        fields = {"run": claimed["runId"], "node": name, "attempt": claimed.get("attempt", 1), "agent": agent_id}
        log("running node", **fields)
        claim_id = claimed["claimId"]
        entry = {"ref": {"run_id": claimed["runId"], "node_name": name, "claim_id": claim_id}, "proc": None}
        with self.lock:
            self.running[claim_id] = entry

        def started(proc):
            with self.lock:
                entry["proc"] = proc

        stream = OutputStreamer(self.api, dict(entry["ref"]))
        try:
            conclusion, output = run_shell(claimed, self.runtime, started, stream)
        except Exception as e:  # a bug here must not leave the node RUNNING until the lease lapses
            conclusion, output = "ERROR", ("agent error: %r" % e).encode()
        finally:
            with self.lock:
                self.running.pop(claim_id, None)
        # What was streamed is the start of the attempt's output; the server adds this after it.
        output = stream.close() + output
        body = {
            "run_id": claimed["runId"],
            "node_name": name,
            "claim_id": claimed["claimId"],
            "conclusion": conclusion,
            "output": base64.b64encode(output).decode("ascii"),
        }
        delay = 0.2
        while True:
            try:
                self.api.call("finish", body)
                log("node finished", conclusion=conclusion, **fields)
                return
            except ApiError as e:
                # 409: the claim is no longer live (lease lapsed, run cancelled); the result is not recorded.
                log("result refused", status=e.status, error=str(e), **fields)
                return
            except Unreachable as e:
                if self.stopping.is_set() and delay > 5:
                    return
                log("finish failed; retrying", error=str(e), **fields)
                time.sleep(delay)
                delay = min(delay * 2, 10)

    # ---- lifecycle

    def serve(self, grace_s):
        if self.register() is None:
            return
        threading.Thread(target=self.heartbeat, daemon=True).start()
        for agent_id in self.agent_ids:
            # Daemon threads: a long-poll in flight must not hold up exit; its claim lapses with the lease.
            threading.Thread(target=self.work, args=(agent_id,), daemon=True).start()
        while not self.stopping.wait(0.5):  # a timed wait, so signal handlers run promptly
            pass
        log("stopping; letting running work finish", grace_s=grace_s)
        deadline = time.monotonic() + grace_s
        with self.lock:
            while self.busy > 0 and time.monotonic() < deadline:
                self.idle.wait(max(0.0, deadline - time.monotonic()))
        lease = self.lease_id
        for i, agent_id in enumerate(self.agent_ids):
            last = i == len(self.agent_ids) - 1
            try:
                self.api.call("deregister", {"agent_id": agent_id, "lease_id": lease if last else ""}, timeout=5)
            except (ApiError, Unreachable) as e:
                log("could not deregister; the lease will lapse", agent=agent_id, error=str(e))
        log("stopped")


def main(argv=None):
    p = argparse.ArgumentParser(description="Adagio agent with a shell runtime (Python, stdlib only).")
    p.add_argument("--address", default=os.environ.get("ADAGIO_ADDRESS", "http://127.0.0.1:7890"))
    p.add_argument("--token", default=os.environ.get("ADAGIO_TOKEN"), help="API token (default $ADAGIO_TOKEN)")
    p.add_argument("--runtime", default="shell", help="runtime name this agent serves (default shell)")
    p.add_argument("--workers", type=int, default=1, help="nodes run at once (default 1)")
    p.add_argument("--lease-ttl", type=float, default=10.0, help="seconds before others recover our work")
    p.add_argument("--wait", type=float, default=20.0, help="long-poll wait in seconds (at most 60)")
    p.add_argument("--grace", type=float, default=30.0, help="on SIGTERM, seconds running work may finish")
    p.add_argument("--agent-id", default="py-%s-%d" % (socket.gethostname(), os.getpid()))
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error("--workers must be at least 1")
    if not re.match(r"^https?://", args.address):
        args.address = "http://" + args.address
    agent = Agent(
        AgentApi(args.address, args.token),
        args.runtime,
        args.workers,
        int(args.lease_ttl * 1000),
        int(min(args.wait, 60) * 1000),
        args.agent_id,
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: agent.stopping.set())
    try:
        agent.serve(args.grace)
    except ApiError as e:
        log("the API refused the agent", error=str(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
