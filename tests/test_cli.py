"""The ``messaging`` command line, in-process with click's ``CliRunner``.

Commands that talk to Twilio run against a real ``TwilioEmulator`` served from a thread with its
own event loop (each CLI command runs its own ``asyncio.run``), pointed at by a configuration file
written to ``tmp_path``.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
from click.testing import CliRunner, Result

from messaging_core import ChannelRegistry, ConfigurationError
from messaging_core.cli import cli
from messaging_twilio_sms.connector import TwilioSmsConnector
from messaging_twilio_sms.emulator import ThreadedTwilioEmulator as ThreadedEmulator

SENDER = "+15005550006"
RECEIVER = "+15551230001"
INVALID_TO = "+15005550001"  # Twilio's magic "invalid To" number: 21211
SID = re.compile(r"\b(?:SM|MM)[0-9a-f]{32}\b")


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture
def emu() -> Iterator[ThreadedEmulator]:
    with ThreadedEmulator() as running:
        yield running


def write_config(tmp_path: Path, emu: ThreadedEmulator, *, auth_token: str | None = None, extra: str = "") -> Path:
    e = emu.emulator
    credentials = (
        f'AccountSid = "{e.account_sid}"\nAuthToken = "{auth_token or e.auth_token}"\nApiBaseUrl = "{e.base_url}"\n'
    )
    path = tmp_path / "messaging.toml"
    path.write_text(
        f'[connectors.sms]\nchannel = "twilio_sms"\nschema = "TwilioSms"\n[connectors.sms.parameters]\n{credentials}\n'
        f'[connectors.simple]\nchannel = "twilio_sms"\nschema = "SimpleSms"\n[connectors.simple.parameters]\n'
        f"{credentials}\n"
        f'[connectors.off]\nchannel = "twilio_sms"\nenabled = false\n[connectors.off.parameters]\n{credentials}\n'
        + extra,
        encoding="utf-8",
    )
    return path


@pytest.fixture
def config_file(tmp_path: Path, emu: ThreadedEmulator) -> Path:
    return write_config(tmp_path, emu)


def invoke(*args: str, input: str | None = None) -> Result:
    """Run ``messaging ARGS``; wide output so that tables and lines are not wrapped."""
    return CliRunner().invoke(cli, list(args), input=input, env={"COLUMNS": "200"}, prog_name="messaging")


def assert_clean_failure(result: Result, *fragments: str) -> None:
    """A non-zero exit with an ``error:`` line, the fragments, and no traceback."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "error:" in result.stderr, result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


# -- channels and schemas ------------------------------------------------------------------------------


def test_channels_lists_installed_channels_and_their_variants() -> None:
    result = invoke("channels")
    assert result.exit_code == 0, result.output
    for expected in ("twilio_sms", "memory", "TwilioSms", "SimpleSms", "NotificationSms", "BulkSms"):
        assert expected in result.stdout
    assert "send_messages" in result.stdout


def test_schema_show_prints_parameters_and_properties() -> None:
    result = invoke("schema", "show", "twilio_sms", "SimpleSms")
    assert result.exit_code == 0, result.output
    assert "Twilio Simple SMS" in result.stdout
    assert "AccountSid" in result.stdout
    assert "AuthToken (secret)" in result.stdout
    assert "Message properties" in result.stdout
    # SimpleSms removed these (a message may still name its own StatusCallback: a property).
    assert "WebhookUrl" not in result.stdout
    assert "MessagingServiceSid" not in result.stdout
    assert "RECEIVE_MESSAGES" not in result.stdout


def test_schema_show_json_prints_json_schema_documents() -> None:
    result = invoke("schema", "show", "twilio_sms", "--json")
    assert result.exit_code == 0, result.output
    documents = json.loads(result.stdout)
    assert set(documents) == {"schema", "settings", "properties", "message"}
    for name in ("settings", "properties", "message"):
        jsonschema.Draft202012Validator.check_schema(documents[name])
    settings = documents["settings"]
    assert {"AccountSid"} <= set(settings["required"])
    validator = jsonschema.Draft202012Validator(settings)
    assert not validator.is_valid({"AccountSid": "nope", "AuthToken": "x"})
    assert validator.is_valid({"AccountSid": "AC" + "0" * 32, "AuthToken": "x"})


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("twilio_smz",), "unknown channel 'twilio_smz'"),
        (("twilio_sms", "Nope"), "no schema variant 'Nope'"),
    ],
)
def test_schema_show_of_an_unknown_channel_or_variant_is_one_line(args: tuple[str, ...], fragment: str) -> None:
    result = invoke("schema", "show", *args)
    assert_clean_failure(result, fragment)
    assert len(result.stderr.strip().splitlines()) == 1


