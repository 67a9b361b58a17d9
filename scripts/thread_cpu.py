#!/usr/bin/env python3
"""CPU time and voluntary context switches per operation, by thread name.

Profiling aid for docs/benchmarks.md (perf has no hardware counters on the
development VM). Take a snapshot of some processes' threads before and after
a load run, then divide by the number of operations the run made:

  scripts/thread_cpu.py snap PID... > before.json
  raftkv-bench ... --total=N
  scripts/thread_cpu.py snap PID... > after.json
  scripts/thread_cpu.py diff before.json after.json N

The i-th PID is reported as member m<i>. Thread names ending in digits are
grouped (raftkv-peer2 and raftkv-peer3 -> raftkv-peer#). CPU is utime +
stime from /proc/<pid>/task/<tid>/stat; context switches are
voluntary_ctxt_switches from .../status.
"""
import collections
import json
import os
import re
import sys


def snap(pids):
    out = {}
    for i, pid in enumerate(pids):
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    stat = f.read()
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    status = f.read()
            except OSError:
                continue  # the thread ended meanwhile
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            ticks = int(fields[11]) + int(fields[12])  # utime + stime
            vcs = int(re.search(r"voluntary_ctxt_switches:\s+(\d+)",
                                status).group(1))
            out[f"m{i + 1}/{tid}/{name}"] = [ticks, vcs]
    return out


def diff(before, after, ops):
    hz = os.sysconf("SC_CLK_TCK")
    rows = collections.defaultdict(lambda: [0, 0])
    for key, (ticks, vcs) in after.items():
        t0, v0 = before.get(key, (0, 0))
        member, _, name = key.split("/", 2)
        row = rows[f"{member} {re.sub(r'[0-9]+$', '#', name)}"]
        row[0] += ticks - t0
        row[1] += vcs - v0
    total = [sum(r[0] for r in rows.values()), sum(r[1] for r in rows.values())]
    for name, (ticks, vcs) in sorted(rows.items(), key=lambda r: -r[1][0]):
        if ticks or vcs:
            print(f"{name:32s} cpu/op {ticks / hz / ops * 1e6:8.1f} us"
                  f"  vcs/op {vcs / ops:6.2f}")
    print(f"{'TOTAL':32s} cpu/op {total[0] / hz / ops * 1e6:8.1f} us"
          f"  vcs/op {total[1] / ops:6.2f}")


def main(argv):
    if len(argv) >= 3 and argv[1] == "snap":
        json.dump(snap(argv[2:]), sys.stdout)
        return 0
    if len(argv) == 5 and argv[1] == "diff":
        with open(argv[2]) as f:
            before = json.load(f)
        with open(argv[3]) as f:
            after = json.load(f)
        diff(before, after, float(argv[4]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
