"""testbed.kubelet.Kubelet (binds every Pod and reports it Ready) as a process of its own.

The benchmark runs it apart so that its Pod traffic never shares a GIL with the threads that time
the watches. Environment: BENCH_SERVER, BENCH_CA_FILE, BENCH_TOKEN. Runs until its stdin closes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # testbed/, beside bench/: not installed

from testbed.kubeapi import KubeApi
from testbed.kubelet import Kubelet


def main() -> int:
    api = KubeApi(
        os.environ["BENCH_SERVER"], ca_file=Path(os.environ["BENCH_CA_FILE"]), token=os.environ["BENCH_TOKEN"]
    )
    with Kubelet(api):
        print("ready", flush=True)
        sys.stdin.read()
    return 0


if __name__ == "__main__":
    sys.exit(main())
