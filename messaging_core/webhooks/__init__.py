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
  store opened and closed (``messaging serve`` and the demo);
- ``threaded``: ``ThreadedWebhookService``, the service on a loop thread of its own, for
  synchronous views;
- the adapters for other web frameworks, each imported only by its user (never from here, so that
  the core never imports a framework): ``asgi`` (a Starlette app, a FastAPI router), ``django``
  (views and URL patterns), ``flask`` (a blueprint). Each only translates its framework's request
  and response; what they share is the service's (``public_url``, ``early_answer``, ``request_of``).
"""

from __future__ import annotations

from messaging_core.webhook_request import FORM_CONTENT_TYPE, JSON_CONTENT_TYPE, WebhookRequest
from messaging_core.webhooks.app import create_webhook_app, public_url_of
from messaging_core.webhooks.host import WebhookHost
from messaging_core.webhooks.service import (
    StatusReceiver,
    WebhookAnswer,
    WebhookKind,
    WebhookService,
    WebhookStats,
    public_url,
)
from messaging_core.webhooks.threaded import ThreadedWebhookService

__all__ = [
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
]
