#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""TLS client-certificate connectors with io = dpdk over net_tap: the same
session layer (conn.c) as the kernel path, on the userspace stack.

tescontrol (test clock) knows tenant 1 with a certificate-only connector
(0.0.0.0/0, name mx.bear.example); tesgate verifies client certificates
against ca.crt.  The Linux side of the tap is an Exchange 2016 server that
sends with its certificate (first detection), and at day 91 it is fully
blocked.  Then, from the same address, swaks and openssl s_client with the
verified certificate are refused (550 5.7.230); with a certificate from
another CA, an expired one, or none, they deliver.

Needs root, free hugepages, swaks and openssl (exit 77 otherwise).  Run
under the shared lock (privileged suite).  Every wait is bounded; the tap
and the processes made here are removed whatever happens.

Usage: test_client_cert_dpdk.py TESGATE  (TESCONTROL, TESCTL, TES_SRCDIR in env)
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
from tap_harness import hugepages_free, skip, verdict, wait_for  # noqa: E402
from test_tesgate_dpdk import PORT, Gateway  # noqa: E402
import ctl_harness as ch  # noqa: E402
from certs_harness import OPENSSL, SWAKS, Certs, SClient, swaks  # noqa: E402

SERVER = "ex16-02.contoso.local"
BLOCK = "550 5.7.230"
PROPAGATION = 10.0


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)
    print("ok:", what, flush=True)


def run(prog):
    certs = Certs()
    tc = ch.Tescontrol(test_clock=ch.T0)
    gw = None
    failed = []
    try:
        tc.start()
        tc.ctl("tenant", "add", 1, "Bear", "--connector", "0.0.0.0/0,mx.bear.example")
        gw = Gateway(prog, 7, extra=(
            f"control_socket = {tc.gw_sock}\nfollow_test_clock = yes\n"
            f"gateway_id = gw-dpdk-cert\n"
            f"tls_cert = {certs.path('server.crt')}\ntls_key = {certs.path('server.key')}\n"
            f"tls_client_ca = {certs.path('ca.crt')}\n"))
        gw.start(env=dict(os.environ, TES_ALLOW_TEST_CLOCK="1"))
        wait_for(lambda: "control: synchronised" in gw.text(), 20, "tesgate synchronised")
        msg = os.path.join(certs.dir, "msg.eml")
        with open(os.path.join(ch.SRCDIR, "tests", "data", "headers", "ex2016-tls.hdr"),
                  "rb") as f, open(msg, "wb") as out:
            out.write(f.read() + b"Body of a simulated Exchange message.\r\n")

        def spooled():
            return len(gw.spooled())

        def send(cert=None):
            before = spooled()
            rc, out = swaks(PORT, msg, certs.pair(cert) if cert else None, server=gw.ip)
            if BLOCK in out:
                check(spooled() == before, f"swaks {cert}: refused, nothing spooled")
                return BLOCK
            check(rc == 0 and "250 2.0.0 Ok: queued as" in out, f"swaks {cert}: queued\n"
                  + out[-1500:])
            gw.wait_spooled(before + 1)
            return "250"

        def sclient(cert=None):
            before = spooled()
            c = SClient(gw.ip, PORT, certs.pair(cert) if cert else None)
            try:
                r = c.transaction(msg)
            finally:
                c.close()
            if r.startswith(BLOCK):
                check(spooled() == before, f"s_client {cert}: refused, nothing spooled")
                return BLOCK
            check(r.startswith("250 2.0.0 Ok: queued as"), f"s_client {cert}: queued ({r})")
            gw.wait_spooled(before + 1)
            return "250"

        check(send("good") == "250", "day 0: swaks with the verified certificate delivers")
        check("client certificate verified: tenant=1" in gw.text(),
              "the verified certificate matched tenant 1's connector")
        wait_for(lambda: tc.server(1, SERVER) is not None, 10, "first detection for tenant 1")
        tc.set_clock(ch.T0 + 91 * ch.DAY + 30 * 60)
        check(tc.server(1, SERVER)["status"] == "Blocking", "day 91: blocking")
        # Once the gateway has applied everything tescontrol had said at
        # day 91, its first answer must be the block: no retry until it is.
        gen = tc.generation()
        wait_for(lambda: gw.metrics().get("tes_control_generation", 0) >= gen, PROPAGATION,
                 f"tesgate at tescontrol's generation {gen}")
        check(send("good") == BLOCK,
              "day 91: swaks with the verified certificate refused (550 5.7.230), first try")
        check(sclient("good") == BLOCK, "openssl s_client with the verified certificate "
              "refused (550 5.7.230)")
        for cert in ("wrong", "expired", None):
            check(send(cert) == "250", f"swaks, certificate {cert}: an ordinary sender")
            check(sclient(cert) == "250", f"s_client, certificate {cert}: an ordinary sender")
        check("client certificate not verified: unable to get local issuer certificate"
              in gw.text(), "the other CA's certificate logged as not verified")
        check("client certificate not verified: certificate has expired" in gw.text(),
              "the expired certificate logged as not verified")
        check(send("good") == BLOCK, "the verified certificate is still refused")
        check(gw.stop() == 0, "tesgate exits 0")
    except Exception as e:  # noqa: BLE001 - report it, then clean up
        failed.append(repr(e))
    finally:
        if gw is not None:
            gw.cleanup()
        tc.cleanup()
        certs.cleanup()
    return verdict(failed)


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    if os.geteuid() != 0:
        skip("needs root (creates a tap device)")
    if hugepages_free() < 128:
        skip("needs free 2 MB hugepages (tools/setup.sh reserves them)")
    if not SWAKS or not OPENSSL or not os.environ.get("TESCONTROL"):
        skip("needs swaks, openssl, TESCONTROL and TESCTL")
    ch.TESCONTROL = os.environ["TESCONTROL"]
    ch.TESCTL = os.environ["TESCTL"]
    return run(sys.argv[1])


if __name__ == "__main__":
    sys.exit(main())
