"""Configuration files: TOML, YAML and JSON; env interpolation; errors naming file, connector and path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from messaging_core import (
    ChannelRegistry,
    ConfigurationError,
    ConnectorSpec,
    ConnectorState,
    MessagingConfig,
    WebhookSettings,
    load_config,
)
from messaging_core.config import config_json_schema

TOML = """
[connectors.sms]
channel = "acme_sms"
schema = "TextOnly"

[connectors.sms.parameters]
AccountId = "${ACME_ACCOUNT:-AC0123abcd}"
AuthToken = "${ACME_TOKEN}"
ValidityPeriod = 600

[connectors.inbox]
channel = "memory"
enabled = false

[webhooks]
public_url = "https://hooks.example.com"
trust_forwarded_headers = true
max_body_bytes = 65536
request_timeout = 2.5
host = "0.0.0.0"
port = 9000
"""

YAML = """
connectors:
  sms:
    channel: acme_sms
    schema: TextOnly
    parameters:
      AccountId: ${ACME_ACCOUNT:-AC0123abcd}
      AuthToken: "${ACME_TOKEN}"
      ValidityPeriod: 600
  inbox:
    channel: memory
    enabled: false
webhooks:
  public_url: https://hooks.example.com
  trust_forwarded_headers: true
  max_body_bytes: 65536
  request_timeout: 2.5
  host: 0.0.0.0
  port: 9000
