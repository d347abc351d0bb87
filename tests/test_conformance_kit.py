"""The conformance suite catches broken connectors (run once, in a nested pytest session).

Each class below breaks one promise; the suite must fail exactly there, pass a correct
connector, and skip only for an absent capability. The inner
session uses pytest-asyncio's default *strict* mode: the suite must work there too.
"""

from __future__ import annotations

import os

import pytest

SUITE = """
import uuid

import pytest
import pytest_asyncio

from messaging_core import (
    Capability,
    ChannelConnector,
    ChannelRegistry,
    ConnectionSettings,
    Endpoint,
    Message,
    MessageStatus,
    StatusUpdate,
    TextContent,
    WebhookRequest,
    converters,
)
from messaging_core.testing import ConnectorConformance

MemoryConnector = ChannelRegistry().channel("memory").connector_class


class Leaky(MemoryConnector):
    def __repr__(self):
        return f"<Leaky {dict(self.settings)}>"


class Eager(MemoryConnector):
    async def send_message(self, message):  # I/O before validation
        return await self._send_message(message)


class Ungated(MemoryConnector):
    async def get_message_status(self, message_id):  # no capability or state check
        return await self._get_message_status(message_id)


class FragileShutdown(MemoryConnector):
    async def _initialize(self):
        self.session = object()
        return await super()._initialize()

    async def _shutdown(self):
        del self.session  # AttributeError when initialize never ran
        await super()._shutdown()


class Deaf(MemoryConnector):  # declares RECEIVE_MESSAGES, keeps the base stub
    _receive_messages = ChannelConnector._receive_messages


NO_BULK = MemoryConnector.master_schema.derive("No bulk", remove_capabilities=Capability.BULK_MESSAGING)


class NoBulk(MemoryConnector):
    master_schema = NO_BULK
    schema_variants = {"NoBulk": NO_BULK}


class Base(ConnectorConformance):
    connector_class = MemoryConnector
    mark_sensitive = True

    @pytest_asyncio.fixture
    async def connector_factory(self):
        mailbox = f"mailbox-{uuid.uuid4().hex}"
        if self.mark_sensitive:
            self.sensitive_values = (mailbox,)
        cls = self.connector_class

        async def factory(variant=None, /, **overrides):
            schema = cls.master_schema if variant is None else cls.schema_variants[variant]
            settings = ConnectionSettings(overrides).add_parameter("Mailbox", mailbox, sensitive=self.mark_sensitive)
            return cls(schema, settings, plugins=ChannelRegistry().host)

        return factory

    def valid_message(self):
        return Message(uuid.uuid4().hex, None, Endpoint.phone("+15550001111"), TextContent("hi"))

    def invalid_message(self):
        return Message(uuid.uuid4().hex, None, None, TextContent(""))

    webhooks_signed = False  # the memory channel's webhooks are unsigned JSON

    def inbound_webhook(self, connector):
        return WebhookRequest.from_json(converters.dumps(self.valid_message()))

    def forged_webhook(self, connector):
        return WebhookRequest.from_json([{"not": "a message"}])

    async def status_webhook(self, connector, sent):  # async: the kit awaits it
        update = StatusUpdate(sent.message_id, MessageStatus.DELIVERED)
        return WebhookRequest.from_json(converters.dumps(update))


class TestCorrect(Base):
    pass


class TestLeaky(Base):
    connector_class = Leaky


class TestEager(Base):
    connector_class = Eager


class TestUngated(Base):
    connector_class = Ungated


class TestFragileShutdown(Base):
    connector_class = FragileShutdown


class TestDeaf(Base):
    connector_class = Deaf


class TestNoBulk(Base):
    connector_class = NoBulk


class TestNothingToRedact(Base):
    mark_sensitive = False


class TestClaimsSigned(Base):
    webhooks_signed = True  # yet its "forged" webhook is refused as malformed, not as forged


class TestNoReceivingFixtures(Base):
    inbound_webhook = ConnectorConformance.inbound_webhook
    forged_webhook = ConnectorConformance.forged_webhook
    status_webhook = ConnectorConformance.status_webhook
"""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    """Run the suite once for the module: ``{"Class::test": (outcome, skip reason or "")}``."""
    directory = tmp_path_factory.mktemp("suite")
    (directory / "test_suite.py").write_text(SUITE)
    results: dict[str, tuple[str, str]] = {}

    class Collect:
        def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
            name = report.nodeid.split("::", 1)[1]
            if report.when == "call" or (report.when == "setup" and not report.passed):
                reason = str(report.longrepr[2]) if report.skipped and isinstance(report.longrepr, tuple) else ""
                results[name] = (report.outcome, reason)

    previous = os.getcwd()
    os.chdir(directory)
    try:
        pytest.main(
            [
                str(directory),
                "-p",
                "no:cacheprovider",
                "-q",
                "-o",
                "asyncio_mode=strict",
                "-o",
                "asyncio_default_fixture_loop_scope=function",
                "--rootdir",
                str(directory),
            ],
            plugins=[Collect()],
        )
    finally:
        os.chdir(previous)
    return results


