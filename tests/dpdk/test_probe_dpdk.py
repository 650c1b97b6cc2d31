#!/usr/bin/env python3
"""Issue 13, item 4 on the DPDK path: the probe at full block with
full_block = drop, tesgate with io = dpdk over net_tap, tescontrol on the
test clock.

The client's address is in drop state at a stage that blocks all hour: its
SYN gets no SYN-ACK (the stack's connect-time check), except while a probe
is due for its server (an hour after its last message was read): then the
connection is made and its transaction is read to its headers.  An
out-of-date build gets the 550 at the end of the data and the source is
dropped again; an hour on, an updated build is accepted, resolves the
server, and the source is let in from then on.

Needs root and free hugepages: exits 77 otherwise.  Run under the shared lock
(tests/README: flock /tmp/tesgate-priv.lock).  Every wait is bounded; the
interfaces and processes made here are removed whatever happens.

Usage: test_probe_dpdk.py TESGATE  (TESCONTROL, TESCTL, TES_SRCDIR in env)
"""
import os
import shutil
import smtplib
import socket
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap_harness import hugepages_free, skip, verdict, wait_for  # noqa: E402
import test_tesgate_dpdk as td  # noqa: E402

sys.path.insert(0, os.path.join(td.SRCDIR, "tests", "integration"))
import issue13_harness as h  # noqa: E402

check = td.check
DAY = h.DAY
MIN = h.MIN
SERVER = "ex16-02.contoso.local"
EARLY = "tes_connections_early_dropped_total"


def send(gw, msg):
    """(where, code): where the answer came (mail, data, '' for 250)."""
    try:
        with smtplib.SMTP(gw.ip, td.PORT, timeout=td.IO_TIMEOUT) as s:
            s.ehlo("ex16-02.contoso.local")
            s.sendmail("grace.okafor@contoso.com", ["ian.hughes@example.net"], msg)
    except smtplib.SMTPSenderRefused as e:
        return "mail", e.smtp_code
    except smtplib.SMTPDataError as e:
        return "data", e.smtp_code
    return "", 250


def syn_dropped(gw):
    try:
        c = socket.create_connection((gw.ip, td.PORT), timeout=1.5)
    except (socket.timeout, TimeoutError):
        return True
    except OSError:
        return False
    c.close()
    return False


def scenario(prog):
    tescontrol = os.environ.get("TESCONTROL")
    tesctl = os.environ.get("TESCTL")
    if not tescontrol or not tesctl:
        skip("TESCONTROL/TESCTL not set")
    h.ch.TESCONTROL = tescontrol
    h.ch.TESCTL = tesctl
    tmp = tempfile.mkdtemp(prefix="tesgate-dpdk-probe-")
    policy = os.path.join(tmp, "policy.conf")
    with open(policy, "w") as f:
        f.write("[enforcement]\nfull_block = drop\n")
    comp = os.path.join(tmp, "compliance.conf")
    with open(comp, "w") as f:
        f.write(h.COMPLIANCE)
    os.environ["TES_ALLOW_TEST_CLOCK"] = "1"
    tc = h.ch.Tescontrol(test_clock=h.T0, conf={"policy_file": policy,
                                                 "compliance_file": comp})
    gw = None
    try:
        tc.start()
        gw = td.Gateway(prog, 5, extra=(f"control_socket = {tc.gw_sock}\n"
                                        "follow_test_clock = yes\ngateway_id = gw-probe\n"))
        tc.ctl("tenant", "add", 1, "Contoso", "--connector", f"{gw.kernel_ip}/32")
        gw.start(env=dict(os.environ))
        wait_for(lambda: "control: synchronised" in gw.text(), 20, "tesgate synchronised")
        old = h.exchange_message(SERVER, h.OLD_2016)
        new = h.exchange_message(SERVER, h.NEW_2016)
        check(send(gw, old) == ("", 250), "day 0: the first detection is accepted")
        wait_for(lambda: tc.server(1, SERVER) is not None, 10, "tescontrol tracks the server")

        t = h.T0 + 95 * DAY + 10 * 3600
        tc.set_clock(t)
        # the stage-8 push and the clock reach the gateway: a fresh tenant
        # after them is the fence (the gateway's /metrics counts it)
        tc.ctl("tenant", "add", 2, "fence")
        wait_for(lambda: gw.metrics().get(
            'tes_enforcement_table_entries{table="tenants"}') == 2, 20, "the fence")
        d0 = gw.metrics().get(EARLY, 0)
        check(send(gw, old) == ("data", 550),
              "a probe is due: let in, refused at the end of the data")
        check(gw.metrics().get("tes_probes_total") == 1, "one probe counted")
        check(gw.metrics().get(EARLY, 0) == d0, "the probe's SYN was not dropped")
        wait_for(lambda: tc.server(1, SERVER)["last_seen_unix"] == t, 10,
                 "the probe's sighting in tescontrol")
        tc.set_clock(t + 30 * MIN)
        tc.ctl("tenant", "add", 3, "fence")
        wait_for(lambda: gw.metrics().get(
            'tes_enforcement_table_entries{table="tenants"}') == 3, 20, "the fence")
        check(syn_dropped(gw), "half an hour on: the SYN gets no SYN-ACK")
        check(gw.metrics().get(EARLY, 0) > d0, "early drops rose")

        tc.set_clock(t + 60 * MIN)
        tc.ctl("tenant", "add", 4, "fence")
        wait_for(lambda: gw.metrics().get(
            'tes_enforcement_table_entries{table="tenants"}') == 4, 20, "the fence")
        check(send(gw, new) == ("", 250), "an hour on: the updated build is accepted")
        wait_for(lambda: tc.server(1, SERVER)["status"] == "Resolved", 10,
                 "the server resolved")
        check(send(gw, new) == ("", 250), "and the source is let in from then on")
        check(gw.metrics().get("tes_probes_total") == 2, "two probes in all")
        check(gw.stop() == 0, "tesgate exits 0")
    finally:
        if gw is not None:
            gw.cleanup()
        tc.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    if os.geteuid() != 0:
        skip("needs root (creates a tap device)")
    if hugepages_free() < 128:
        skip("needs free 2 MB hugepages (tools/setup.sh reserves them)")
    failed = []
    try:
        scenario(sys.argv[1])
    except Exception as e:  # noqa: BLE001 - reported as the verdict
        failed.append(repr(e))
        print(f"FAIL: {e!r}", flush=True)
    return verdict(failed)


if __name__ == "__main__":
    sys.exit(main())
