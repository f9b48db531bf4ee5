"""TLS and mutual TLS for the OTLP exporter, against real HTTPS and gRPC-over-TLS receivers.

A throwaway CA, a server certificate for 127.0.0.1/localhost and a client
certificate are made at test time (``tls_certs``). The exporter is configured
through the environment only, as a deployment would. A delivered profile is
decoded with the official generated classes, run through the specification
checker, and compared with what was sent: the same stacks with the same values.
A refused one ends in ``failed_profiles`` of a ``SimpleProfileProcessor``.

Neither kind of refusal is retried until the export deadline: the deadline is
set to 300 s and each export must return within 120 s, a bound a single
handshake on a loaded machine stays far below; over HTTP the receiver also
counts one connection per export.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import grpc
import pytest
from otlp_receiver import GrpcReceiver, HttpReceiver, Receiver, profiles_of
from support import wait_for
from tls_certs import Pki, make_pki

from otel_profiling.exporters.otlp import OtlpProfileExporter
from otel_profiling.exporters.otlp_config import OtlpConfig, config_from_env
from otel_profiling.formats import get_format
from otel_profiling.processors.base import SimpleProfileProcessor
from otel_profiling.profile import Profile, ProfileKind

PROTOCOLS = ["http/protobuf", "grpc"]
LOGGER = "otel_profiling"
DEADLINE_MS = "300000"
RETURNS_WITHIN_S = 120.0
SECRET = "s3cr3t-t0ken-value"
STACKS = {("main", "handle", "hot_work"): 30, ("main", "handle", "cold_work"): 12}


# -- what is sent ------------------------------------------------------------------------------


def folded_profile(scale: int = 1) -> Profile:
    """A CPU profile whose exact content is known: folded stacks with sample counts."""
    lines = [f"{';'.join(stack)} {count * scale}" for stack, count in STACKS.items()]
    profile = Profile(ProfileKind.CPU_PROFILE, get_format(ProfileKind.CPU_PROFILE, "folded"))
    profile.end("\n".join(lines).encode() + b"\n")
    return profile


def received_stacks(receiver: Receiver) -> List[Dict[Tuple[str, ...], int]]:
    """Per received profile: root-first function names of each stack -> its summed values."""
    out = []
    for profile, d, _ in profiles_of(receiver):
        stacks: Dict[Tuple[str, ...], int] = {}
        for sample in profile.samples:
            names = []
            for loc in d.stack_table[sample.stack_index].location_indices:
                for line in d.location_table[loc].lines:
                    function = d.function_table[line.function_index]
                    names.append(d.string_table[function.name_strindex])
            stack = tuple(reversed(names))
            stacks[stack] = stacks.get(stack, 0) + sum(sample.values)
        out.append(stacks)
    return out


# -- receivers and settings --------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(autouse=True)
def _clean_otlp_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_EXPORTER_OTLP_"):
            monkeypatch.delenv(name)


Serve = Callable[..., Any]


@pytest.fixture
def serve(pki: Pki) -> Iterator[Serve]:
    """``serve(protocol, tls=True, client_auth=False)``: a started receiver, stopped after."""
    started: List[Any] = []

    def start(protocol: str, *, tls: bool = True, client_auth: bool = False) -> Any:
        server: Any
        if protocol == "grpc":
            credentials = None
            if tls:
                credentials = grpc.ssl_server_credentials(
                    [(pki.server_key.read_bytes(), pki.server_cert.read_bytes())],
                    root_certificates=pki.ca.read_bytes() if client_auth else None,
                    require_client_auth=client_auth,
                )
            server = GrpcReceiver(credentials=credentials)
        else:
            context = None
            if tls:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(pki.server_cert, pki.server_key)
                if client_auth:
                    context.load_verify_locations(pki.ca)
                    context.verify_mode = ssl.CERT_REQUIRED
            server = HttpReceiver(tls=context)
        server.protocol = protocol
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()
    for server in started:
        server.raise_errors()


_MADE: List[OtlpProfileExporter] = []


@pytest.fixture(autouse=True)
def _close_exporters() -> Iterator[None]:
    yield
    while _MADE:
        _MADE.pop().shutdown()


def configure(
    monkeypatch: pytest.MonkeyPatch,
    receiver: Any,
    *,
    generic: bool = False,
    endpoint: str = "",
    **settings: Any,
) -> None:
    """The receiver's protocol and endpoint, and ``settings`` (``CERTIFICATE=path``, ...) as
    ``OTEL_EXPORTER_OTLP_PROFILES_*`` variables, or the generic ``OTEL_EXPORTER_OTLP_*``."""
    prefix = "OTEL_EXPORTER_OTLP_" if generic else "OTEL_EXPORTER_OTLP_PROFILES_"
    monkeypatch.setenv(prefix + "PROTOCOL", receiver.protocol)
    if not endpoint:
        endpoint = receiver.endpoint
        if receiver.protocol == "http/protobuf" and not generic:
            endpoint += "/v1development/profiles"  # the profiles endpoint is used as given
    monkeypatch.setenv(prefix + "ENDPOINT", endpoint)
    monkeypatch.setenv(prefix + "HEADERS", f"authorization=Bearer%20{SECRET}")
    for name, value in settings.items():
        monkeypatch.setenv(prefix + name, str(value))


def exporter_from_env() -> OtlpProfileExporter:
    exporter = OtlpProfileExporter()
    _MADE.append(exporter)
    return exporter


def export_all(processor: SimpleProfileProcessor, profiles: List[Profile]) -> None:
    """Each profile through the processor, on a thread that must return well before the
    300 s deadline: a refusal is not retried."""
    thread = threading.Thread(target=lambda: [processor.on_end(p) for p in profiles], daemon=True)
    thread.start()
    thread.join(RETURNS_WITHIN_S)
    assert not thread.is_alive(), "the export was retried until its deadline"


def errors(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def assert_delivered(receiver: Any, processor: SimpleProfileProcessor, sent: int = 1) -> None:
    assert processor.exported_profiles == sent and processor.failed_profiles == 0
    assert received_stacks(receiver) == [STACKS] * sent
    headers = {key.lower(): value for key, value in receiver.headers[0].items()}
    assert headers["authorization"] == f"Bearer {SECRET}"
    receiver.raise_errors()


# -- a trusted CA ------------------------------------------------------------------------------


@pytest.mark.parametrize("generic", [False, True], ids=["profiles-vars", "generic-vars"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_receiver_signed_by_the_configured_ca_gets_the_profile_intact(
    protocol: str,
    generic: bool,
    serve: Serve,
    pki: Pki,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = serve(protocol)
    configure(monkeypatch, receiver, generic=generic, CERTIFICATE=pki.ca)
    processor = SimpleProfileProcessor(exporter_from_env())
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        export_all(processor, [folded_profile()])
    assert_delivered(receiver, processor)
    assert not errors(caplog)
    assert SECRET not in caplog.text


# -- a server certificate that is not trusted --------------------------------------------------


@pytest.mark.parametrize("trust", ["system-cas", "another-ca"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_untrusted_receiver_is_a_permanent_error_naming_the_fix(
    protocol: str,
    trust: str,
    serve: Serve,
    pki: Pki,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = serve(protocol)
    settings: Dict[str, Any] = {"TIMEOUT": DEADLINE_MS}
    if trust == "another-ca":
        settings["CERTIFICATE"] = pki.other_ca
    configure(monkeypatch, receiver, generic=trust == "another-ca", **settings)
    processor = SimpleProfileProcessor(exporter_from_env())
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        export_all(processor, [folded_profile(), folded_profile()])
    assert processor.failed_profiles == 2 and processor.exported_profiles == 0
    assert receiver.requests == []
    (error,) = [e for e in errors(caplog) if "Could not send" in e]  # logged once
    assert "certificate" in error and "not trusted" in error
    assert "OTEL_EXPORTER_OTLP_PROFILES_CERTIFICATE" in error
    assert "not retried" in error
    if protocol == "http/protobuf":
        assert receiver.connections == 2  # one try per export
        assert wait_for(lambda: receiver.tls_failures == 2, timeout=30)
    assert SECRET not in caplog.text


def test_https_verifies_the_receiver_even_with_insecure_set(
    serve: Serve, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = serve("http/protobuf")
    configure(monkeypatch, receiver, INSECURE="true", TIMEOUT=DEADLINE_MS)
    processor = SimpleProfileProcessor(exporter_from_env())
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        export_all(processor, [folded_profile()])
    assert processor.failed_profiles == 1
    assert receiver.connections == 1
    assert any("not trusted" in e for e in errors(caplog))


# -- mutual TLS --------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_receiver_requiring_a_client_certificate_gets_it(
    protocol: str, serve: Serve, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = serve(protocol, client_auth=True)
    configure(
        monkeypatch,
        receiver,
        generic=protocol == "grpc",
        CERTIFICATE=pki.ca,
        CLIENT_KEY=pki.client_key,
        CLIENT_CERTIFICATE=pki.client_cert,
    )
    processor = SimpleProfileProcessor(exporter_from_env())
    export_all(processor, [folded_profile()])
    assert_delivered(receiver, processor)


def test_https_without_the_client_certificate_is_a_permanent_error_naming_the_fix(
    serve: Serve, pki: Pki, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = serve("http/protobuf", client_auth=True)
    configure(monkeypatch, receiver, CERTIFICATE=pki.ca, TIMEOUT=DEADLINE_MS)
    processor = SimpleProfileProcessor(exporter_from_env())
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        export_all(processor, [folded_profile(), folded_profile()])
    assert processor.failed_profiles == 2 and processor.exported_profiles == 0
    assert receiver.connections == 2
    assert wait_for(lambda: receiver.tls_failures == 2, timeout=30)
    (error,) = [e for e in errors(caplog) if "Could not send" in e]
    assert "refused the TLS handshake" in error and "CERTIFICATE_REQUIRED" in error
    assert "OTEL_EXPORTER_OTLP_PROFILES_CLIENT_KEY" in error
    assert "OTEL_EXPORTER_OTLP_PROFILES_CLIENT_CERTIFICATE" in error


def test_grpc_without_the_client_certificate_fails_with_the_fix_in_the_message(
    serve: Serve, pki: Pki, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A gRPC client sees the refusal only as a closed connection, which a restarting
    receiver also causes: it is retried within the (here short) deadline, and the
    message says what a receiver requiring mutual TLS needs."""
    receiver = serve("grpc", client_auth=True)
    configure(monkeypatch, receiver, CERTIFICATE=pki.ca, TIMEOUT="2000")
    processor = SimpleProfileProcessor(exporter_from_env())
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        export_all(processor, [folded_profile()])
    assert processor.failed_profiles == 1 and processor.exported_profiles == 0
    assert receiver.requests == []
    (warning,) = [r.getMessage() for r in caplog.records if "Could not send" in r.getMessage()]
    assert "OTEL_EXPORTER_OTLP_PROFILES_CLIENT_KEY" in warning
    assert "OTEL_EXPORTER_OTLP_PROFILES_CLIENT_CERTIFICATE" in warning


