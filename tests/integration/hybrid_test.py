#!/usr/bin/env python3
"""Hybrid deployment: the control plane and two gateway nodes in separate
network namespaces, linked over tls+tcp:// with mutual TLS (Python 3 stdlib).

Run by suite_hybrid.sh, which builds the network (HY_NS_CP, HY_NS_G1,
HY_NS_G2, HY_NET = "10.213.N", HY_WORK). The control plane's link is cut
with nftables in its namespace (every IP packet to or from the fleet's
subnet dropped, as a pulled cable would; its admin API stays reachable on
its own loopback). While cut: both gateways keep serving and spool usage, one
restarts and boots from its snapshot, a key is revoked. After healing: the
revocation reaches every worker of both nodes (time printed), and the spools
drain with every usage event stored exactly once. A node whose certificate
comes from another CA gets nothing.
"""
import json
import os
import secrets
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

NS_CP, NS_G1, NS_G2 = os.environ["HY_NS_CP"], os.environ["HY_NS_G1"], os.environ["HY_NS_G2"]
NET = os.environ["HY_NET"]
WORK = os.environ["HY_WORK"]
MIGRATIONS = os.environ["CP_MIGRATIONS"]
BIN = h.bin_dir()
GEN_CERTS = os.path.join(h.REPO, "scripts", "gen-certs.sh")
PG_SH = os.path.join(h.REPO, "scripts", "pg.sh")
ADMIN = "hy-admin-" + secrets.token_urlsafe(32)
CP_IP, G1_IP, G2_IP, ROOT_IP = NET + ".2", NET + ".11", NET + ".12", NET + ".254"
GW_PORT, ROGUE_PORT = 8080, 8090
CERTS, ROGUE = os.path.join(WORK, "certs"), os.path.join(WORK, "rogue")


class Env:
    db_url = None
    cp = None
    redis = None
    gws = {}          # name -> harness.Gateway
    states = {}       # name -> state_dir
    k1 = k2 = None    # traffic key, key revoked while cut
    ids = {}          # request id -> node, for every 200 the clients got


ENV = Env()


def ns_run(ns, args, timeout=60):
    return subprocess.run(["ip", "netns", "exec", ns] + args, capture_output=True, text=True,
                          timeout=timeout * h.SLOW)


def sql(q):
    out = ns_run(NS_CP, ["psql", "-X", "-tAc", q, ENV.db_url])
    if out.returncode != 0:
        raise AssertionError("psql: %s" % out.stderr[-500:])
    return out.stdout.strip()


def admin(method, path, body=None, want=(200, 201)):
    """The admin API from inside the control plane's namespace (curl on its loopback)."""
    args = ["curl", "-s", "-m", "20", "-X", method, "-H", "Authorization: Bearer " + ADMIN,
            "-w", "\n%{http_code}", "http://127.0.0.1:8081" + path]
    if body is not None:
        args[1:1] = ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
    out = ns_run(NS_CP, args)
    text, _, code = out.stdout.rpartition("\n")
    h.check(code.isdigit() and int(code) in want, "%s %s: %s %s" % (method, path, code, text[:300]))
    return json.loads(text) if text else None


def nft(*rules):
    out = ns_run(NS_CP, ["nft"] + list(rules))
    h.check(out.returncode == 0, "nft %s: %s" % (" ".join(rules), out.stderr))


def cut():
    nft("add", "table", "inet", "hycut")
    nft("add", "chain", "inet", "hycut", "in", "{ type filter hook input priority 0; }")
    nft("add", "chain", "inet", "hycut", "out", "{ type filter hook output priority 0; }")
    nft("add", "rule", "inet", "hycut", "in", "ip", "saddr", NET + ".0/24", "drop")
    nft("add", "rule", "inet", "hycut", "out", "ip", "daddr", NET + ".0/24", "drop")


def heal():
    nft("delete", "table", "inet", "hycut")


def gw_config(name, ip, port, certs, cert_name):
    return {
        "listen": "%s:%d" % (ip, port), "workers": 2, "access_log": "off",
        "control_plane": "tls+tcp://%s:7400" % CP_IP,
        "control_plane_ca_file": os.path.join(certs, "ca.crt"),
        "control_plane_cert_file": os.path.join(certs, cert_name + ".crt"),
        "control_plane_key_file": os.path.join(certs, cert_name + ".key"),
        "state_dir": ENV.states.setdefault(name, h.make_tmpdir("gwtest-hybrid-%s-" % name)),
        "dataplane_id": cert_name,
        "redis_url": "redis://%s:%d/0" % (ROOT_IP, ENV.redis_port),
    }


def gw_start(name):
    ns, ip = (NS_G1, G1_IP) if name == "hy-g1" else (NS_G2, G2_IP)
    ENV.gws[name] = h.Gateway(gw_config(name, ip, GW_PORT, CERTS, name), ready_timeout=20,
                              netns=ns, host=ip)
    return ENV.gws[name]


