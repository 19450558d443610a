#!/usr/bin/env python3
"""Drive LAVA's own MultiNode protocol class for one group member, written
for lava-rs's interop tests (crates/lava-coordinator/tests/lava_client.rs).

Everything that talks to the coordinator is LAVA's code from the installed
lava_dispatcher (Debian's 2023.01 package):

* lava_dispatcher.protocols.multinode.MultinodeProtocol does the framing,
  the polling, the envelope and turns replies into API results. The only
  change is where its settings come from: LAVA's set_up() reads a hard-coded
  /etc path, so a subclass overrides read_settings() to hand LAVA's own
  parser a temporary file with the host, port and poll delay given here.
  (set_up() still checks that the /etc file exists; Debian's lava-coordinator
  package installs it.)
* The request dicts are built by LAVA's test-shell signal director
  (MultinodeMixin.SignalDirector, what the dispatcher uses for the
  <LAVA_MULTI_NODE> markers), which calls the protocol object, i.e. its
  __call__, and types its answer on a console; a recorder stands in for the
  protocol's caller side and for the console to keep both.

Usage:
  lava_protocol_driver.py --host H --port P --poll-delay S --target-group G
      --group-size N --role R --job-id ID [--timeout SECONDS]
      [--expect-role ROLE] MARKER...

With --expect-role the member's start is delayed (`request: lava-start`):
LAVA's set_up() waits until the first member of ROLE has sent lava_start.

MARKER is what a test shell prints inside "<LAVA_MULTI_NODE> <LAVA_...>":
  "SEND id [k=v ...]", "WAIT id", "WAIT_ALL id [role]", "SYNC id";
or a JSON object, which is given as it is to the protocol object, as an
action's `protocols: {lava-multinode: [...]}` entry is (e.g.
'{"request": "lava-wait", "messageID": "ipv4", "message": {"ip": "$ip"}}').

Output: {"set_up_done_at": T} once set_up() returned, then one JSON line
per marker:
  {"marker": M, "started_at": T, "handled": bool,
   "request": <dict given to the protocol>,
   "reply": <what the protocol returned>, "console": <line typed or null>}
or {"marker": M, "error": "<exception class>: <text>"} (and exit status 1),
then {"finalised": true} once finalise_protocol() (clear_group) returned.
T is the wall clock, in seconds since the epoch.
"""

import argparse
import json
import logging
import os
import re
import sys
import tempfile
import time

from lava_dispatcher.actions.test.multinode import MultinodeMixin
from lava_dispatcher.protocols.multinode import MultinodeProtocol


class ProtocolWithSettingsFile(MultinodeProtocol):
    """LAVA's class, with its settings read from `settings_path`."""

    def __init__(self, parameters, job_id, settings_path):
        super().__init__(parameters, job_id)
        self.settings_path = settings_path

    def read_settings(self, filename):
        return super().read_settings(self.settings_path)


class CallRecorder:
    """Passes each call unchanged to the protocol object and keeps the
    request it was given and the reply it returned."""

    def __init__(self, protocol):
        self.protocol = protocol
        self.calls = []

    def __call__(self, request):
        reply = self.protocol(request)
        self.calls.append((json.loads(json.dumps(request)), reply))
        return reply


class ConsoleRecorder:
    """The device console: keeps what the signal director types."""

    def __init__(self):
        self.lines = []

    def sendline(self, line, delay=0):
        if line.strip():
            self.lines.append(line)


def marker_parameters(name, text):
    """Split a marker's parameters as the dispatcher does after matching it
    (multinode.md 7.3): SEND splits only before a `word=`, so values keep
    their spaces; everything else splits at whitespace."""
    if name == "SEND":
        return re.split(r"\s+(?=\w+=)", text.strip())
    return text.split()


def settings_file(directory, host, port, poll_delay):
    path = os.path.join(directory, "lava-coordinator.conf")
    with open(path, "w") as stream:
        json.dump(
            {
                "port": port,
                "blocksize": 4096,
                "poll_delay": poll_delay,
                "coordinator_hostname": host,
            },
            stream,
        )
    return path


def arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--poll-delay", type=int, default=1)
    parser.add_argument("--target-group", required=True)
    parser.add_argument("--group-size", type=int, required=True)
    parser.add_argument("--role", required=True)
    parser.add_argument("--job-id", required=True)
    parser.add_argument("--timeout", type=int, help="job-level protocol timeout (s)")
    parser.add_argument("--expect-role", help="delay the start until ROLE says so")
    parser.add_argument("markers", nargs="*")
    return parser.parse_args(argv)


def emit(record):
    print(json.dumps(record), flush=True)


def main(argv):
    args = arguments(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG,
        format="%(asctime)s " + args.job_id + " %(levelname)s %(message)s",
    )
    block = {
        "target_group": args.target_group,
        "role": args.role,
        "group_size": args.group_size,
    }
    if args.timeout is not None:
        block["timeout"] = {"seconds": args.timeout}
    if args.expect_role is not None:
        block["request"] = "lava-start"
        block["expect_role"] = args.expect_role
    with tempfile.TemporaryDirectory() as directory:
        path = settings_file(directory, args.host, args.port, args.poll_delay)
        protocol = ProtocolWithSettingsFile(
            {"protocols": {MultinodeProtocol.name: block}}, args.job_id, path
        )
        protocol.set_up()
        emit({"set_up_done_at": time.time()})
        calls = CallRecorder(protocol)
        console = ConsoleRecorder()
        director = MultinodeMixin.SignalDirector(calls)
        director.connection = console
        # A test action's parameters carry the job-level block under the
        # protocol's name; the director takes its timeout from there.
        director.setup({MultinodeProtocol.name: block})
        status = 0
        try:
            for marker in args.markers:
                calls.calls.clear()
                console.lines.clear()
                started_at = time.time()
                try:
                    if marker.startswith("{"):
                        handled = True
                        calls(json.loads(marker))
                    else:
                        name, _, text = marker.partition(" ")
                        handled = director.signal(name, marker_parameters(name, text))
                except Exception as exc:  # reported, then the run stops
                    emit({"marker": marker, "error": "%s: %s" % (type(exc).__name__, exc)})
                    status = 1
                    break
                request, reply = calls.calls[-1] if calls.calls else (None, None)
                emit(
                    {
                        "marker": marker,
                        "started_at": started_at,
                        "handled": handled,
                        "request": request,
                        "reply": reply,
                        "console": console.lines[0] if console.lines else None,
                    }
                )
        finally:
            protocol.finalise_protocol()
        emit({"finalised": True})
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
