"""Prints the CPU seconds (user + system) used so far by a process and its
direct children, from /proc; bench.sh takes the difference across a wrk run
to show whether the proxy, not the load generator, was the bottleneck.

    proc_cpu.py PID
"""
import os
import sys

TICKS = os.sysconf("SC_CLK_TCK")


def stat_fields(pid):
    """Fields of /proc/PID/stat after the command name, which may hold spaces."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_seconds(root):
    pids = [root]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(stat_fields(entry)[1]) == root:  # field 4: ppid
                    pids.append(int(entry))
            except (OSError, IndexError):
                pass  # the process went away meanwhile
    total = 0
    for pid in pids:
        try:
            fields = stat_fields(pid)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
    return total / TICKS


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: proc_cpu.py PID")
    print(f"{cpu_seconds(int(sys.argv[1])):.2f}")