# -- TLS files that cannot be used -------------------------------------------------------------


def _bad_files(pki: Pki, tmp_path: Path) -> Dict[str, Tuple[Dict[str, Any], str, str]]:
    """case -> (settings, the variable named, the problem named)."""
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("this is not a certificate\n")
    missing = tmp_path / "missing" / "ca.pem"
    return {
        "missing-ca": ({"CERTIFICATE": missing}, "CERTIFICATE", "No such file"),
        "garbage-ca": ({"CERTIFICATE": garbage}, "CERTIFICATE", "no PEM certificate"),
        "key-is-a-directory": (
            {"CERTIFICATE": pki.ca, "CLIENT_KEY": tmp_path, "CLIENT_CERTIFICATE": pki.client_cert},
            "CLIENT_KEY",
            "directory",
        ),
        "key-of-another-certificate": (
            {
                "CERTIFICATE": pki.ca,
                "CLIENT_KEY": pki.server_key,
                "CLIENT_CERTIFICATE": pki.client_cert,
            },
            "CLIENT_KEY",
            "does not match",
        ),
        "encrypted-key": (
            {
                "CERTIFICATE": pki.ca,
                "CLIENT_KEY": pki.client_key_encrypted,
                "CLIENT_CERTIFICATE": pki.client_cert,
            },
            "CLIENT_KEY",
            "encrypted",
        ),
        "certificate-without-key": (
            {"CERTIFICATE": pki.ca, "CLIENT_CERTIFICATE": pki.client_cert},
            "CLIENT_CERTIFICATE",
            "CLIENT_KEY",
        ),
    }


