# SPDX-License-Identifier: BSD-3-Clause
"""What /proc says about a process the test started: its threads' status
fields (uid, gid, capabilities, no_new_privs), for the privilege tests of
both daemons on both paths."""
import os


def proc_tasks(pid):
    """{tid: {field: value}} of every thread's /proc status; a thread that
    ends while this reads is left out."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        fields = {}
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                for line in f:
                    k, _, v = line.partition(":")
                    fields[k] = v.strip()
        except FileNotFoundError:
            continue
        out[tid] = fields
    return out