def _failed(outcomes: dict[str, tuple[str, str]], cls: str) -> set[str]:
    return {
        name.split("::")[1]
        for name, (outcome, _) in outcomes.items()
        if name.startswith(f"{cls}::") and outcome == "failed"
    }


def test_the_suite_has_every_promise(outcomes: dict[str, tuple[str, str]]) -> None:
    tests = {name.split("::")[1] for name in outcomes if name.startswith("TestCorrect::")}
    assert len(tests) == 22
    assert {
        "test_lifecycle_reaches_ready_and_shutdown",
        "test_variants_gate_excluded_capabilities",
        "test_invalid_message_fails_before_any_io",
        "test_batch_gives_one_result_per_message_in_order",
        "test_cancelled_batch_accounts_for_every_message",
        "test_secrets_never_show",
        "test_declared_capabilities_are_implemented",
        "test_a_genuine_inbound_webhook_becomes_messages",
        "test_a_forged_inbound_webhook_is_refused",
        "test_a_status_callback_becomes_an_update",
    } <= tests


def test_a_correct_connector_passes(outcomes: dict[str, tuple[str, str]]) -> None:
    correct = {name: outcome for name, (outcome, _) in outcomes.items() if name.startswith("TestCorrect::")}
    assert set(correct.values()) == {"passed"}, correct


def test_a_leaky_repr_is_caught(outcomes: dict[str, tuple[str, str]]) -> None:
    assert _failed(outcomes, "TestLeaky") == {"test_secrets_never_show"}


def test_io_before_validation_is_caught(outcomes: dict[str, tuple[str, str]]) -> None:
    failed = _failed(outcomes, "TestEager")
    assert {
        "test_invalid_message_fails_before_any_io",
        "test_operations_before_initialize_raise",
        "test_wrong_argument_types_raise",
    } <= failed


def test_missing_guards_are_caught(outcomes: dict[str, tuple[str, str]]) -> None:
    failed = _failed(outcomes, "TestUngated")
    assert {
        "test_operations_before_initialize_raise",
        "test_shutdown_is_idempotent_and_final",
        "test_derived_schemas_gate_each_removed_capability",
    } <= failed


def test_a_shutdown_that_needs_initialize_is_caught(outcomes: dict[str, tuple[str, str]]) -> None:
    assert _failed(outcomes, "TestFragileShutdown") == {
        "test_shutdown_without_initialize",
        "test_failed_initialize_enters_error_and_recovers",
    }


def test_skips_only_for_an_absent_capability(outcomes: dict[str, tuple[str, str]]) -> None:
    skipped = {name: reason for name, (outcome, reason) in outcomes.items() if outcome == "skipped"}
    reason = "Skipped: the schema 'No bulk' lacks BULK_MESSAGING"
    assert skipped == {
        "TestNoBulk::test_batch_gives_one_result_per_message_in_order": reason,
        "TestNoBulk::test_cancelled_batch_accounts_for_every_message": reason,
        "TestNoBulk::test_stream_yields_every_message_once": reason,
    }
    assert not _failed(outcomes, "TestNoBulk")


def test_a_connector_declaring_no_secret_is_told_to(outcomes: dict[str, tuple[str, str]]) -> None:
    assert _failed(outcomes, "TestNothingToRedact") == {"test_secrets_never_show"}


def test_a_declared_but_unimplemented_capability_is_caught(outcomes: dict[str, tuple[str, str]]) -> None:
    # Caught twice: by the seam check, and by the genuine inbound webhook it cannot read.
    assert _failed(outcomes, "TestDeaf") == {
        "test_declared_capabilities_are_implemented",
        "test_a_genuine_inbound_webhook_becomes_messages",
    }


def test_a_signed_channel_must_refuse_a_forgery_as_forged(outcomes: dict[str, tuple[str, str]]) -> None:
    assert _failed(outcomes, "TestClaimsSigned") == {"test_a_forged_inbound_webhook_is_refused"}


def test_a_receiving_connector_must_give_its_webhooks(outcomes: dict[str, tuple[str, str]]) -> None:
    assert _failed(outcomes, "TestNoReceivingFixtures") == {
        "test_a_genuine_inbound_webhook_becomes_messages",
        "test_a_forged_inbound_webhook_is_refused",
        "test_a_status_callback_becomes_an_update",
    }