BAD_FILE_CASES = [
    "missing-ca",
    "garbage-ca",
    "key-is-a-directory",
    "key-of-another-certificate",
    "encrypted-key",
    "certificate-without-key",
]


@pytest.mark.parametrize("case", BAD_FILE_CASES)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_unusable_tls_file_is_a_configuration_warning_never_a_retried_send(
    protocol: str,
    case: str,
    serve: Serve,
    pki: Pki,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As any bad value: one warning naming the variable and the path, and the setting is
    ignored; the export then fails (or succeeds) as it would without it, never as a
    transient network error retried until the deadline."""
    settings, variable, problem = _bad_files(pki, tmp_path)[case]
    client = variable != "CERTIFICATE"
    receiver = serve(protocol, client_auth=client)
    # without a client certificate a gRPC client sees only a closed connection, retried
    # within the deadline (see above): a short one here
    deadline = "2000" if client and protocol == "grpc" else DEADLINE_MS
    configure(monkeypatch, receiver, TIMEOUT=deadline, **settings)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        exporter = exporter_from_env()
    config = exporter.config
    name = f"OTEL_EXPORTER_OTLP_PROFILES_{variable}"
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert name in warning and str(settings[variable]) in warning and problem in warning
    assert getattr(config, variable.lower()) is None, "the unusable setting is ignored"
    if client:  # a client certificate without its key (or the reverse) is no use
        assert config.client_key is None and config.client_certificate is None

    caplog.clear()
    processor = SimpleProfileProcessor(exporter)
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        export_all(processor, [folded_profile()])
    assert processor.failed_profiles == 1 and processor.exported_profiles == 0
    assert str(settings[variable]) not in caplog.text and "Errno" not in caplog.text
    if protocol == "http/protobuf":
        assert receiver.connections == 1  # one try: refused by the handshake, not retried


@pytest.mark.parametrize("case", BAD_FILE_CASES)
def test_an_unusable_tls_file_given_in_code_is_refused_when_the_exporter_is_made(
    case: str, pki: Pki, tmp_path: Path
) -> None:
    settings, variable, problem = _bad_files(pki, tmp_path)[case]
    config = OtlpConfig(
        endpoint="https://127.0.0.1:4318/v1development/profiles",
        **{key.lower(): str(value) for key, value in settings.items()},
    )
    with pytest.raises(ValueError) as raised:
        OtlpProfileExporter(config)
    message = str(raised.value)
    assert f"OTEL_EXPORTER_OTLP_PROFILES_{variable}" in message and problem in message
    assert str(settings[variable]) in message


# -- secrets -----------------------------------------------------------------------------------


def test_the_key_and_header_values_never_appear_in_logs_reprs_or_errors(
    serve: Serve,
    pki: Pki,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key_lines = [
        line for line in pki.client_key.read_text().splitlines() if not line.startswith("-----")
    ]
    assert key_lines
    https = serve("http/protobuf", client_auth=True)
    grpcs = serve("grpc", client_auth=True)
    shown: List[str] = []
    made: List[OtlpProfileExporter] = []
    with caplog.at_level(logging.DEBUG):
        for receiver in (https, grpcs):
            # a working mTLS export, then a key that does not match, then no client certificate
            for key in (pki.client_key, pki.server_key):
                configure(
                    monkeypatch,
                    receiver,
                    CERTIFICATE=pki.ca,
                    CLIENT_KEY=key,
                    CLIENT_CERTIFICATE=pki.client_cert,
                    TIMEOUT="2000",
                )
                exporter = exporter_from_env()
                made.append(exporter)
                shown += [repr(exporter), repr(exporter.config), exporter.destination]
                export_all(SimpleProfileProcessor(exporter), [folded_profile()])
            with pytest.raises(ValueError) as raised:
                OtlpProfileExporter(
                    OtlpConfig(
                        endpoint=receiver.endpoint,
                        protocol=receiver.protocol,
                        client_key=str(pki.client_key),
                    )
                )
            shown.append(str(raised.value))
    assert len(https.requests) == 1 and len(grpcs.requests) == 1
    shown.append(caplog.text)
    for text in shown:
        assert SECRET not in text
        assert not any(line in text for line in key_lines)
    assert str(pki.client_key) in repr(made[0]), "the path is shown, not the content"


# -- INSECURE and the endpoint's scheme (gRPC) -------------------------------------------------


def test_grpc_scheme_and_insecure_choose_tls_as_the_specification_says(
    serve: Serve, pki: Pki, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``https://`` always means TLS and ``http://`` plain text; ``INSECURE`` decides only
    for an endpoint without scheme, TLS unless it is true."""
    plain = serve("grpc", tls=False)
    secure = serve("grpc")
    port = {"plain": plain.port, "secure": secure.port}

    def send(receiver: Any, endpoint: str, **settings: Any) -> SimpleProfileProcessor:
        for name in ("INSECURE", "CERTIFICATE"):
            monkeypatch.delenv(f"OTEL_EXPORTER_OTLP_PROFILES_{name}", raising=False)
        configure(monkeypatch, receiver, endpoint=endpoint, TIMEOUT=DEADLINE_MS, **settings)
        processor = SimpleProfileProcessor(exporter_from_env())
        export_all(processor, [folded_profile()])
        return processor

    assert send(plain, f"127.0.0.1:{port['plain']}", INSECURE="true").exported_profiles == 1
    assert send(secure, f"127.0.0.1:{port['secure']}", CERTIFICATE=pki.ca).exported_profiles == 1
    assert (
        send(
            secure, f"https://localhost:{port['secure']}", INSECURE="true", CERTIFICATE=pki.ca
        ).exported_profiles
        == 1
    )
    assert received_stacks(plain) == [STACKS]
    assert received_stacks(secure) == [STACKS, STACKS]

    # without INSECURE a schemeless endpoint speaks TLS: a plain-text receiver cannot answer
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        refused = send(plain, f"127.0.0.1:{port['plain']}", INSECURE="false", CERTIFICATE=pki.ca)
    assert refused.failed_profiles == 1
    assert len(plain.requests) == 1
    assert any("TLS handshake failed" in e for e in errors(caplog))

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT", "http://collector:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROFILES_INSECURE", "false")
    assert config_from_env().grpc_target() == ("collector:4317", True)
