"""TLS with client certificates, and user/password authentication under a prefix-limited role,
against real etcd servers; no secret may appear in any log line."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import etcd3
import pytest
import trustme

from gitops_sync.testing import EtcdProcess, ServerTLS, wait_for
from support import CAPABILITIES, EXAMPLE_IDS, PREFIX, Cli, etcdctl, services, value_of

PASSWORD = "correct-horse-battery-staple"  # noqa: S105 - a test password
ROOT_PASSWORD = "root-secret-4711"  # noqa: S105


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> ServerTLS:
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("gitops-sync")
    files = ServerTLS(
        cert=directory / "server.pem",
        key=directory / "server-key.pem",
        ca=directory / "ca.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
    )
    ca.cert_pem.write_to_path(str(files.ca))
    for issued, cert, key in ((server, files.cert, files.key), (client, files.client_cert, files.client_key)):
        issued.private_key_pem.write_to_path(str(key))
        for index, blob in enumerate(issued.cert_chain_pems):
            blob.write_to_path(str(cert), append=index > 0)
    return files


@pytest.fixture(scope="module")
def tls_etcd(tmp_path_factory: pytest.TempPathFactory, tls: ServerTLS) -> Iterator[EtcdProcess]:
    with EtcdProcess(tmp_path_factory.mktemp("tls-etcd"), tls=tls) as server:
        yield server


def test_tls_with_client_certificates(
    cli: Cli, tls: ServerTLS, tls_etcd: EtcdProcess, capabilities: Path
) -> None:
    secure = ["--etcd-endpoints", tls_etcd.endpoint, "--cacert", str(tls.ca)]
    result = cli(
        "--capabilities", capabilities, *secure, "--cert", str(tls.client_cert), "--key", str(tls.client_key)
    )

    assert result.code == 0, result.err
    assert f"Sync complete: {len(EXAMPLE_IDS)} synced, 0 skipped, 0 errors" in result.err
    client = etcd3.client(
        host=tls_etcd.host,
        port=tls_etcd.client_port,
        ca_cert=str(tls.ca),
        cert_key=str(tls.client_key),
        cert_cert=str(tls.client_cert),
        timeout=5,
    )
    assert value_of(client, f"{PREFIX}chora.platform.config_store/type") == b"service"


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([], id="plain-text-to-a-tls-server"),
        pytest.param(["--cacert", "CA"], id="no-client-certificate"),
    ],
)
def test_tls_refused_is_one_clear_error(
    cli: Cli, tls: ServerTLS, tls_etcd: EtcdProcess, capabilities: Path, args: list[str]
) -> None:
    args = [str(tls.ca) if arg == "CA" else arg for arg in args]
    result = cli(
        "--capabilities", capabilities, "--etcd-endpoints", tls_etcd.endpoint, "--etcd-timeout", "1", *args
    )
    assert result.code == 3
    errors = [line for line in result.err.splitlines() if " - ERROR - " in line]
    assert len(errors) == 1
    assert f"etcd at {tls_etcd.endpoint} is unreachable" in errors[0]


def test_tls_files_that_do_not_exist_are_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    result = cli("--list", "--cacert", str(tmp_path / "missing.pem"))
    assert result.code == 2
    assert f"--cacert {tmp_path / 'missing.pem'} is not a readable file" in result.err


@pytest.fixture(scope="module")
def auth_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdProcess]:
    """etcd with authentication on, a root user, and the role the README shows."""
    with EtcdProcess(tmp_path_factory.mktemp("auth-etcd"), extra_args=["--auth-token-ttl=2"]) as server:
        etcdctl(server, "user", "add", f"root:{ROOT_PASSWORD}")
        etcdctl(server, "user", "grant-role", "root", "root")
        etcdctl(server, "role", "add", "gitops-sync")
        for prefix in ("/chora/capabilities/", "/chora/sync/"):
            etcdctl(server, "role", "grant-permission", "gitops-sync", "--prefix=true", "readwrite", prefix)
        etcdctl(server, "user", "add", f"gitops-sync:{PASSWORD}")
        etcdctl(server, "user", "grant-role", "gitops-sync", "gitops-sync")
        etcdctl(server, "auth", "enable")
        yield server


def as_root(server: EtcdProcess) -> etcd3.MultiEndpointEtcd3Client:
    """A freshly authenticated root client (tokens here last 2 s)."""
    client = etcd3.client(host=server.host, port=server.client_port, timeout=5)
    token = client.authstub.Authenticate(
        etcd3.etcdrpc.AuthenticateRequest(name="root", password=ROOT_PASSWORD), 5
    ).token
    client.metadata = (("token", token),)
    client.call_credentials = None  # call credentials need TLS; the token as metadata does not
    return client


@pytest.fixture
def root_client(auth_etcd: EtcdProcess) -> etcd3.MultiEndpointEtcd3Client:
    client = as_root(auth_etcd)
    client.delete_prefix("/chora/")
    return client


def test_a_prefix_limited_user_syncs_and_no_secret_is_logged(
    cli: Cli,
    auth_etcd: EtcdProcess,
    root_client: etcd3.MultiEndpointEtcd3Client,
    capabilities: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ETCD_PASSWORD", PASSWORD)
    monkeypatch.setenv("LOG_LEVEL", "debug")
    result = cli(
        "--capabilities", capabilities, "--etcd-endpoints", auth_etcd.endpoint, "--user", "gitops-sync"
    )

    assert result.code == 0, result.err
    assert f"Sync complete: {len(EXAMPLE_IDS)} synced, 0 skipped, 0 errors" in result.err
    assert value_of(root_client, f"{PREFIX}chora.platform.config_store/version") == b"1.4.0"
    assert PASSWORD not in result.err + result.out


def test_the_password_can_come_from_a_file(
    cli: Cli, auth_etcd: EtcdProcess, root_client: etcd3.MultiEndpointEtcd3Client, tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    result = cli(
        "--list",
        "--etcd-endpoints",
        auth_etcd.endpoint,
        "--user",
        "gitops-sync",
        "--password-file",
        str(secret),
    )
    assert result.code == 0, result.err
    assert result.out.startswith("Found 0 capability/ies in etcd:")


def test_wrong_credentials_give_one_clear_error_and_exit_3(
    cli: Cli, auth_etcd: EtcdProcess, capabilities: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ETCD_PASSWORD", "not-the-password")
    result = cli(
        "--capabilities", capabilities, "--etcd-endpoints", auth_etcd.endpoint, "--user", "gitops-sync"
    )

    assert result.code == 3
    errors = [line for line in result.err.splitlines() if " - ERROR - " in line]
    assert errors == [
        errors[0].split(" - ERROR - ")[0]
        + f" - ERROR - etcd at {auth_etcd.endpoint} refused the credentials of user 'gitops-sync'; "
        "check --user and the password (ETCD_PASSWORD or --password-file)"
    ]
    assert "not-the-password" not in result.err + result.out


def test_a_user_without_a_password_is_a_usage_error(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ETCD_PASSWORD", raising=False)
    result = cli("--list", "--user", "gitops-sync")
    assert result.code == 2
    assert "--user needs a password: set ETCD_PASSWORD or pass --password-file" in result.err


def test_writes_outside_the_role_are_denied_clearly(
    cli: Cli, auth_etcd: EtcdProcess, capabilities: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ETCD_PASSWORD", PASSWORD)
    result = cli(
        "--capabilities",
        capabilities,
        "--etcd-endpoints",
        auth_etcd.endpoint,
        "--user",
        "gitops-sync",
        "--prefix",
        "/elsewhere/capabilities/",
    )
    assert result.code == 3
    assert "denied read: user 'gitops-sync' needs readwrite on the capability and sync prefixes" in result.err


def test_watch_mode_under_the_role_outlives_its_auth_token(
    auth_etcd: EtcdProcess, root_client: etcd3.MultiEndpointEtcd3Client, tmp_path: Path
) -> None:
    capabilities = tmp_path / "capabilities"
    capabilities.mkdir()
    manifest = capabilities / "chora.platform.config_store.yaml"
    manifest.write_bytes((CAPABILITIES / manifest.name).read_bytes())
    with services(tmp_path) as start:
        service = start(
            "--capabilities",
            str(capabilities),
            "--watch",
            "--etcd-endpoints",
            auth_etcd.endpoint,
            "--user",
            "gitops-sync",
            "--lease-ttl",
            "4",
            env={"ETCD_PASSWORD": PASSWORD, "LOG_LEVEL": "debug"},
        )
        service.wait_for_log("Sync complete: 1 synced", timeout=20)
        # etcd drops a simple token unused for its TTL (2 s here), checking once a second, and shows
        # no one when: 3 s is the shortest wait sure to outlast it. The next requests must renew it.
        time.sleep(3)

        manifest.write_text(manifest.read_text().replace("dc_hasVersion: 1.4.0", "dc_hasVersion: 1.4.1"))
        wait_for(
            lambda: value_of(as_root(auth_etcd), f"{PREFIX}chora.platform.config_store/version") == b"1.4.1",
            timeout=5,
        )
        assert " - ERROR - " not in service.text()
        assert PASSWORD not in service.text()


@pytest.mark.parametrize("mode", [[], ["--list"], ["--health-check"], ["--watch"]])
def test_authentication_on_and_no_user_is_one_clear_error_and_exit_3(
    cli: Cli, auth_etcd: EtcdProcess, capabilities: Path, monkeypatch: pytest.MonkeyPatch, mode: list[str]
) -> None:
    """Not a raw gRPC message, and not "healthy": the health check asks for something that needs
    the user's read permission."""
    monkeypatch.delenv("ETCD_USER", raising=False)
    monkeypatch.delenv("ETCD_PASSWORD", raising=False)
    result = cli("--capabilities", capabilities, "--etcd-endpoints", auth_etcd.endpoint, *mode)

    assert result.code == 3, result.err
    errors = [line for line in result.err.splitlines() if " - ERROR - " in line]
    assert len(errors) == 1, result.err
    assert errors[0].endswith(
        f"etcd at {auth_etcd.endpoint} requires authentication: pass --user, with the password in "
        "ETCD_PASSWORD or --password-file"
    )
    assert "healthy" not in result.out
