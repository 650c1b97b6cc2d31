# SPDX-License-Identifier: BSD-3-Clause
"""tescontrol with store = etcd against bad input: an etcd nobody answers
at, an endpoint that is not etcd, a prefix holding another layout version,
a record of another layout version, a value that is not JSON, at start-up
and while running.  Each is a clear error naming the endpoint or the key,
and nothing is overwritten.

Usage: test_fleet_badinput.py TESGATE  (TESCONTROL, TESCTL, TES_SRCDIR in env)
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fleet_harness as fh  # noqa: E402
from fleet_harness import ch  # noqa: E402
from etcd_harness import EtcdCluster, NotEtcd  # noqa: E402
from fleet_harness import OLD, T0  # noqa: E402


def appliance_conf(endpoints, prefix, name="A"):
    return {"store": "etcd", "etcd_endpoints": ",".join(endpoints), "etcd_prefix": prefix,
            "appliance": name, "flush_seconds": "1", "etcd_timeout_ms": "500",
            "etcd_connect_timeout_ms": "200"}


class BadInput(unittest.TestCase):
    tesgate = None

    @classmethod
    def setUpClass(cls):
        cls.cluster = EtcdCluster(members=3).start()

    @classmethod
    def tearDownClass(cls):
        cls.cluster.cleanup()

    def refused_start(self, endpoints, prefix):
        """tescontrol exits at start-up; its log."""
        tc = ch.Tescontrol(test_clock=T0, conf=appliance_conf(endpoints, prefix))
        try:
            tc.start(wait_ready=False)
            rc = tc.proc.wait(timeout=60)
            log = tc.log_text()
            self.assertEqual(rc, 1, log)
            self.assertNotIn("info: ready:", log)
            return log
        finally:
            tc.cleanup()

    def get(self, key):
        return fh.etcdctl_get(self.cluster, key)

    def test_unreachable(self):
        ports = [fh.free_port(), fh.free_port()]
        eps = [f"http://127.0.0.1:{p}" for p in ports]
        log = self.refused_start(eps, "/unreachable")
        self.assertIn("store: reading (or, in an empty prefix, writing) the layout: etcd txn"
                      " key '/unreachable/layout': no endpoint answered (2 tried)", log)
        for e in eps:
            self.assertIn(e, log)
        self.assertEqual(self.cluster.etcdctl("get", "--prefix", "/unreachable"), "")

    def test_not_etcd(self):
        n = NotEtcd()
        try:
            log = self.refused_start([n.url], "/notetcd")
        finally:
            n.close()
        self.assertIn("store: reading (or, in an empty prefix, writing) the layout: etcd txn"
                      f" key '/notetcd/layout' at {n.url}: not an etcd answer (HTTP 200,"
                      " 'hello, this is not etcd", log)

    def test_foreign_layout(self):
        value = '{"layout":2,"created_by":"a newer tescontrol"}'
        self.cluster.etcdctl("put", "/foreign/layout", value)
        log = self.refused_start(self.cluster.endpoints, "/foreign")
        self.assertIn("etcd key '/foreign/layout': layout version 2, this tescontrol reads 1:"
                      " refusing to touch it (nothing was written)", log)
        self.assertEqual(self.get("/foreign/layout"), value)
        self.assertEqual(self.cluster.etcdctl("get", "--prefix", "--keys-only", "/foreign/"),
                         "/foreign/layout\n\n")

    def test_another_programs_data(self):
        self.cluster.etcdctl("put", "/other/layout", "not ours")
        log = self.refused_start(self.cluster.endpoints, "/other")
        self.assertIn("etcd key '/other/layout' holds no tesgate layout (not ours)", log)
        self.assertEqual(self.get("/other/layout"), "not ours")

    def test_record_of_another_layout(self):
        self.cluster.etcdctl("put", "/recv2/layout", '{"layout":1}')
        value = '{"v":2,"tenant":1,"fqdn":"x.contoso.local","something":"new"}'
        self.cluster.etcdctl("put", "/recv2/v1/servers/1/x.contoso.local", value)
        log = self.refused_start(self.cluster.endpoints, "/recv2")
        self.assertRegex(log, r"etcd key '/recv2/v1/servers/1/x\.contoso\.local' \(revision \d+\):"
                         r" layout version 2, this tescontrol reads 1; left as it is")
        self.assertEqual(self.get("/recv2/v1/servers/1/x.contoso.local"), value)

    def test_not_json(self):
        self.cluster.etcdctl("put", "/notjson/layout", '{"layout":1}')
        self.cluster.etcdctl("put", "/notjson/v1/tenants/7", '{"v":1, "id": 7, oops')
        log = self.refused_start(self.cluster.endpoints, "/notjson")
        self.assertRegex(log, r"etcd key '/notjson/v1/tenants/7' \(revision \d+\): not JSON"
                         r" \(.* at column \d+\); left as it is")
        self.assertEqual(self.get("/notjson/v1/tenants/7"), '{"v":1, "id": 7, oops')

    def test_bad_record_while_running(self):
        """A value no tescontrol wrote, put while it runs: the watch says
        which key and keeps its copy; a sighting of that server is refused
        (the key named) and the value stays; others go on."""
        tc = ch.Tescontrol(test_clock=T0, conf=appliance_conf(self.cluster.endpoints,
                                                               "/running"))
        try:
            tc.start()
            tc.ctl("tenant", "add", 1, "Contoso", "--connector", "127.0.0.0/8")
            gw = ch.FakeGateway(tc.gw_sock)
            key = "/running/v1/servers/1/bad.contoso.local"
            self.cluster.etcdctl("put", key, "garbage{")
            tc.wait_log(rf"error: fleet: etcd key '{key}' \(revision \d+\): not JSON")
            ack = gw.sighting(1, "bad.contoso.local", OLD)
            self.assertFalse(ack["ok"], ack)
            tc.wait_log(rf"storing first of bad.contoso.local: etcd key '{key}' \(revision \d+\):"
                        r" not JSON .*; left as it is")
            self.assertEqual(self.get(key), "garbage{")
            ack = gw.sighting(1, "good.contoso.local", OLD)
            self.assertTrue(ack["ok"], ack)
            self.assertEqual(ack["change"], "first")
            self.assertIn("bad_records", tc.ctl("status")["fleet"])
            self.assertGreaterEqual(tc.ctl("status")["fleet"]["bad_records"], 2)
            gw.close()
        finally:
            tc.cleanup()


if __name__ == "__main__":
    sys.exit(fh.run(sys.argv, [BadInput]))