def ip_of(name):
    return G1_IP if name == "hy-g1" else G2_IP


def chat(name, key):
    body = {"model": "hy-mock", "messages": [{"role": "user", "content": "over the cut link"}]}
    r = h.http_request(GW_PORT, "POST", "/v1/chat/completions", body=body, key=key, host=ip_of(name), timeout=10)
    if r.status == 200:
        ENV.ids[r.header("x-gateway-request-id")] = name
    return r


def burst(name, n):
    with h.Conn(GW_PORT, host=ip_of(name)) as c:
        for _ in range(n):
            r = c.request("POST", "/v1/chat/completions",
                          {"model": "hy-mock", "messages": [{"role": "user", "content": "burst"}]}, key=ENV.k1)
            h.check(r.status == 200, "%s: %d %r" % (name, r.status, r.body[:200]))
            ENV.ids[r.header("x-gateway-request-id")] = name


def spooled(name):
    d = os.path.join(ENV.states[name], "usage")
    return [f for f in os.listdir(d) if f.endswith(".ub")] if os.path.isdir(d) else []


def stored(ids):
    lst = ",".join("'%s'" % i for i in ids)
    n, distinct = sql("SELECT count(*), count(DISTINCT request_id) FROM spend_log WHERE request_id IN (%s)" % lst).split("|")
    return int(n), int(distinct)


def cp_start(ca_file):
    cfg = os.path.join(WORK, "controlplane.yaml")
    with open(cfg, "w") as f:
        f.write("database_url: %s\nadmin_listen: 127.0.0.1:8081\ndataplane_listen: tls+tcp://%s:7400\n"
                "dataplane_ca_file: %s/%s\ndataplane_cert_file: %s/controlplane.crt\n"
                "dataplane_key_file: %s/controlplane.key\nmaster_key_file: %s/master.key\n" % (
                    ENV.db_url, CP_IP, CERTS, ca_file, CERTS, CERTS, WORK))
    log = open(os.path.join(WORK, "controlplane.log"), "ab")
    ENV.cp = subprocess.Popen(["ip", "netns", "exec", NS_CP, os.path.join(BIN, "controlplane"), "--config", cfg,
                               "--migrations-dir", MIGRATIONS], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                              env=dict(os.environ, CONTROLPLANE_ADMIN_TOKEN=ADMIN), start_new_session=True)
    h._register(ENV.cp)
    h.wait_for(lambda: ns_run(NS_CP, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                      "http://127.0.0.1:8081/healthz"]).stdout == "200", 20, what="control plane")


def cp_stop():
    ENV.cp.terminate()
    try:
        ENV.cp.wait(timeout=10)
    except subprocess.TimeoutExpired:
        h._kill_group(ENV.cp)


