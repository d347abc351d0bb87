"""Webhooks: receiving what providers post, one way through.

::

    request ─▶ connector: verify + parse (pure; no hook) ─▶ dedupe + record (StatusStore) ─▶ dispatch (hooks) ─▶ answer

- ``WebhookRequest`` (defined in the model layer, ``messaging_core.webhook_request``, because the
  connector's receive methods take it): a provider's request as it arrived (raw body, public URL, headers);
- ``service``: ``WebhookService``, what to do with a webhook whatever framework carried it:
  verify + parse (the connector), dedupe + record (a ``StatusStore``), dispatch (hooks), answer;
  the rule for failing observers;
- ``app``: ``create_webhook_app``, the aiohttp application over the service: the two routes per
  connector and the health probes;
- ``host``: ``WebhookHost``, the application served on a socket with its connectors and status
  store opened and closed (``messaging serve`` and the demo).
"""

from __future__ import annotations

from messaging_core.webhook_request import FORM_CONTENT_TYPE, JSON_CONTENT_TYPE, WebhookRequest
from messaging_core.webhooks.app import create_webhook_app, public_url_of
from messaging_core.webhooks.host import WebhookHost
from messaging_core.webhooks.service import StatusReceiver, WebhookAnswer, WebhookKind, WebhookService, WebhookStats

__all__ = [
    "FORM_CONTENT_TYPE",
    "JSON_CONTENT_TYPE",
    "StatusReceiver",
    "WebhookAnswer",
    "WebhookHost",
    "WebhookKind",
    "WebhookRequest",
    "WebhookService",
    "WebhookStats",
    "create_webhook_app",
    "public_url_of",
]
