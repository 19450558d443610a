#!/usr/bin/env python3
"""A stand-in for LAVA's dispatcher-side coordinator client, written for
lava-rs's interop tests: a byte-level check of the wire that needs no
lava_dispatcher (lava_protocol_driver.py drives LAVA's real class). It
reproduces what goes on the wire exactly as LAVA's client sends it (see
spec/coordinator-protocol.md §4, §8.3):

* the envelope port, blocksize, poll_delay, host, hostname, client_name,
  group_name, role, then the request fields, serialised with json.dumps
  defaults;
* a fresh TCP connection per attempt; the 8-digit upper-case hex header and
  the body in two separate send() calls, then shutdown(SHUT_WR);
* the reply read as recv(8) then recv(4096) chunks counted by chunk size;
  an empty header counts as {"response": "wait"};
* poll again after poll_delay seconds while the reply is "wait".

Usage: lava_wire_client.py HOST PORT POLL_DELAY GROUP SIZE CLIENT ROLE OP...
OP is one of: group_data | send:ID[:k=v,k=v] | wait:ID | wait_all:ID[:ROLE]
             | sync:ID | clear_group
Prints one JSON line per OP: {"op": OP, "reply": <reply>, "polls": N}.
"""

import json
import socket
import sys
import time


def exchange(host, port, message):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(60)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.connect((host, port))
    sock.send(("%08X" % len(message)).encode("utf-8"))
    sock.send(message.encode("utf-8"))
    sock.shutdown(socket.SHUT_WR)
    header = sock.recv(8).decode("utf-8")
    if not header:
        sock.close()
        return json.dumps({"response": "wait"})
    count = int(header, 16)
    received = 0
    reply = ""
    while received < count:
        reply += sock.recv(4096).decode("utf-8")
        received += 4096
    sock.close()
    return reply


def poll(host, port, poll_delay, message, deadline):
    polls = 0
    while True:
        polls += 1
        reply = json.loads(exchange(host, port, message))
        if reply["response"] != "wait":
            return reply, polls
        if time.monotonic() > deadline:
            return {"response": "timeout"}, polls
        time.sleep(poll_delay)


def main(argv):
    host, port, poll_delay, group, size, client, role = argv[1:8]
    port, size, poll_delay = int(port), int(size), float(poll_delay)
    base = {
        "port": port,
        "blocksize": 4096,
        "poll_delay": poll_delay,
        "host": host,
        "hostname": socket.gethostname(),
        "client_name": client,
        "group_name": group,
        "role": role,
    }
    deadline = time.monotonic() + 30
    for op in argv[8:]:
        parts = op.split(":")
        if parts[0] == "group_data":
            request = {"request": "group_data", "group_size": size}
        elif parts[0] == "clear_group":
            request = {"request": "clear_group", "group_size": size}
        elif parts[0] == "send":
            data = {}
            if len(parts) > 2 and parts[2]:
                data = dict(pair.split("=", 1) for pair in parts[2].split(","))
            request = {"request": "lava_send", "messageID": parts[1], "message": data}
        elif parts[0] == "wait":
            request = {"request": "lava_wait", "messageID": parts[1], "nodeID": client}
        elif parts[0] == "wait_all":
            request = {"request": "lava_wait_all", "messageID": parts[1]}
            if len(parts) > 2:
                request["waitrole"] = parts[2]
        elif parts[0] == "sync":
            request = {"request": "lava_sync", "messageID": parts[1]}
        else:
            raise SystemExit("unknown op %s" % op)
        message = dict(base)
        message.update(request)
        reply, polls = poll(host, port, poll_delay, json.dumps(message), deadline)
        print(json.dumps({"op": op, "reply": reply, "polls": polls}), flush=True)


if __name__ == "__main__":
    main(sys.argv)
