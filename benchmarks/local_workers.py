"""Runs a benchmark's child processes: one alone, or two MultiWorkerMirroredStrategy workers.

The child is the benchmark script itself with `--child`; it prints one JSON
line last, which is returned. Workers meet on free ports of 127.0.0.1.
"""

import json
import os
import socket
import subprocess
import sys


def run(script, arguments, environments):
    """The last JSON line of each child, started with one of `environments` each."""
    processes = [
        subprocess.Popen([sys.executable, script, "--child", *arguments],
                         env=dict(os.environ, **env), stdout=subprocess.PIPE, text=True)
        for env in environments
    ]
    outputs = [p.communicate(timeout=3600)[0] for p in processes]
    if any(p.returncode for p in processes):
        raise SystemExit(f"A child process of {os.path.basename(script)} failed.")
    return [json.loads(o.strip().splitlines()[-1]) for o in outputs]


def worker_environments(count=2):
    """`TF_CONFIG` of `count` workers of one cluster on free local ports."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    workers = [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    for s in sockets:
        s.close()
    return [
        {"TF_CONFIG": json.dumps({"cluster": {"worker": workers},
                                  "task": {"type": "worker", "index": index}})}
        for index in range(count)
    ]
