"""The webhook routes as Django views and URL patterns, over a ``ThreadedWebhookService``.

The views are synchronous, so that they run the same under WSGI and ASGI: they never run an event
loop of their own but hand each request to the ``ThreadedWebhookService``, which handles it on its
one long-lived loop thread, where the connectors' HTTP sessions live (why this design:
``messaging_core.webhooks.threaded``). Under ASGI, Django runs them in its thread pool.

The routes are ``messaging serve``'s (``webhooks/<connector>/messages`` and ``/status``, under
wherever you ``include`` them), exempt from CSRF (the provider's signature is the proof), POST only,
with the same checks and answers: the public URL the provider signed is rebuilt with ``public_url``
(``get_full_path()``, script name included; the host is ``get_host()``, so ``ALLOWED_HOSTS``
applies; the ``[webhooks]`` public URL or, when trusted, the forwarded headers), and the service's
``WebhookAnswer`` is relayed as it is (status, content type, headers, body; Django keeps one value
per header, so repeated ones are joined with ", ").

Needs the ``django`` extra (``pluggable-messaging[django]``). In ``urls.py``::

    webhooks = ThreadedWebhookService.from_config(settings.BASE_DIR / "messaging.toml").start()
    urlpatterns = [path("", include(webhook_urlpatterns(webhooks)))]
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from messaging_core.webhooks.service import WebhookAnswer, WebhookKind
from messaging_core.webhooks.threaded import ThreadedWebhookService

__all__ = ["webhook_urlpatterns", "webhook_view"]


def _response(answer: WebhookAnswer) -> HttpResponse:
    response = HttpResponse(answer.body, status=answer.status)
    if answer.content_type is None:
        del response["Content-Type"]  # Django would otherwise call an empty 204 "text/html"
    else:
        response["Content-Type"] = answer.content_type
    values: dict[str, list[str]] = {}
    for name, value in answer.headers:
        values.setdefault(name, []).append(value)
    for name, joined in values.items():
        response[name] = ", ".join(joined)
    return response


def _content_length(request: HttpRequest) -> int | None:
    value = str(request.META.get("CONTENT_LENGTH") or "")
    return int(value) if value.isdigit() else None


def webhook_view(service: ThreadedWebhookService, kind: WebhookKind) -> Callable[..., HttpResponse]:
    """The view of one kind of webhook (``"messages"`` or ``"status"``), taking the connector's route name."""

    def view(request: HttpRequest, connector: str) -> HttpResponse:
        answer = service.answer(
            connector,
            kind,
            content_length=_content_length(request),
            read_body=request.read,
            content_type=request.content_type or "",
            scheme=request.scheme or "http",
            host=request.get_host(),
            path_qs=request.get_full_path(),
            headers=list(request.headers.items()),
        )
        return _response(answer)

    exempt: Callable[..., HttpResponse] = csrf_exempt(require_POST(view))
    return exempt


def webhook_urlpatterns(service: ThreadedWebhookService) -> list[URLPattern]:
    """The two webhook routes, named ``messaging-webhook-messages`` and ``messaging-webhook-status``."""
    kinds: tuple[WebhookKind, ...] = ("messages", "status")
    return [
        path(f"webhooks/<str:connector>/{kind}", webhook_view(service, kind), name=f"messaging-webhook-{kind}")
        for kind in kinds
    ]
