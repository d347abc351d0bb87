"""pluggable-messaging: a pluggable multi-channel messaging framework.

This module is the public API of a host application and of a channel author; everything not
re-exported here is private. The campaign SPI (ledgers, rate limiters, status stores, dispatchers)
is exported by ``messaging_core.campaigns``, the webhook machinery by ``messaging_core.webhooks``,
metrics and traces by ``messaging_core.telemetry`` (``enable_metrics`` and ``metrics_registry`` here).
"""

from __future__ import annotations

from messaging_core.config import ConnectorSpec, MessagingConfig, MetricsSettings, WebhookSettings, load_config
from messaging_core.connector import BatchProgress, ChannelConnector, ConnectorState
from messaging_core.emulation import EmulatorRegistration, RunningEmulator
from messaging_core.errors import (
    AuthenticationError,
    CapabilityNotSupportedError,
    ConfigurationError,
    ConnectorOperationError,
    ConnectorStateError,
    MessagingError,
    PluginError,
    ProviderError,
    RateLimitedError,
    SchemaError,
    ValidationFailedError,
    WebhookRefusedError,
)
from messaging_core.hookspecs import hookimpl, hookspec
from messaging_core.message import (
    BinaryContent,
    Content,
    ContentType,
    Endpoint,
    EndpointType,
    HtmlContent,
    JsonContent,
    MediaContent,
    Message,
    MessageBatch,
    MessageBuilder,
    MultipartContent,
    TemplateContent,
    TextContent,
    iterate_messages,
    new_message_id,
)
from messaging_core.plugins import PluginHost, PluginLoadFailure
from messaging_core.registry import ChannelInfo, ChannelRegistry
from messaging_core.results import (
    BatchSendResult,
    ConnectorErrorCodes,
    ConnectorHealth,
    ConnectorResult,
    Failure,
    FailureOutcome,
    MessageStatus,
    ReceiveResult,
    SendResult,
    StatusUpdate,
    StatusUpdatesResult,
)
from messaging_core.schema import (
    Capability,
    ChannelSchema,
    DataType,
    EndpointSpec,
    ParameterSpec,
    PropertySpec,
)
from messaging_core.settings import ConnectionSettings
from messaging_core.telemetry import enable_metrics, metrics_registry
from messaging_core.validation import IssueCodes, ValidationIssue
from messaging_core.webhook_request import WebhookRequest

__version__ = "0.1.0"

__all__ = [
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
]
