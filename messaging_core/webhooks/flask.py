"""The webhook routes as a Flask blueprint, over a ``ThreadedWebhookService``.

Flask views are synchronous; the connectors are asynchronous and keep an HTTP session bound to
the event loop that initialized them. The views therefore never run a loop of their own: they hand
each request to the ``ThreadedWebhookService``, which handles it on its one long-lived loop thread
and blocks only the view's thread until the answer (why this design: ``messaging_core.webhooks.threaded``).
It works under any WSGI server and threading model, and from a thread whose own loop is running.

The routes are ``messaging serve``'s (``POST /webhooks/<connector>/messages`` and ``/status``,
under the blueprint's ``url_prefix``), with the same checks and answers: the public URL the
provider signed is rebuilt with ``public_url`` (script root and prefix included; the
``[webhooks]`` public URL or, when trusted, the forwarded headers), and the service's
``WebhookAnswer`` is relayed as it is (status, content type, headers, body).

Needs the ``flask`` extra (``pluggable-messaging[flask]``)::

    service = ThreadedWebhookService.from_config("messaging.toml").start()
    app.register_blueprint(create_webhook_blueprint(service))
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from messaging_core.webhooks.service import WebhookAnswer, WebhookKind
from messaging_core.webhooks.threaded import ThreadedWebhookService

__all__ = ["create_webhook_blueprint"]


def _response(answer: WebhookAnswer) -> Response:
    response = Response(answer.body, status=answer.status)
    if answer.content_type is None:
        del response.headers["Content-Type"]  # Flask would otherwise call an empty 204 "text/html"
    else:
        response.headers["Content-Type"] = answer.content_type
    for name, value in answer.headers:
        response.headers.add(name, value)
    return response


def create_webhook_blueprint(
    service: ThreadedWebhookService, *, name: str = "messaging_webhooks", url_prefix: str | None = None
) -> Blueprint:
    """A blueprint with the two webhook routes over ``service`` (started before the first request)."""
    blueprint = Blueprint(name, __name__, url_prefix=url_prefix)

    def handle(connector: str, kind: WebhookKind) -> Response:
        query = request.query_string.decode("latin-1")  # WSGI's encoding of the raw query string
        answer = service.answer(
            connector,
            kind,
            content_length=request.content_length,
            read_body=request.stream.read,
            content_type=request.content_type or "",
            scheme=request.scheme,
            host=request.host,
            path_qs=request.script_root + request.path + (f"?{query}" if query else ""),
            headers=list(request.headers.items()),
        )
        return _response(answer)

    def messages(connector: str) -> Response:
        return handle(connector, "messages")

    def status(connector: str) -> Response:
        return handle(connector, "status")

    blueprint.add_url_rule("/webhooks/<connector>/messages", "messages", messages, methods=["POST"])
    blueprint.add_url_rule("/webhooks/<connector>/status", "status", status, methods=["POST"])
    return blueprint
