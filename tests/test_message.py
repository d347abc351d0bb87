"""Messages, the builder, batches and webhook sources."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from aiohttp import web
from multidict import MultiDict

from messaging_core import (
    ContentType,
    Endpoint,
    EndpointType,
    HtmlContent,
    MediaContent,
    Message,
    MessageBatch,
    MessageBuilder,
    MultipartContent,
    TemplateContent,
    TextContent,
    WebhookRequest,
    new_message_id,
)

# -- endpoints and contents -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("helper", "endpoint_type"),
    [
        (Endpoint.phone, EndpointType.PHONE),
        (Endpoint.email, EndpointType.EMAIL),
        (Endpoint.url, EndpointType.URL),
        (Endpoint.id, EndpointType.ID),
        (Endpoint.user, EndpointType.USER_ID),
        (Endpoint.application, EndpointType.APPLICATION_ID),
        (Endpoint.device, EndpointType.DEVICE_ID),
        (Endpoint.label, EndpointType.LABEL),
        (Endpoint.topic, EndpointType.TOPIC),
    ],
)
def test_endpoint_helpers(helper: Any, endpoint_type: EndpointType) -> None:
    endpoint = helper("abc")
    assert endpoint == Endpoint(endpoint_type, "abc")
    assert str(endpoint) == f"{endpoint_type.value}:abc"


def test_endpoint_type_is_converted_from_text_and_checked() -> None:
    assert Endpoint("email", "a@example.com").type is EndpointType.EMAIL
    with pytest.raises(ValueError):
        Endpoint("pigeon", "x")


def test_every_content_class_has_its_discriminator() -> None:
    classes = [TextContent, MediaContent, HtmlContent, TemplateContent, MultipartContent]
    assert {cls.type for cls in classes} <= set(ContentType)
    assert TextContent("hi").type is ContentType.TEXT
    assert MultipartContent([TextContent("a")]).type is ContentType.MULTIPART


def test_models_are_immutable_and_hashable_where_expected() -> None:
    message = Message("m1", None, Endpoint.phone("+15550000001"), TextContent("hi"))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        message.id = "m2"  # type: ignore[misc]
    assert hash(Endpoint.phone("+1")) == hash(Endpoint.phone("+1"))
    assert message.properties == {}


def test_binary_data_stays_out_of_reprs() -> None:
    media = MediaContent("https://example.com/a.png", data=b"very-private-bytes")
    assert "very-private-bytes" not in repr(media)


def test_new_message_ids_are_unique_hex() -> None:
    ids = {new_message_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


# -- builder --------------------------------------------------------------------------------------------


def test_builder_text_message() -> None:
    message = (
        MessageBuilder()
        .with_id("m-1")
        .with_phone_sender("+15550000001")
        .with_phone_receiver("+15550000002")
        .with_text_content("hello", encoding="utf-8")
        .with_property("Tag", "a")
        .with_properties({"Priority": 2, "Tag": "b"})
        .build()
    )
    assert message == Message(
        "m-1",
        Endpoint.phone("+15550000001"),
        Endpoint.phone("+15550000002"),
        TextContent("hello", "utf-8"),
        {"Tag": "b", "Priority": 2},
    )


def test_builder_text_and_media_make_a_multipart() -> None:
    message = (
        MessageBuilder()
        .with_email_sender("from@example.com")
        .with_email_receiver("to@example.com")
        .with_text_content("look")
        .with_media_content("https://example.com/cat.png", "image/png", caption="a cat")
        .message
    )
    assert isinstance(message.content, MultipartContent)
    assert message.content.parts == (
        TextContent("look"),
        MediaContent("https://example.com/cat.png", "image/png", "a cat"),
    )
    assert message.texts() == ["look"]
    assert message.media() == [MediaContent("https://example.com/cat.png", "image/png", "a cat")]
    assert message.content.parts_of(MediaContent) == message.media()
    assert message.sender == Endpoint.email("from@example.com")


def test_builder_other_contents_and_endpoints() -> None:
    html = MessageBuilder().with_receiver(Endpoint.user("u1")).with_html_content("<b>x</b>", "x").build()
    assert html.content == HtmlContent("<b>x</b>", "x")
    assert html.receiver == Endpoint.user("u1")
    template = MessageBuilder().with_sender(Endpoint.label("ACME")).with_template_content("welcome", {"n": 1}).build()
    assert template.content == TemplateContent("welcome", {"n": 1})
    assert template.sender == Endpoint.label("ACME")


def test_builder_generates_an_id_and_refuses_no_content() -> None:
    first = MessageBuilder().with_text_content("a").build()
    second = MessageBuilder().with_text_content("a").build()
    assert first.id
    assert second.id
    assert first.id != second.id
    with pytest.raises(ValueError, match="no content"):
        MessageBuilder().with_phone_receiver("+1").build()


def test_builder_properties_are_copied() -> None:
    builder = MessageBuilder().with_text_content("a").with_property("Tag", "x")
    first = builder.build()
    builder.with_property("Tag", "y")
    assert first.properties == {"Tag": "x"}


# -- batches --------------------------------------------------------------------------------------------


def test_batch_is_a_sized_iterable_with_an_id() -> None:
    messages = [MessageBuilder().with_text_content(str(i)).build() for i in range(3)]
    batch = MessageBatch(messages)
    assert len(batch) == 3
    assert list(batch) == messages
    assert isinstance(batch.messages, tuple)
    assert batch.id != MessageBatch(messages).id


# -- webhook sources ------------------------------------------------------------------------------------


def test_from_form_decodes_plus_as_space_and_keeps_repeated_keys() -> None:
    body = b"Body=hello+world%21&MediaUrl=a&MediaUrl=b&Empty="
    source = WebhookRequest.from_form(body, url="https://hooks.example.com/sms", headers={"X-Sig": "abc"})
    assert source.body == body
    assert source.content_type == "application/x-www-form-urlencoded"
    assert source.is_form
    assert source.form == (("Body", "hello world!"), ("MediaUrl", "a"), ("MediaUrl", "b"), ("Empty", ""))
    assert source.form_dict() == {"Body": "hello world!", "MediaUrl": "a", "Empty": ""}
    assert source.url == "https://hooks.example.com/sms"
    assert source.header("x-sig") == "abc"
    assert source.header("missing") is None


def test_from_form_accepts_text() -> None:
    assert WebhookRequest.from_form("a=1+2").form == (("a", "1 2"),)


@pytest.mark.parametrize(
    "data",
    [
        {"To": "+1 555", "MediaUrl": ["a", "b"]},
        MultiDict([("To", "+1 555"), ("MediaUrl", "a"), ("MediaUrl", "b")]),
        [("To", "+1 555"), ("MediaUrl", "a"), ("MediaUrl", "b")],
    ],
    ids=["dict", "multidict", "pairs"],
)
def test_from_form_data_keeps_every_value_and_reencodes(data: Any) -> None:
    source = WebhookRequest.from_form_data(data, url="https://h.example.com/x")
    assert source.form == (("To", "+1 555"), ("MediaUrl", "a"), ("MediaUrl", "b"))
    assert source.body == b"To=%2B1+555&MediaUrl=a&MediaUrl=b"
    assert WebhookRequest.from_form(source.body).form == source.form


def test_from_json_keeps_the_raw_bytes() -> None:
    raw = b'{ "b": 1,   "a": [1, 2] }'
    source = WebhookRequest.from_json(raw, headers=[("X-Hub", "1")])
    assert source.body == raw  # not re-serialized: signatures cover these exact bytes
    assert source.json() == {"b": 1, "a": [1, 2]}
    assert source.content_type == "application/json"
    assert not source.is_form
    assert source.header("x-hub") == "1"
    assert WebhookRequest.from_json({"a": 1}).json() == {"a": 1}
    assert WebhookRequest.from_json("[1]").body == b"[1]"


def test_json_of_a_non_json_body_raises_value_error() -> None:
    with pytest.raises(ValueError):
        WebhookRequest.from_form(b"a=1").json()


def test_source_repr_hides_body_and_headers() -> None:
    source = WebhookRequest.from_form(b"Token=secret-value-123", headers={"Authorization": "Bearer xyz-secret"})
    assert "secret-value-123" not in repr(source)
    assert "xyz-secret" not in repr(source)


async def test_from_aiohttp_request_reads_a_real_request(aiohttp_client: Any) -> None:
    seen: list[WebhookRequest] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(await WebhookRequest.from_aiohttp_request(request))
        return web.Response(text="ok")

    async def public_handler(request: web.Request) -> web.Response:
        seen.append(await WebhookRequest.from_aiohttp_request(request, url="https://public.example.com/hook"))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", handler)
    app.router.add_post("/public", public_handler)
    client = await aiohttp_client(app)

    form_body = b"Body=hi+there&MediaUrl=x&MediaUrl=y"
    response = await client.post(
        "/hook?id=1",
        data=form_body,
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "sig"},
    )
    assert response.status == 200
    json_body = b'{"event": "delivered",  "id": 7}'
    response = await client.post("/public", data=json_body, headers={"Content-Type": "application/json"})
    assert response.status == 200

    form, js = seen
    assert form.body == form_body
    assert form.form == (("Body", "hi there"), ("MediaUrl", "x"), ("MediaUrl", "y"))
    assert form.url is not None
    assert form.url.endswith("/hook?id=1")
    assert form.url.startswith("http://127.0.0.1:")
    assert form.header("x-twilio-signature") == "sig"
    assert js.body == json_body
    assert js.content_type == "application/json"
    assert js.form is None
    assert js.json() == {"event": "delivered", "id": 7}
    assert js.url == "https://public.example.com/hook"