# ---------------------------------------------------------------- tests
@h.test
def test_setup_over_mutual_tls():
    for d, ids in ((CERTS, ["hy-g1", "hy-g2"]), (ROGUE, ["hy-rogue"])):
        out = subprocess.run(["bash", GEN_CERTS, d, CP_IP] + ids, capture_output=True, text=True, timeout=60)
        h.check(out.returncode == 0, "gen-certs: %s" % out.stderr)
    out = ns_run(NS_CP, [PG_SH, "start", os.path.join(WORK, "pg"), "5432"], timeout=120)
    h.check(out.returncode == 0, "postgres: %s" % out.stderr[-1000:])
    ENV.db_url = out.stdout.strip()
    ENV.redis_port = h.free_port()
    ENV.redis = subprocess.Popen(["redis-server", "--bind", ROOT_IP, "--port", str(ENV.redis_port), "--save", "",
                                  "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
    h._register(ENV.redis)
    cp_start("ca.crt")
    admin("POST", "/api/models", {"alias": "hy-mock", "deployments": [
        {"provider": "mock", "model": "mock-h", "input_cost_per_mtok": 10, "output_cost_per_mtok": 30}]})
    ENV.k1 = admin("POST", "/api/keys", {"name": "hy-traffic"})["key"]
    k2 = admin("POST", "/api/keys", {"name": "hy-revoked-while-cut"})
    ENV.k2, ENV.k2_id = k2["key"], k2["id"]
    gw_start("hy-g1")
    gw_start("hy-g2")
    for name in ("hy-g1", "hy-g2"):
        h.wait_for(lambda: chat(name, ENV.k1).status == 200 and chat(name, ENV.k2).status == 200, 15,
                   what="%s to serve both keys" % name)
    nodes = {d["id"] for d in admin("GET", "/api/dataplanes")["data"]}
    h.check({"hy-g1", "hy-g2"} <= nodes, "data planes listed: %r" % nodes)
    burst("hy-g1", 40)
    burst("hy-g2", 40)
    h.wait_for(lambda: stored(list(ENV.ids)) == (len(ENV.ids), len(ENV.ids)), 15, what="usage before the cut")


@h.test
def test_cut_serve_restart_revoke_heal():
    before = dict(ENV.ids)
    cut()
    # both nodes keep serving; usage goes to their spools
    burst("hy-g1", 100)
    burst("hy-g2", 100)
    h.wait_for(lambda: spooled("hy-g1") and spooled("hy-g2"), 5, what="usage spooled on both nodes")
    h.check(stored(list(ENV.ids))[0] == len(before), "rows arrived through the cut?")
    # one node restarts while cut off: it boots from its snapshot and serves
    ENV.gws["hy-g1"].stop()
    t0 = time.monotonic()
    gw_start("hy-g1")
    h.log("  hy-g1 restarted while cut off: ready from its snapshot in %.2f s" % (time.monotonic() - t0))
    burst("hy-g1", 30)
    # revoked while cut: the nodes cannot know yet
    admin("POST", "/api/keys/%s/revoke" % ENV.k2_id)
    time.sleep(1.5)
    for name in ("hy-g1", "hy-g2"):
        h.check(chat(name, ENV.k2).status == 200, "%s refused the key through the cut?" % name)
    time.sleep(2)   # long enough for the agents to call the link dead
    heal()
    t0 = time.monotonic()

    def refused_everywhere():
        return all(chat(n, ENV.k2).status == 401 for n in ("hy-g1", "hy-g2") for _ in range(4))
    h.wait_for(refused_everywhere, 10, interval=0.02, what="the revocation on every worker of both nodes")
    h.log("  HYBRID: revocation reached every worker of both nodes %.0f ms after healing" % (
        (time.monotonic() - t0) * 1000))
    ids = list(ENV.ids)
    h.wait_for(lambda: stored(ids) == (len(ids), len(ids)), 60, interval=0.2,
               what="every usage event (%d) stored once" % len(ids))
    h.log("  spools drained %.1f s after healing: %d events, each stored once" % (time.monotonic() - t0, len(ids)))
    h.check(sql("SELECT count(*) - count(DISTINCT request_id) FROM spend_log") == "0", "duplicate rows")
    h.wait_for(lambda: not spooled("hy-g1") and not spooled("hy-g2"), 10, what="empty spools")


@h.test
def test_node_with_a_foreign_certificate_gets_nothing():
    cfg = gw_config("hy-rogue", G2_IP, ROGUE_PORT, ROGUE, "hy-rogue")
    try:
        h.Gateway(cfg, ready_timeout=4, netns=NS_G2, host=G2_IP)
        h.check(False, "a node with a foreign CA's certificate became ready")
    except h.GatewayError as e:
        h.check("not ready" in str(e), "rogue node: %s" % str(e)[:300])
    nodes = {d["id"] for d in admin("GET", "/api/dataplanes")["data"]}
    h.check("hy-rogue" not in nodes, "the rogue node was recorded: %r" % nodes)
    # and the real ones still serve
    h.check(chat("hy-g2", ENV.k1).status == 200, "hy-g2 stopped serving")


@h.test
def test_node_with_a_revoked_certificate_gets_nothing_new():
    out = subprocess.run(["bash", GEN_CERTS, "--revoke", CERTS, "hy-g2"], capture_output=True, text=True, timeout=60)
    h.check(out.returncode == 0, "revoke: %s" % out.stderr)
    cp_stop()
    cp_start("ca-crl.pem")    # the CA followed by its CRL
    k3 = admin("POST", "/api/keys", {"name": "hy-after-revocation"})["key"]
    h.wait_for(lambda: chat("hy-g1", k3).status == 200, 15, what="hy-g1 to get the new key")
    g2 = ENV.gws["hy-g2"]
    g2.new_stderr()
    # its agent finds the link silent and redials, and every handshake fails
    h.wait_for(lambda: "nothing from the control plane" in g2.new_stderr(), 10, what="hy-g2 to lose the link")
    time.sleep(1.5)           # several redials (every 500 ms), each refused at the handshake
    h.check(all(chat("hy-g2", k3).status == 401 for _ in range(4)), "the revoked node received new config")
    h.check(chat("hy-g2", ENV.k1).status == 200, "the revoked node stopped serving what it had")


def teardown():
    for g in ENV.gws.values():
        g.stop()
    if ENV.cp is not None and ENV.cp.poll() is None:
        ENV.cp.terminate()
        try:
            ENV.cp.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    if ENV.redis is not None:
        h._kill_group(ENV.redis)
    with open(os.path.join(WORK, "controlplane.log"), errors="replace") as f:
        bad = [l for l in f if h.SANITIZER_RE.search(l)]
    if bad:
        h.log("sanitizer report in the control plane log:\n" + "".join(bad[:20]))
        h._state["failed"] += 1


if __name__ == "__main__":
    sys.exit(h.run(teardown=teardown, suite_timeout=400))
