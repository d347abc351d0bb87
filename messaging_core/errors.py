"""Exceptions raised by messaging_core.

Programmer errors raise; operational outcomes (a message that fails validation, a provider that
answers with an error, a network failure) come back as failed ``ConnectorResult`` values with a
stable code, because a bulk send needs one outcome per message. ``ConnectorResult.unwrap()``
bridges the two: it raises the exception that matches a failed result.

Every exception derives from ``MessagingError``; where a builtin fits, the class inherits it too,
so ``except ValueError`` keeps working for callers that do not know this package::

    MessagingError (Exception)
    ├── ConfigurationError (ValueError)           bad config file, unknown channel/variant/connector
    ├── SchemaError (ValueError)                  a ChannelSchema that contradicts itself
    ├── PluginError (RuntimeError)                a plugin failed to load or registered nonsense
    ├── CapabilityNotSupportedError (NotImplementedError)
    │                                             operation excluded by the schema's capabilities
    ├── ConnectorStateError (RuntimeError)        operation not allowed in the connector's state
    └── ConnectorOperationError                   raised by ConnectorResult.unwrap() on failure
        ├── ValidationFailedError (ValueError)    the input did not validate (issues attached)
        ├── AuthenticationError                   provider refused the credentials
        ├── RateLimitedError                      provider asked to slow down (retryable)
        ├── WebhookRefusedError (PermissionError) a webhook not proven to come from the provider
        └── ProviderError                         any other provider or network failure
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from messaging_core.results import Failure
    from messaging_core.validation import ValidationIssue

__all__ = [
    "AuthenticationError",
    "CapabilityNotSupportedError",
    "ConfigurationError",
    "ConnectorOperationError",
    "ConnectorStateError",
    "MessagingError",
    "PluginError",
    "ProviderError",
    "RateLimitedError",
    "SchemaError",
    "ValidationFailedError",
    "WebhookRefusedError",
]


class MessagingError(Exception):
    """Root of every exception raised by messaging_core and its plugins."""


class ConfigurationError(MessagingError, ValueError):
    """A configuration file, a connector spec or a setting is wrong.

    The message names where: the file, the connector and the JSON path.
    """

    def __init__(self, message: str, *, issues: Sequence[ValidationIssue] = ()) -> None:
        super().__init__(message)
        self.issues = tuple(issues)


class SchemaError(MessagingError, ValueError):
    """A channel schema is inconsistent (duplicate names, a default that violates its constraints...)."""


class PluginError(MessagingError, RuntimeError):
    """A plugin failed to load or registered something invalid; the message names the plugin."""


class CapabilityNotSupportedError(MessagingError, NotImplementedError):
    """The operation is excluded by the connector schema's capabilities."""


class ConnectorStateError(MessagingError, RuntimeError):
    """The operation is not allowed in the connector's current lifecycle state."""


class ConnectorOperationError(MessagingError):
    """A connector operation failed; raised by ``ConnectorResult.unwrap()``.

    ``error`` carries the stable code, message, validation issues and provider details.
    """

    def __init__(self, error: Failure) -> None:
        super().__init__(f"{error.code}: {error.message}")
        self.error = error

    @property
    def code(self) -> str:
        """The stable error code (see ``ConnectorErrorCodes``)."""
        return self.error.code


class ValidationFailedError(ConnectorOperationError, ValueError):
    """The message or settings did not validate; ``error.issues`` lists every problem."""


class AuthenticationError(ConnectorOperationError):
    """The provider rejected the credentials."""


class RateLimitedError(ConnectorOperationError):
    """The provider asked to slow down; retry later."""


class WebhookRefusedError(ConnectorOperationError, PermissionError):
    """A webhook was refused: its signature is missing or wrong, or it names an account not served."""


class ProviderError(ConnectorOperationError):
    """Any other provider or network failure."""
