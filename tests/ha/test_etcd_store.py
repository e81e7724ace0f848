"""The etcd backend beyond the contract: failover between endpoints, ``Unavailable``
(never a hang or another error) without quorum, recovery, and TLS with client
certificates. Real clusters of Debian's etcd-server on loopback, stopped by pid."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
import time
from pathlib import Path

import pytest

from plexus.lab.etcd import EtcdMissing, LocalCluster, ServerTLS
from plexus.store import Compare, Put, StoreError, Unavailable, open_store
from plexus.store.etcd import EtcdStore
from tests.ha.conftest import running_etcd


@pytest.fixture
def cluster(tmp_path: Path):
    """A 3-member cluster with quick elections."""
    with running_etcd(tmp_path / "etcd", size=3, heartbeat_ms=50, election_ms=500) as c:
        yield c


def test_failover_quorum_loss_and_recovery(cluster: LocalCluster):
    store = open_store(cluster.url)
    try:
        store.put("/f/a", b"1")
        first, second, _ = (m.name for m in cluster.members)

        # The endpoint in use dies: reads, writes and watches go on elsewhere.
        watched = []
        watcher = threading.Thread(
            target=lambda: watched.extend(store.watch("/f/", 2, timeout=20).events))
        watcher.start()
        cluster.kill(first)
        assert store.get("/f/a").value == b"1"
        kv = store.get("/f/a")
        assert store.txn([Compare("/f/a", kv.mod_revision)], [Put("/f/a", b"2")]).succeeded
        watcher.join(timeout=30)
        assert [e.kv.value for e in watched] == [b"2"]

        # No quorum: a clear Unavailable within the request timeout, for writes and reads.
        cluster.kill(second)
        began = time.monotonic()
        with pytest.raises(Unavailable):
            store.put("/f/b", b"lost?")
        with pytest.raises(Unavailable):
            store.range("/f/")
        assert time.monotonic() - began < 30

        # Quorum back: everything acknowledged is there, and writes work again.
        cluster.start_member(first)
        cluster.start_member(second)
        deadline = time.monotonic() + 30
        while True:
            try:
                store.put("/f/c", b"3")
                break
            except Unavailable:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert store.get("/f/a").value == b"2" and store.get("/f/c").value == b"3"
    finally:
        store.close()


def test_every_endpoint_down_is_unavailable_at_once(tmp_path: Path):
    store = EtcdStore(["http://127.0.0.1:1", "http://127.0.0.1:2"])
    began = time.monotonic()
    for call in (store.revision, lambda: store.put("/k", b""), lambda: store.watch("/", 0, 1),
                 lambda: store.lease_grant(5)):
        with pytest.raises(Unavailable):
            call()
    assert time.monotonic() - began < 5
    store.close()
    with pytest.raises(StoreError):
        store.get("/k")


def _certificates(directory: Path) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    files: dict[str, str] = {}

    def write(name: str, key, cert) -> None:
        (directory / f"{name}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[name] = str(directory / f"{name}.pem")
        files[f"{name}-key"] = str(directory / f"{name}.key")

    def build(subject: str, key, issuer=None, issuer_key=None, usage=None):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        b = (x509.CertificateBuilder().subject_name(name)
             .issuer_name(issuer.subject if issuer else name).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=1)))
        if issuer is None:
            b = b.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        else:
            # etcd 3.4's JSON gateway dials its own member with the member's certificate,
            # so a member certificate needs client authentication too
            usages = [usage, ExtendedKeyUsageOID.CLIENT_AUTH] \
                if usage == ExtendedKeyUsageOID.SERVER_AUTH else [usage]
            b = b.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            if usage == ExtendedKeyUsageOID.SERVER_AUTH:
                b = b.add_extension(x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return b.sign(issuer_key or key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("plexus-test-ca", ca_key)
    write("ca", ca_key, ca)
    for name, usage in (("server", ExtendedKeyUsageOID.SERVER_AUTH),
                        ("client", ExtendedKeyUsageOID.CLIENT_AUTH)):
        key = ec.generate_private_key(ec.SECP256R1())
        write(name, key, build(f"plexus-{name}", key, ca, ca_key, usage))
    return files


def test_tls_with_client_certificates(tmp_path: Path):
    pem = _certificates(tmp_path)
    client_ssl = ssl.create_default_context(cafile=pem["ca"])
    client_ssl.load_cert_chain(pem["client"], pem["client-key"])
    cluster = LocalCluster(tmp_path / "etcd", size=1, heartbeat_ms=10, election_ms=100,
                           tls=ServerTLS(pem["server"], pem["server-key"], pem["ca"]),
                           client_ssl=client_ssl)
    try:
        cluster.start()
    except EtcdMissing as exc:
        pytest.skip(str(exc))
    try:
        store = open_store(cluster.url, ca_file=pem["ca"], cert_file=pem["client"],
                           key_file=pem["client-key"])
        assert store.endpoints[0].startswith("https://")
        store.put("/t/k", b"v")
        assert store.get("/t/k").value == b"v"
        threading.Timer(0.2, store.put, ("/t/k", b"w")).start()
        assert [e.kv.value for e in store.watch("/t/", 0, timeout=10).events] == [b"w"]
        store.close()
        anonymous = open_store(cluster.url, ca_file=pem["ca"])     # no client certificate
        with pytest.raises(StoreError):
            anonymous.get("/t/k")
        anonymous.close()
    finally:
        cluster.stop()
