"""The public API: ``messaging_core.__all__`` and the exception tree drawn in ``errors``' docstring."""

from __future__ import annotations

import ast
import builtins
import importlib
import re
import types
from pathlib import Path

import pytest

import messaging_core
from messaging_core import (
    CapabilityNotSupportedError,
    ConfigurationError,
    ConnectorErrorCodes,
    ConnectorOperationError,
    ConnectorResult,
    ConnectorStateError,
    Failure,
    MessagingError,
    PluginError,
    SchemaError,
    ValidationFailedError,
    ValidationIssue,
)


def test_all_is_sorted_and_unique() -> None:
    assert messaging_core.__all__ == sorted(messaging_core.__all__)
    assert len(set(messaging_core.__all__)) == len(messaging_core.__all__)


def test_every_public_name_resolves() -> None:
    missing = [name for name in messaging_core.__all__ if not hasattr(messaging_core, name)]
    assert missing == []


def test_public_classes_live_in_public_modules_and_are_documented() -> None:
    for name in messaging_core.__all__:
        obj = getattr(messaging_core, name)
        if isinstance(obj, type):
            assert obj.__module__.startswith("messaging_core."), name
            assert not obj.__module__.rsplit(".", 1)[-1].startswith("_"), name
            assert (obj.__doc__ or "").strip(), f"{name} has no docstring"


def test_version_is_a_string() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", messaging_core.__version__)


# -- every package's API, pinned (httpx style) -----------------------------------------------------------

PINNED = {
    "messaging_core": [
        "AuthenticationError",
        "BatchProgress",
        "BatchSendResult",
        "BinaryContent",
        "Capability",
        "CapabilityNotSupportedError",
        "ChannelConnector",
        "ChannelInfo",
        "ChannelRegistry",
        "ChannelSchema",
        "ConfigurationError",
        "ConnectionSettings",
        "ConnectorErrorCodes",
        "ConnectorHealth",
        "ConnectorOperationError",
        "ConnectorResult",
        "ConnectorSpec",
        "ConnectorState",
        "ConnectorStateError",
        "Content",
        "ContentType",
        "DataType",
        "EmulatorRegistration",
        "Endpoint",
        "EndpointSpec",
        "EndpointType",
        "Failure",
        "FailureOutcome",
        "HtmlContent",
        "IssueCodes",
        "JsonContent",
        "MediaContent",
        "Message",
        "MessageBatch",
        "MessageBuilder",
        "MessageStatus",
        "MessagingConfig",
        "MessagingError",
        "MetricsSettings",
        "MultipartContent",
        "ParameterSpec",
        "PluginError",
        "PluginHost",
        "PluginLoadFailure",
        "PropertySpec",
        "ProviderError",
        "RateLimitedError",
        "ReceiveResult",
        "RunningEmulator",
        "SchemaError",
        "SendResult",
        "StatusUpdate",
        "StatusUpdatesResult",
        "TemplateContent",
        "TextContent",
        "ValidationFailedError",
        "ValidationIssue",
        "WebhookRefusedError",
        "WebhookRequest",
        "WebhookSettings",
        "__version__",
        "enable_metrics",
        "hookimpl",
        "hookspec",
        "iterate_messages",
        "load_config",
        "metrics_registry",
        "new_message_id",
    ],
    "messaging_core.campaigns": [
        "CampaignHandle",
        "CampaignProgress",
        "Claim",
        "Dispatcher",
        "DispatcherRegistration",
        "DispatcherSettings",
        "InDoubtPolicy",
        "InProcessCampaign",
        "InProcessDispatcher",
        "LEASE_EXPIRED",
        "LedgerEntry",
        "LedgerProviderIds",
        "MemoryLedger",
        "MemoryRateLimiter",
        "MemoryStatusStore",
        "PROVIDER_ID_COLLISION",
        "RateLimiter",
        "SendAttempt",
        "SendLedger",
        "SendOutcome",
        "SendPipeline",
        "SendState",
        "StatusStore",
        "StoreRegistration",
        "Submission",
        "add_messages",
        "attach_provider_ids",
        "not_attempted",
    ],
    "messaging_core.webhooks": [
        "FORM_CONTENT_TYPE",
        "JSON_CONTENT_TYPE",
        "StatusReceiver",
        "ThreadedWebhookService",
        "WebhookAnswer",
        "WebhookHost",
        "WebhookKind",
        "WebhookRequest",
        "WebhookService",
        "WebhookStats",
        "create_webhook_app",
        "public_url",
        "public_url_of",
    ],
    "messaging_core.testing": [
        "ConnectorConformance",
        "ConnectorFactory",
        "HookCall",
        "HookRecorder",
        "LedgerConformance",
        "LedgerFactory",
        "RateLimiterConformance",
        "RateLimiterFactory",
        "StatusStoreConformance",
        "StatusStoreFactory",
        "StoreConformance",
        "VALIDATION_ERROR_CODES",
        "find_secrets",
    ],
    "messaging_core.cli": ["cli", "main"],
    "messaging_core.telemetry": [
        "METRICS_EXTRA",
        "MetricsServer",
        "campaign_chunk",
        "campaign_pass",
        "enable_metrics",
        "metrics_enabled",
        "metrics_registry",
        "metrics_view",
        "paced",
        "provider_call",
        "render_metrics",
        "send_attempted",
        "serve_metrics",
        "webhook_handled",
        "webhook_refused",
    ],
}
"""What each package exports: a change to a public API shows up here as a diff, on purpose."""