def test_schema_export_writes_every_variant_and_the_meta_schemas(tmp_path: Path) -> None:
    target = tmp_path / "exports"
    result = invoke("schema", "export", str(target))
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in target.iterdir())
    registry = ChannelRegistry.discover()
    expected = ["channel-schema.schema.json", "config.schema.json"] + [
        f"{info.name}.{variant}.json" for info in registry.channels() for variant in info.variants
    ]
    assert names == sorted(expected)
    assert f"wrote {len(names)} files" in result.stdout
    simple = json.loads((target / "twilio_sms.SimpleSms.json").read_text("utf-8"))
    assert simple["channel"] == "twilio_sms"
    assert simple["variant"] == "SimpleSms"
    # The same as the library function writes.
    again = registry.export_schemas(tmp_path / "again")
    assert {p.name: p.read_bytes() for p in again} == {p.name: p.read_bytes() for p in target.iterdir()}


def test_schema_export_into_an_impossible_directory_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    result = invoke("schema", "export", str(blocker / "schemas"))
    assert_clean_failure(result, str(blocker))
    assert len(result.stderr.strip().splitlines()) == 1


# -- config validate ---------------------------------------------------------------------------------------

GOOD_TOML = """
[webhooks]
public_url = "https://hooks.example.com"

[connectors.sms]
channel = "twilio_sms"
schema = "TwilioSms"

[connectors.sms.parameters]
AccountSid = "AC0123456789abcdef0123456789abcdef"
AuthToken = "${TEST_TOKEN:-a-token}"
ValidityPeriod = 600
"""


@pytest.mark.parametrize("suffix", [".toml", ".yaml", ".json"])
def test_config_validate_accepts_a_good_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"good{suffix}"
    if suffix == ".toml":
        path.write_text(GOOD_TOML, encoding="utf-8")
    else:
        import tomllib

        import yaml

        data = tomllib.loads(GOOD_TOML)
        path.write_text(json.dumps(data) if suffix == ".json" else yaml.safe_dump(data), encoding="utf-8")
    result = invoke("config", "validate", str(path))
    assert result.exit_code == 0, result.output
    assert f"{path}: OK (1 connector(s))" in result.stdout


def test_config_validate_lists_every_problem_with_file_connector_and_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        """
[connectors.sms]
channel = "twilio_sms"
schema = "TwilioSms"

[connectors.sms.parameters]
AccountSid = "${MESSAGING_TEST_UNSET_SID}"
AuthToken = "token"
ValidityPeriod = "an hour"

[connectors.other]
channel = "twilio_sms"

[connectors.other.parameters]
AccountSid = "AC0123456789abcdef0123456789abcdef"
AuthToken = "token"
MaxConcurrency = 0
""",
        encoding="utf-8",
    )
    result = invoke("config", "validate", str(path))
    assert_clean_failure(result, "3 problem(s)")
    lines = result.stderr.splitlines()
    expected = [
        ("connector 'sms'", "$.connectors.sms.parameters.AccountSid", "MESSAGING_TEST_UNSET_SID"),
        ("connector 'sms'", "$.connectors.sms.parameters.ValidityPeriod", "integer"),
        ("connector 'other'", "$.connectors.other.parameters.MaxConcurrency", ">= 1"),
    ]
    for connector, json_path, detail in expected:
        # One line per problem, naming the file, the connector and the JSON path.
        assert any(
            str(path) in line and connector in line and json_path in line and detail in line for line in lines
        ), (
            json_path,
            result.stderr,
        )


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        pytest.param(
            '[connectors.sms]\nchannel = "no_such_channel"\n',
            ["connector 'sms'", "$.connectors.sms.channel", "unknown channel 'no_such_channel'"],
            id="unknown-channel",
        ),
        pytest.param(
            '[connectors.sms]\nchannel = "twilio_sms"\nschema = "Nope"\n',
            ["$.connectors.sms.schema", "no schema variant 'Nope'"],
            id="unknown-variant",
        ),
        pytest.param(
            '[connectors.sms]\nchannel = "twilio_sms"\ncolour = "blue"\n', ["$.connectors.sms"], id="unknown-key"
        ),
        pytest.param("[webhooks]\nport = 8080\n", ["connectors"], id="no-connectors"),
    ],
)
def test_config_validate_reports_structural_problems(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    result = invoke("config", "validate", str(path))
    assert_clean_failure(result, str(path), *fragments)


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("broken.toml", "x = [", "not valid TOML"),
        ("broken.yaml", "a: [1, 2\n", "not valid YAML"),
        ("config.ini", "[a]\n", "unsupported file type"),
        ("missing.toml", None, "cannot read the file"),
    ],
)
def test_config_validate_of_an_unreadable_file_is_one_line(
    tmp_path: Path, name: str, text: str | None, fragment: str
) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text, encoding="utf-8")
    result = invoke("config", "validate", str(path))
    assert_clean_failure(result, fragment, name)
    assert len(result.stderr.strip().splitlines()) == 1