"""

DATA: dict[str, Any] = {
    "connectors": {
        "sms": {
            "channel": "acme_sms",
            "schema": "TextOnly",
            "parameters": {
                "AccountId": "${ACME_ACCOUNT:-AC0123abcd}",
                "AuthToken": "${ACME_TOKEN}",
                "ValidityPeriod": 600,
            },
        },
        "inbox": {"channel": "memory", "enabled": False},
    },
    "webhooks": {
        "public_url": "https://hooks.example.com",
        "trust_forwarded_headers": True,
        "max_body_bytes": 65536,
        "request_timeout": 2.5,
        "host": "0.0.0.0",
        "port": 9000,
    },
}

ENV = {"ACME_TOKEN": "acme-secret-token-42"}


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, "utf-8")
    return path


@pytest.fixture(params=["config.toml", "config.yaml", "config.yml", "config.json"])
def config_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    name: str = request.param
    text = TOML if name.endswith(".toml") else YAML if ".y" in name else json.dumps(DATA)
    return _write(tmp_path, name, text)


def test_every_format_reads_the_same(config_file: Path) -> None:
    config = load_config(config_file, environ=ENV)
    assert config.path == config_file
    assert config.where == str(config_file)
    assert config.connectors == {
        "sms": ConnectorSpec(
            "sms",
            "acme_sms",
            "TextOnly",
            {"AccountId": "AC0123abcd", "AuthToken": "acme-secret-token-42", "ValidityPeriod": 600},
        ),
        "inbox": ConnectorSpec("inbox", "memory", None, {}, enabled=False),
    }
    assert config.webhooks == WebhookSettings("https://hooks.example.com", True, 65536, 2.5, "0.0.0.0", 9000)


def test_defaults(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "c.toml", '[connectors.m]\nchannel = "memory"\n'), environ={})
    assert config.webhooks == WebhookSettings()
    assert (config.webhooks.host, config.webhooks.port, config.webhooks.max_body_bytes) == ("127.0.0.1", 8080, 262144)
    assert config.webhooks.trust_forwarded_headers is False
    assert config.connectors["m"].enabled is True
    assert config.dispatcher is None
    assert "parameters" not in repr(config.connectors["m"])  # parameters may hold secrets


def test_interpolation_reads_the_process_environment_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_TOKEN", "from-os-environ")
    monkeypatch.setenv("ACME_ACCOUNT", "AC99999999")
    config = load_config(_write(tmp_path, "c.toml", TOML))
    assert config.connectors["sms"].parameters["AuthToken"] == "from-os-environ"
    assert config.connectors["sms"].parameters["AccountId"] == "AC99999999"


def test_the_shipped_schema_is_valid() -> None:
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(config_json_schema())


# -- errors: every one names the file, the connector and the JSON path -------------------------------


def _error(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigurationError) as raised:
        load_config(path, environ=environ if environ is not None else {})
    return str(raised.value)


def test_missing_environment_variables(tmp_path: Path) -> None:
    path = _write(tmp_path, "c.toml", TOML)
    message = _error(path)
    assert message.splitlines() == [
        f"{path}: 1 problem(s) in the configuration",
        f"  - {path}: connector 'sms', $.connectors.sms.parameters.AuthToken: "
        "environment variable ACME_TOKEN is not set",
    ]


def test_every_missing_variable_is_listed(tmp_path: Path) -> None:
    text = '[connectors.a]\nchannel = "${CHANNEL_A}"\n[connectors.b]\nchannel = "memory"\nschema = "${SCHEMA_B}"\n'
    message = _error(_write(tmp_path, "c.toml", text))
    assert "2 problem(s)" in message
    assert "connector 'a', $.connectors.a.channel: environment variable CHANNEL_A is not set" in message
    assert "connector 'b', $.connectors.b.schema: environment variable SCHEMA_B is not set" in message


def test_unknown_keys(tmp_path: Path) -> None:
    text = (
        '[connectors.sms]\nchannel = "memory"\nparamters = {}\n'
        "[webhooks]\nport = 80\nhots = 'x'\n"
        '[logging]\nlevel = "debug"\n'
    )
    path = _write(tmp_path, "c.toml", text)
    message = _error(path)
    assert message.splitlines() == [
        f"{path}: 3 problem(s) in the configuration",
        f"  - {path}: connector 'sms', $.connectors.sms.paramters: is not a known field",
        f"  - {path}: $.logging: is not a known field",
        f"  - {path}: $.webhooks.hots: is not a known field",
    ]


def test_wrong_types_in_the_file(tmp_path: Path) -> None:
    text = (
        "[connectors.sms]\nchannel = 1\nenabled = 'yes'\n"
        '[webhooks]\nport = true\nmax_body_bytes = "14400"\nrequest_timeout = 0\npublic_url = "hooks.example.com"\n'
    )
    path = _write(tmp_path, "c.toml", text)
    message = _error(path)
    for expected in (
        "connector 'sms', $.connectors.sms.channel: must be of type string (got integer)",
        "connector 'sms', $.connectors.sms.enabled: must be of type boolean (got string)",
        "$.webhooks.max_body_bytes: must be of type integer (got string)",
        "$.webhooks.port: must be of type integer (got boolean)",
        "$.webhooks.public_url: must match the pattern",
        "$.webhooks.request_timeout: must be > 0",
    ):
        assert f"  - {path}: {expected}" in message, expected
    assert "6 problem(s)" in message


def test_structure_problems(tmp_path: Path) -> None:
    assert "$.connectors: is required" in _error(_write(tmp_path, "a.toml", "[webhooks]\nport = 1\n"))
    assert "$.connectors: must have at least 1 entries" in _error(_write(tmp_path, "b.json", '{"connectors": {}}'))
    assert "connector 'sms', $.connectors.sms.channel: is required" in _error(
        _write(tmp_path, "c.yaml", "connectors:\n  sms:\n    schema: X\n")
    )
    assert "$: must be of type object (got array)" in _error(_write(tmp_path, "d.json", "[]"))


def test_parameter_problems_found_with_the_installed_channels(tmp_path: Path, acme_registry: ChannelRegistry) -> None:
    text = (
        '[connectors.sms]\nchannel = "acme_sms"\n'
        '[connectors.sms.parameters]\nAccountId = "AC0123abcd"\nAuthToken = "acme-secret-token-42"\n'
        'ValidityPeriod = "14400"\nSandbox = 1\n'
        '[connectors.other]\nchannel = "acme_sms"\nschema = "Mini"\n'
        '[connectors.pigeon]\nchannel = "pigeon_post"\n'
    )
    path = _write(tmp_path, "c.toml", text)
    with pytest.raises(ConfigurationError) as raised:
        acme_registry.create_connectors(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: 4 problem(s) in the configuration\n")
    for expected in (
        "connector 'sms', $.connectors.sms.parameters.ValidityPeriod: must be of type integer (got string)",
        "connector 'sms', $.connectors.sms.parameters.Sandbox: must be of type boolean (got integer)",
        "connector 'other', $.connectors.other.schema: channel 'acme_sms' has no schema variant 'Mini'",
        "connector 'pigeon', $.connectors.pigeon.channel: unknown channel 'pigeon_post' (installed: acme_sms, memory)",
    ):
        assert f"  - {path}: {expected}" in message, expected
    assert "acme-secret-token-42" not in message


def test_true_is_not_an_integer_parameter(tmp_path: Path, acme_registry: ChannelRegistry) -> None:
    text = (
        '[connectors.sms]\nchannel = "acme_sms"\n[connectors.sms.parameters]\n'
        'AccountId = "AC0123abcd"\nAuthToken = "acme-secret-token-42"\nValidityPeriod = true\n'
    )
    path = _write(tmp_path, "c.toml", text)
    issues = acme_registry.check_config(load_config(path))
    assert [(i.path, i.message) for i in issues] == [
        ("$.connectors.sms.parameters.ValidityPeriod", "must be of type integer (got boolean)")
    ]


def test_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    assert _error(missing).startswith(f"{missing}: cannot read the file (No such file or directory)")
    assert _error(tmp_path).startswith(f"{tmp_path}: cannot read the file")  # a directory
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    assert _error(binary) == f"{binary}: cannot read the file (not UTF-8 text at byte 0)"


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("bad.toml", '[connectors.sms\nchannel = "memory"\n', "not valid TOML"),
        ("bad.yaml", "connectors:\n  sms: [unclosed\n", "not valid YAML at line 3, column 1"),
        ("bad.json", '{"connectors": {"sms": }}', "not valid JSON at line 1, column 24"),
        ("config.ini", "[connectors]\n", "unsupported file type '.ini'; use .toml, .yaml, .yml or .json"),
    ],
)
def test_malformed_files_name_the_file(tmp_path: Path, name: str, text: str, expected: str) -> None:
    path = _write(tmp_path, name, text)
    message = _error(path)
    assert message.startswith(f"{path}: {expected}")


# -- creating connectors from a file -------------------------------------------------------------------


async def test_create_connectors_from_a_file(tmp_path: Path, acme_registry: ChannelRegistry) -> None:
    text = (
        '[connectors.mem]\nchannel = "memory"\n[connectors.mem.parameters]\nMailbox = "config-test"\nLatency = 0\n'
        '[connectors.off]\nchannel = "memory"\nenabled = false\n'
        '[connectors.sms]\nchannel = "acme_sms"\nschema = "TextOnly"\n'
        '[connectors.sms.parameters]\nAccountId = "AC0123abcd"\nAuthToken = "${ACME_TOKEN}"\n'
    )
    path = _write(tmp_path, "messaging.toml", text)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ACME_TOKEN", "acme-secret-token-42")
        connectors = acme_registry.create_connectors(path)
    assert list(connectors) == ["mem", "sms"]
    assert all(c.state is ConnectorState.UNINITIALIZED for c in connectors.values())
    assert connectors["sms"].schema == acme_registry.schema("acme_sms", "TextOnly")
    assert connectors["mem"].name == "mem"
    async with connectors["mem"] as memory:
        assert memory.parameters["Mailbox"] == "config-test"
        assert memory.parameters["FailAddresses"] == ()


def test_create_connectors_accepts_a_loaded_config(acme_registry: ChannelRegistry) -> None:
    config = MessagingConfig({"m": ConnectorSpec("m", "memory")})
    assert list(acme_registry.create_connectors(config)) == ["m"]
    bad = MessagingConfig({"m": ConnectorSpec("m", "nope")})
    with pytest.raises(ConfigurationError, match=r"^<config>: 1 problem\(s\)"):
        acme_registry.create_connectors(bad)


# -- the examples of docs/configuration.md -------------------------------------------------------------

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def _doc_blocks(language: str) -> list[str]:
    import re

    return re.findall(rf"^```{language}\n(.*?)^```$", DOC.read_text("utf-8"), flags=re.MULTILINE | re.DOTALL)


def test_the_documented_examples_read_the_same(tmp_path: Path) -> None:
    environ = {"TWILIO_ACCOUNT_SID": "AC123", "TWILIO_AUTH_TOKEN": "token-123"}
    (toml,), (yaml,), (js,) = _doc_blocks("toml"), _doc_blocks("yaml"), _doc_blocks("json")
    configs = [
        load_config(_write(tmp_path, name, text), environ=environ)
        for name, text in (("c.toml", toml), ("c.yaml", yaml), ("c.json", js))
    ]
    assert configs[0].connectors == configs[1].connectors == configs[2].connectors
    assert configs[0].webhooks == configs[1].webhooks == configs[2].webhooks
    assert configs[0].connectors["sms"].parameters == {"AccountSid": "AC123", "AuthToken": "token-123"}
    assert configs[0].webhooks.public_url == "https://hooks.example.com"


def test_the_documented_error_is_what_the_loader_says(tmp_path: Path) -> None:
    documented = next(block for block in _doc_blocks("") if "3 problem(s)" in block)
    text = (
        '[connectors.sms]\nchannel = "twilio_sms"\nparamters = {}\n'
        '[webhooks]\nport = "8080"\npublic_url = "hooks.example.com"\n'
    )
    path = _write(tmp_path, "messaging.toml", text)
    assert _error(path).replace(str(path), "messaging.toml") == documented.rstrip("\n")