@pytest.mark.parametrize("package", sorted(PINNED))
def test_each_package_exports_exactly_its_pinned_api(package: str) -> None:
    module = importlib.import_module(package)
    assert sorted(module.__all__) == PINNED[package]
    assert len(set(module.__all__)) == len(module.__all__)
    for name in module.__all__:
        getattr(module, name)  # resolves (lazily loaded names included)
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"
    }
    assert public <= set(module.__all__), f"public names missing from {package}.__all__: {public - set(module.__all__)}"


def _private_core_imports(path: Path) -> list[str]:
    """The private names of ``messaging_core`` that a source file imports (modules or names with ``_``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "messaging_core":
            parts = node.module.split(".")
            if any(part.startswith("_") for part in parts):
                found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names if alias.name.startswith("_")]
        elif isinstance(node, ast.Import):
            found += [
                alias.name
                for alias in node.names
                if alias.name.split(".")[0] == "messaging_core"
                and any(p.startswith("_") for p in alias.name.split("."))
            ]
    return found


def test_no_plugin_of_this_repository_imports_a_private_name_of_the_core() -> None:
    sources = sorted((Path(__file__).resolve().parents[1] / "plugins").glob("*/src/**/*.py"))
    assert len(sources) > 20  # both plugins' sources are seen
    offenders = {str(path): names for path in sources if (names := _private_core_imports(path))}
    assert offenders == {}


def test_the_private_import_check_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from messaging_core._batching import drive\nfrom messaging_core.connector import _TRANSITIONS\n")
    assert _private_core_imports(bad) == ["messaging_core._batching", "messaging_core.connector._TRANSITIONS"]


# -- the exception tree ---------------------------------------------------------------------------------

_TREE_LINE = re.compile(r"^(?P<indent>[\s│]*)(?:[├└]── )?(?P<name>[A-Z]\w+Error)(?: \((?P<base>\w+)\))?")


def _documented_tree() -> list[tuple[str, str | None, str | None]]:
    """``(exception, documented parent exception, documented builtin)`` read from the docstring."""
    from messaging_core import errors

    doc = errors.__doc__ or ""
    lines = doc.split("::", 1)[1].splitlines()
    found: list[tuple[str, str | None, str | None]] = []
    stack: list[tuple[int, str]] = []
    for line in lines:
        match = _TREE_LINE.match(line)
        if not match:
            continue
        depth = match.start("name")
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parent = stack[-1][1] if stack else None
        found.append((match["name"], parent, match["base"]))
        stack.append((depth, match["name"]))
    return found


def test_docstring_tree_lists_every_exception() -> None:
    from messaging_core import errors

    documented = {name for name, _, _ in _documented_tree()}
    assert documented == set(errors.__all__)
    assert len(documented) == 12


@pytest.mark.parametrize(("name", "parent", "builtin"), _documented_tree())
def test_exception_matches_the_documented_tree(name: str, parent: str | None, builtin: str | None) -> None:
    cls = getattr(messaging_core, name)
    assert issubclass(cls, MessagingError)
    if parent is not None:
        assert issubclass(cls, getattr(messaging_core, parent)), f"{name} should derive from {parent}"
    if builtin is not None:
        assert issubclass(cls, getattr(builtins, builtin)), f"{name} should derive from {builtin}"


@pytest.mark.parametrize(
    ("exception", "builtin"),
    [
        (ConfigurationError("x"), ValueError),
        (SchemaError("x"), ValueError),
        (PluginError("x"), RuntimeError),
        (CapabilityNotSupportedError("x"), NotImplementedError),
        (ConnectorStateError("x"), RuntimeError),
    ],
)
def test_callers_catching_builtins_still_catch(exception: MessagingError, builtin: type[Exception]) -> None:
    with pytest.raises(builtin):
        raise exception


def test_configuration_error_carries_its_issues() -> None:
    issue = ValidationIssue("$.connectors.sms.channel", "is required", "REQUIRED")
    error = ConfigurationError("config.toml: 1 problem", issues=[issue])
    assert error.issues == (issue,)
    assert str(error) == "config.toml: 1 problem"


def test_operation_error_exposes_code_and_error() -> None:
    error = Failure(ConnectorErrorCodes.INVALID_RECIPIENT, "bad number")
    raised = error.exception()
    assert isinstance(raised, ValidationFailedError)
    assert isinstance(raised, ConnectorOperationError)
    assert raised.code == ConnectorErrorCodes.INVALID_RECIPIENT
    assert raised.error is error
    assert str(raised) == "INVALID_RECIPIENT: bad number"
    with pytest.raises(ValueError, match="bad number"):
        ConnectorResult.from_error(error).unwrap()