def test_debug_shows_the_exception() -> None:
    result = CliRunner().invoke(cli, ["--debug", "schema", "show", "twilio_smz"])
    assert isinstance(result.exception, ConfigurationError)


# -- send ------------------------------------------------------------------------------------------------


def dry_run_preview(stdout: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(stdout[: stdout.rindex("}") + 1])
    return document


def test_send_dry_run_prints_the_request_encoding_and_segments_and_sends_nothing(
    config_file: Path, emu: ThreadedEmulator
) -> None:
    text = "x" * 161  # GSM-7: two segments
    result = invoke(
        "send", "--config", str(config_file), "--connector", "sms", "--from", SENDER, "--to", RECEIVER,
        "--text", text, "--property", "ValidityPeriod=600", "--dry-run",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    preview = dry_run_preview(result.stdout)
    assert preview["encoding"] == "GSM-7"
    assert preview["segments"] == 2
    assert preview["method"] == "POST"
    assert preview["url"].startswith(emu.emulator.base_url)
    assert ["To", RECEIVER] in preview["form"]
    assert ["ValidityPeriod", "600"] in preview["form"]
    assert "dry run: nothing sent" in result.stdout
    # No secret in the preview, and nothing reached the provider.
    assert emu.emulator.auth_token not in result.output
    assert emu.create_requests() == 0
    assert emu.messages() == []


def test_send_dry_run_of_unicode_text_says_ucs2(config_file: Path, emu: ThreadedEmulator) -> None:
    result = invoke(
        "send", "--config", str(config_file), "--connector", "sms", "--from", SENDER, "--to", RECEIVER,
        "--text", "Grüße ☃", "--dry-run",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    preview = dry_run_preview(result.stdout)
    assert (preview["encoding"], preview["segments"]) == ("UCS-2", 1)
    assert emu.create_requests() == 0


def test_send_dry_run_of_an_invalid_message_lists_the_problems(config_file: Path, emu: ThreadedEmulator) -> None:
    result = invoke(
        "send", "--config", str(config_file), "--connector", "sms", "--from", SENDER, "--to", RECEIVER,
        "--text", "hi", "--property", "ValidityPeriod=0", "--dry-run",
    )  # fmt: skip
    assert_clean_failure(result, "MESSAGE_VALIDATION_FAILED", "$.properties.ValidityPeriod")
    assert emu.create_requests() == 0


def test_send_dry_run_resolves_settings_without_initializing(
    tmp_path: Path, emu: ThreadedEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The preview shows the resolved account, and no session is opened (initialize() would fail here)."""
    e = emu.emulator
    monkeypatch.setenv("DRY_RUN_ACCOUNT_SID", e.account_sid)
    path = tmp_path / "messaging.toml"
    path.write_text(
        '[connectors.sms]\nchannel = "twilio_sms"\n[connectors.sms.parameters]\n'
        f'AccountSid = "${{DRY_RUN_ACCOUNT_SID}}"\nAuthToken = "{e.auth_token}"\nApiBaseUrl = "{e.base_url}"\n',
        encoding="utf-8",
    )

    async def no_initialize(self: object) -> object:
        raise AssertionError("a dry run must not initialize the connector")

    monkeypatch.setattr(TwilioSmsConnector, "_initialize", no_initialize)
    result = invoke(
        "send", "--config", str(path), "--connector", "sms", "--from", SENDER, "--to", RECEIVER,
        "--text", "hi", "--dry-run",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert dry_run_preview(result.stdout)["url"] == f"{e.base_url}/2010-04-01/Accounts/{e.account_sid}/Messages.json"
    assert emu.create_requests() == 0


def test_send_dry_run_with_an_unset_credential_says_so(
    tmp_path: Path, emu: ThreadedEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DRY_RUN_UNSET_TOKEN", raising=False)
    path = tmp_path / "messaging.toml"
    path.write_text(
        '[connectors.sms]\nchannel = "twilio_sms"\n[connectors.sms.parameters]\n'
        f'AccountSid = "{emu.emulator.account_sid}"\nAuthToken = "${{DRY_RUN_UNSET_TOKEN}}"\n',
        encoding="utf-8",
    )
    result = invoke(
        "send", "--config", str(path), "--connector", "sms", "--from", SENDER, "--to", RECEIVER,
        "--text", "hi", "--dry-run",
    )  # fmt: skip
    assert_clean_failure(result, "DRY_RUN_UNSET_TOKEN")
    assert result.exit_code == 2
    assert emu.create_requests() == 0


def test_send_delivers_through_the_provider(config_file: Path, emu: ThreadedEmulator) -> None:
    result = invoke(
        "send", "--config", str(config_file), "--connector", "sms", "--from", SENDER, "--to", RECEIVER,
        "--text", "Hello CLI", "--property", "ValidityPeriod=600",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    match = SID.search(result.stdout)
    assert match is not None, result.stdout
    [message] = emu.messages()
    assert message.sid == match.group(0)
    assert (message.to, message.from_, message.body) == (RECEIVER, SENDER, "Hello CLI")
    assert message.params["ValidityPeriod"] == "600"


def test_send_mms_with_media(config_file: Path, emu: ThreadedEmulator) -> None:
    result = invoke(
        "send", "--config", str(config_file), "--connector", "sms", "--from", SENDER, "--to", RECEIVER,
        "--media", "https://example.com/a.png", "--media", "https://example.com/b.jpg",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [message] = emu.messages()
    assert [m.url for m in message.media] == ["https://example.com/a.png", "https://example.com/b.jpg"]


def test_send_to_an_invalid_number_fails_with_the_error_code(config_file: Path, emu: ThreadedEmulator) -> None:
    result = invoke(
        "send", "--config", str(config_file), "--connector", "sms", "--from", SENDER, "--to", INVALID_TO, "--text", "x"
    )
    assert_clean_failure(result, "INVALID_RECIPIENT")
    assert result.exit_code == 1
    assert emu.create_requests() == 1


def test_send_with_a_wrong_token_fails_with_the_error_code(tmp_path: Path, emu: ThreadedEmulator) -> None:
    path = write_config(tmp_path, emu, auth_token="0" * 32)
    result = invoke(
        "send", "--config", str(path), "--connector", "sms", "--from", SENDER, "--to", RECEIVER, "--text", "x"
    )
    assert_clean_failure(result, "AUTHENTICATION_FAILED")
    assert "0" * 32 not in result.output
    assert emu.messages() == []


def test_send_of_an_invalid_message_lists_every_problem(config_file: Path, emu: ThreadedEmulator) -> None:
    result = invoke(
        "send", "--config", str(config_file), "--connector", "simple", "--from", SENDER, "--to", "12345",
        "--text", "hi", "--property", "ValidityPeriod=0",
    )  # fmt: skip
    assert_clean_failure(result, "$.receiver", "$.properties.ValidityPeriod")
    assert emu.create_requests() == 0


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ("--connector", "nope", "--to", RECEIVER, "--text", "x"),
            "no connector 'nope' (connectors: sms, simple, off)",
        ),
        (("--connector", "off", "--to", RECEIVER, "--text", "x"), "connector 'off' is disabled"),
        (("--connector", "sms", "--to", RECEIVER), "give --text and/or --media"),
        (("--connector", "sms", "--to", RECEIVER, "--text", "x", "--property", "oops"), "expected NAME=VALUE"),
        # User input that looks like rich markup is printed as it is, never interpreted.
        (("--connector", "sms", "--to", RECEIVER, "--text", "x", "--property", "[/bold]"), "'[/bold]'"),
    ],
)
def test_send_usage_problems_are_one_line(
    config_file: Path, emu: ThreadedEmulator, args: tuple[str, ...], fragment: str
) -> None:
    result = invoke("send", "--config", str(config_file), *args)
    assert_clean_failure(result, fragment)
    assert len(result.stderr.strip().splitlines()) == 1
    assert emu.create_requests() == 0


def test_send_with_a_broken_config_names_file_connector_and_path(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(
        '[connectors.sms]\nchannel = "twilio_sms"\n[connectors.sms.parameters]\nAccountSid = "nope"\nAuthToken = "t"\n',
        encoding="utf-8",
    )
    result = invoke("send", "--config", str(path), "--connector", "sms", "--to", RECEIVER, "--text", "x")
    assert_clean_failure(result, str(path), "connector 'sms'", "$.connectors.sms.parameters.AccountSid")


# -- send-batch ----------------------------------------------------------------------------------------------


def test_send_batch_shows_progress_summary_and_failures(
    config_file: Path, emu: ThreadedEmulator, tmp_path: Path
) -> None:
    numbers = tmp_path / "numbers.txt"
    good = [f"+1555123{index:04d}" for index in range(6)]
    numbers.write_text("# campaign\n" + "\n".join([*good[:3], INVALID_TO, "", *good[3:], "not-a-number"]) + "\n")
    result = invoke(
        "send-batch", "--config", str(config_file), "--connector", "sms", "--to-file", str(numbers),
        "--from", SENDER, "--text", "Sale today",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "8/8" in result.stdout  # the progress bar's final state
    assert "Batch summary" in result.stdout
    assert re.search(r"sent\s*│\s*6", result.stdout), result.stdout
    assert re.search(r"INVALID_RECIPIENT\s*│\s*2", result.stdout), result.stdout
    assert f"failed {INVALID_TO}: INVALID_RECIPIENT" in result.stdout
    assert "failed not-a-number: INVALID_RECIPIENT" in result.stdout
    assert sorted(m.to for m in emu.messages()) == good


def test_send_batch_of_good_numbers_exits_zero(config_file: Path, emu: ThreadedEmulator) -> None:
    result = invoke(
        "send-batch", "--config", str(config_file), "--connector", "sms", "--to-file", "-",
        "--from", SENDER, "--text", "hi", "--concurrency", "2",
        input="+15551230001\n+15551230002\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "failed +" not in result.stdout
    assert len(emu.messages()) == 2


@pytest.mark.parametrize(
    ("connector", "numbers", "fragment"),
    [
        ("simple", RECEIVER, "does not support bulk messaging"),
        ("sms", "# nobody\n\n", "--to-file has no receivers"),
    ],
)
def test_send_batch_refusals_are_one_line(
    config_file: Path, emu: ThreadedEmulator, tmp_path: Path, connector: str, numbers: str, fragment: str
) -> None:
    path = tmp_path / "numbers.txt"
    path.write_text(numbers, encoding="utf-8")
    result = invoke(
        "send-batch", "--config", str(config_file), "--connector", connector, "--to-file", str(path), "--text", "x"
    )
    assert_clean_failure(result, fragment)
    assert emu.create_requests() == 0


# -- status ------------------------------------------------------------------------------------------------------


def test_status_of_a_sent_message(config_file: Path, emu: ThreadedEmulator) -> None:
    sent = invoke(
        "send", "--config", str(config_file), "--connector", "sms", "--from", SENDER, "--to", RECEIVER, "--text", "x"
    )
    assert sent.exit_code == 0, sent.output
    match = SID.search(sent.stdout)
    assert match is not None
    sid = match.group(0)
    emu.wait_for_status(sid, "delivered")
    result = invoke("status", "--config", str(config_file), "--connector", "sms", sid)
    assert result.exit_code == 0, result.output
    assert f"{sid}: delivered (raw delivered)" in result.stdout
    assert "num_segments: 1" in result.stdout


@pytest.mark.parametrize("message_id", ["SM" + "0" * 32, "not-a-sid"])
def test_status_of_an_unknown_message_fails_with_the_error_code(config_file: Path, message_id: str) -> None:
    result = invoke("status", "--config", str(config_file), "--connector", "sms", message_id)
    assert_clean_failure(result, "STATUS_QUERY_FAILED")
    assert result.exit_code == 1


# -- serve and emulator (what can be checked without a long-running server) --------------------------------------


def test_serve_on_a_port_in_use_is_one_line(config_file: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = invoke("serve", "--config", str(config_file), "--port", str(port))
    assert_clean_failure(result, f"cannot listen on 127.0.0.1:{port}")
    assert result.exit_code == 2


def test_serve_with_a_connector_that_cannot_initialize_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[connectors.sms]\nchannel = "twilio_sms"\n[connectors.sms.parameters]\n'
        'AccountSid = "AC0123456789abcdef0123456789abcdef"\nAuthToken = "t"\nApiKeySid = "SK' + "0" * 32 + '"\n',
        encoding="utf-8",
    )
    result = invoke("serve", "--config", str(path), "--port", "0")
    assert_clean_failure(result, "connector 'sms'", "MISSING_CREDENTIALS")


def test_emulator_on_a_port_in_use_is_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = invoke("emulator", "twilio_sms", "--port", str(port))
    assert_clean_failure(result, "address already in use")
    assert len(result.stderr.strip().splitlines()) == 1


def test_emulator_of_an_unknown_channel_is_one_line() -> None:
    result = invoke("emulator", "nope")
    assert_clean_failure(result, "no emulator for channel 'nope' (emulators: twilio_sms)")


# -- help -----------------------------------------------------------------------------------------------------------


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in sorted(group.commands.items()):
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from _command_paths(command, (*prefix, name))


ALL_COMMANDS = [(), *_command_paths(cli)]


def test_every_documented_command_is_there() -> None:
    names = {" ".join(path) for path in ALL_COMMANDS}
    expected = {"channels", "schema show", "schema export", "config validate", "send", "send-batch"}
    expected |= {"status", "serve", "emulator", "demo"}
    assert expected <= names


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda path: " ".join(path) or "messaging")
def test_every_command_has_help_with_an_example(path: tuple[str, ...]) -> None:
    result = invoke(*path, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.stdout
    assert "messaging " + " ".join(path) in result.stdout


def test_a_command_on_one_connector_does_not_need_the_others_variables(tmp_path: Path) -> None:
    config = tmp_path / "two.toml"
    config.write_text(
        """
[connectors.mem]
channel = "memory"

[connectors.other]
channel = "memory"
[connectors.other.parameters]
Mailbox = "${SURELY_UNSET_VARIABLE_123}"
""",
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        cli, ["send", "--config", str(config), "--connector", "mem", "--to", "+15551230001", "--text", "hi"]
    )
    assert result.exit_code == 0, result.output
    failing = CliRunner().invoke(
        cli, ["send", "--config", str(config), "--connector", "other", "--to", "+15551230001", "--text", "hi"]
    )
    assert failing.exit_code != 0
    assert "SURELY_UNSET_VARIABLE_123" in failing.output


def test_send_takes_any_endpoint_type(tmp_path: Path) -> None:
    """``--to user_id:alice`` on a channel that is not SMS (the memory channel takes every type)."""
    config = tmp_path / "memory.toml"
    config.write_text('[connectors.inbox]\nchannel = "memory"\n', encoding="utf-8")
    for to in ("user_id:alice", "email:a@b.example", "+15550001234"):
        result = invoke("send", "--config", str(config), "--connector", "inbox", "--to", to, "--text", "hi")
        assert result.exit_code == 0, result.output
        assert "sent" in result.stdout


def test_plain_addresses_are_typed_from_their_form_or_the_schema() -> None:
    from messaging_core import ChannelRegistry, EndpointType
    from messaging_core.cli.send import endpoint_of
    from messaging_twilio_sms import TwilioChannelSchemas

    memory = ChannelRegistry().schema("memory")
    assert endpoint_of("user_id:alice", memory, "--to").type is EndpointType.USER_ID
    assert endpoint_of("+15550001234", memory, "--to").type is EndpointType.PHONE
    assert endpoint_of("a@b.example", memory, "--to").type is EndpointType.EMAIL
    assert endpoint_of("https://x.example/y", memory, "--to").type is EndpointType.URL
    assert endpoint_of("alice", memory, "--to").type is EndpointType.ANY  # several types: any
    simple = TwilioChannelSchemas.SIMPLE_SMS  # phone only: a plain address is a phone number
    assert endpoint_of("15550001234", simple, "--to").type is EndpointType.PHONE
    # A sender may also be a short code or an alphanumeric sender ID: the one whose rules fit.
    assert endpoint_of("12345", simple, "--from").type is EndpointType.SHORT_CODE
    assert endpoint_of("AcmeAlerts", simple, "--from").type is EndpointType.LABEL
    assert endpoint_of("Acme Alerts!", simple, "--from").type is EndpointType.ANY  # fits none: validation says why
    assert endpoint_of("12345", simple, "--to").type is EndpointType.PHONE  # nobody sends to a short code


def test_schema_show_prints_limits_and_endpoints() -> None:
    result = invoke("schema", "show", "twilio_sms")
    assert result.exit_code == 0, result.output
    assert "limits: text <= 1600 characters, media <= 10" in result.stdout
    assert "SCHEDULED_SENDING" in result.stdout
    assert "short_code" in result.stdout
    assert "must contain at least one letter" in result.stdout


def test_schema_show_markdown_is_the_documented_tables() -> None:
    from messaging_core.cli.channels import schema_markdown
    from messaging_twilio_sms import TwilioChannelSchemas

    result = invoke("schema", "show", "twilio_sms", "SimpleSms", "--markdown")
    assert result.exit_code == 0, result.output
    assert result.stdout == schema_markdown(TwilioChannelSchemas.SIMPLE_SMS)
    assert "| `AccountSid` | `string` | yes |" in result.stdout
    assert "| `MessagingServiceSid` |" not in result.stdout  # SimpleSms removed it
    assert "`string \\| string[]`" in result.stdout  # a pipe inside a cell is escaped


def test_config_validate_says_which_variable_filled_which_parameter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "token-from-the-shell")
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "1" * 32)
    config = tmp_path / "messaging.toml"
    config.write_text(
        '[connectors.sms]\nchannel = "twilio_sms"\n[connectors.sms.parameters]\nAccountSid = "AC' + "2" * 32 + '"\n'
        '[connectors.isolated]\nchannel = "twilio_sms"\nenvironment_defaults = false\n'
        '[connectors.isolated.parameters]\nAccountSid = "AC' + "3" * 32 + '"\nAuthToken = "given"\n'
    )
    result = invoke("config", "validate", str(config))
    assert result.exit_code == 0, result.output
    assert "connector 'sms': AuthToken from environment variable TWILIO_AUTH_TOKEN" in result.stdout
    assert "connector 'sms': AccountSid" not in result.stdout  # the file gives it
    assert "'isolated'" not in result.stdout  # opted out: nothing taken from the environment
    assert "token-from-the-shell" not in result.output


def test_a_connector_may_opt_out_of_environment_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from messaging_core import ChannelRegistry

    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "token-from-the-shell")
    registry = ChannelRegistry.discover()
    given = {"channel": "twilio_sms", "parameters": {"AccountSid": "AC" + "4" * 32}}
    assert registry.create_connector(given).resolve_settings().is_success  # the token came from the shell
    isolated = registry.create_connector({**given, "environment_defaults": False})
    result = isolated.resolve_settings()
    assert result.is_success, result.error  # settings alone are fine: initialize() needs the token
    assert "AuthToken" not in isolated.parameters


def test_schema_export_of_one_channel(tmp_path: Path) -> None:
    result = invoke("schema", "export", "--channel", "twilio", str(tmp_path / "out"))  # an alias will do
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "twilio_sms.BulkSms.json",
        "twilio_sms.NotificationSms.json",
        "twilio_sms.SimpleSms.json",
        "twilio_sms.TwilioSms.json",
    ]
    unknown = invoke("schema", "export", "--channel", "nope", str(tmp_path / "none"))
    assert_clean_failure(unknown, "unknown channel 'nope'")
    assert not (tmp_path / "none").exists()
