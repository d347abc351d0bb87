"""Messages and what they are made of: endpoints, contents, batches, and webhook payloads.

Messages are immutable (attrs ``@frozen``). Build them directly or with the fluent
``MessageBuilder``. Contents carry a ``type`` discriminator (``ContentType``) that the one cattrs
converter (``messaging_core.converters``) writes and reads as the ``"type"`` key.
"""

from __future__ import annotations

import builtins
import enum
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Union

from attrs import field, frozen

if TYPE_CHECKING:
    pass

__all__ = [
    "BinaryContent",
    "Content",
    "ContentType",
    "Endpoint",
    "EndpointType",
    "HtmlContent",
    "JsonContent",
    "MediaContent",
    "Message",
    "MessageBatch",
    "MessageBuilder",
    "MultipartContent",
    "TemplateContent",
    "TextContent",
    "iterate_messages",
    "new_message_id",
]


def new_message_id() -> str:
    """A new random message id (32 hex characters)."""
    return uuid.uuid4().hex


class EndpointType(enum.StrEnum):
    """The kind of address an endpoint has."""

    PHONE = "phone"
    SHORT_CODE = "short_code"
    """A short code: a few digits an SMS provider sends from (and receives at), not an E.164 number."""
    EMAIL = "email"
    URL = "url"
    ID = "id"
    USER_ID = "user_id"
    APPLICATION_ID = "application_id"
    DEVICE_ID = "device_id"
    LABEL = "label"
    TOPIC = "topic"
    ANY = "any"


def _endpoint_type(value: EndpointType | str) -> EndpointType:
    return value if type(value) is EndpointType else EndpointType(value)


@frozen
class Endpoint:
    """Where a message comes from or goes to."""

    type: EndpointType = field(converter=_endpoint_type)
    address: str

    def __str__(self) -> str:
        return f"{self.type.value}:{self.address}"

    @classmethod
    def phone(cls, number: str) -> Endpoint:
        """A phone number, in E.164 form for most channels (``+14155550100``)."""
        return cls(EndpointType.PHONE, number)

    @classmethod
    def email(cls, address: str) -> Endpoint:
        """An e-mail address."""
        return cls(EndpointType.EMAIL, address)

    @classmethod
    def url(cls, url: str) -> Endpoint:
        """A URL (a webhook, for instance)."""
        return cls(EndpointType.URL, url)

    @classmethod
    def id(cls, identifier: str) -> Endpoint:
        """A provider-specific identifier."""
        return cls(EndpointType.ID, identifier)

    @classmethod
    def user(cls, user_id: str) -> Endpoint:
        """A user id in the provider's system."""
        return cls(EndpointType.USER_ID, user_id)

    @classmethod
    def application(cls, application_id: str) -> Endpoint:
        """An application id."""
        return cls(EndpointType.APPLICATION_ID, application_id)

    @classmethod
    def device(cls, device_id: str) -> Endpoint:
        """A device id (push notifications)."""
        return cls(EndpointType.DEVICE_ID, device_id)

    @classmethod
    def label(cls, label: str) -> Endpoint:
        """A display label (an alphanumeric sender id)."""
        return cls(EndpointType.LABEL, label)

    @classmethod
    def topic(cls, topic: str) -> Endpoint:
        """A topic (publish/subscribe channels)."""
        return cls(EndpointType.TOPIC, topic)


class ContentType(enum.StrEnum):
    """Discriminator of the content classes."""

    TEXT = "text"
    MEDIA = "media"
    HTML = "html"
    TEMPLATE = "template"
    JSON = "json"
    BINARY = "binary"
    MULTIPART = "multipart"


@frozen
class TextContent:
    """Plain text."""

    type: ClassVar[ContentType] = ContentType.TEXT
    text: str
    encoding: str | None = None
    """Character encoding hint (``"utf-8"``), or None for the channel's default."""


@frozen
class MediaContent:
    """A media attachment referenced by URL (or carried inline in ``data``)."""

    type: ClassVar[ContentType] = ContentType.MEDIA
    url: str
    content_type: str | None = None
    """MIME type, e.g. ``image/png``."""
    caption: str | None = None
    file_name: str | None = None
    data: bytes | None = field(default=None, repr=False)


@frozen
class HtmlContent:
    """An HTML body, with an optional plain-text alternative."""

    type: ClassVar[ContentType] = ContentType.HTML
    html: str
    plain_text: str | None = None


@frozen
class TemplateContent:
    """A provider-side template and the values for its placeholders."""

    type: ClassVar[ContentType] = ContentType.TEMPLATE
    template_id: str
    parameters: Mapping[str, Any] = field(factory=dict, converter=dict)


@frozen
class JsonContent:
    """A JSON document (any JSON value)."""

    type: ClassVar[ContentType] = ContentType.JSON
    data: Any


@frozen
class BinaryContent:
    """Raw bytes."""

    type: ClassVar[ContentType] = ContentType.BINARY
    data: bytes = field(repr=False)
    mime_type: str = "application/octet-stream"


def _parts(value: Iterable[Content]) -> tuple[Content, ...]:
    return tuple(value)


@frozen
class MultipartContent:
    """Several parts sent together (text plus images is the common MMS case)."""

    type: ClassVar[ContentType] = ContentType.MULTIPART
    parts: tuple[Content, ...] = field(converter=_parts)

    def parts_of(self, kind: builtins.type[Any]) -> list[Any]:
        """The parts that are instances of ``kind``."""
        return [p for p in self.parts if isinstance(p, kind)]


Content = Union[  # noqa: UP007 - a runtime Union is what cattrs' tagged-union strategy takes
    TextContent, MediaContent, HtmlContent, TemplateContent, JsonContent, BinaryContent, MultipartContent
]
"""Any content; the ``type`` class attribute (a ``ContentType``) tells which."""


def _properties(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


@frozen
class Message:
    """A message to send, or one received."""

    id: str
    sender: Endpoint | None
    receiver: Endpoint | None
    content: Content
    properties: Mapping[str, Any] = field(factory=dict, converter=_properties)
    """Channel-specific message properties, validated against the schema's ``PropertySpec``s."""

    def texts(self) -> list[str]:
        """Every text of the content (one for text, several for multipart)."""
        return [c.text for c in _flatten(self.content) if isinstance(c, TextContent)]

    def media(self) -> list[MediaContent]:
        """Every media part of the content."""
        return [c for c in _flatten(self.content) if isinstance(c, MediaContent)]


def _flatten(content: Content) -> Iterator[Content]:
    if isinstance(content, MultipartContent):
        for part in content.parts:
            yield from _flatten(part)
    else:
        yield content


def _messages(value: Iterable[Message]) -> tuple[Message, ...]:
    return tuple(value)


@frozen
class MessageBatch:
    """Messages sent together; each gets its own result."""

    messages: tuple[Message, ...] = field(converter=_messages)
    id: str = field(factory=new_message_id)
    properties: Mapping[str, Any] = field(factory=dict, converter=_properties)

    def __len__(self) -> int:
        return len(self.messages)

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages)


MessageStream = MessageBatch | Iterable[Message] | AsyncIterable[Message]
"""What ``send_batch`` accepts: a batch, or messages produced lazily (memory stays flat)."""


async def iterate_messages(messages: MessageStream) -> AsyncIterator[Message]:
    """Any ``MessageStream`` as one async iterator (read lazily, in order)."""
    if isinstance(messages, MessageBatch):
        for message in messages.messages:
            yield message
    elif isinstance(messages, AsyncIterable):
        async for message in messages:
            yield message
    else:
        for message in messages:
            yield message


class MessageBuilder:
    """Fluent construction of a ``Message``.

    ``MessageBuilder().with_phone_sender("+1...").with_phone_receiver("+1...").with_text_content("hi").build()``.
    Calling both a text and a media method yields a ``MultipartContent`` holding both.
    """

    def __init__(self) -> None:
        self._id: str | None = None
        self._sender: Endpoint | None = None
        self._receiver: Endpoint | None = None
        self._parts: list[Content] = []
        self._properties: dict[str, Any] = {}

    def with_id(self, message_id: str) -> MessageBuilder:
        self._id = message_id
        return self

    def with_sender(self, endpoint: Endpoint) -> MessageBuilder:
        self._sender = endpoint
        return self

    def with_phone_sender(self, number: str) -> MessageBuilder:
        return self.with_sender(Endpoint.phone(number))

    def with_email_sender(self, address: str) -> MessageBuilder:
        return self.with_sender(Endpoint.email(address))

    def with_receiver(self, endpoint: Endpoint) -> MessageBuilder:
        self._receiver = endpoint
        return self

    def with_phone_receiver(self, number: str) -> MessageBuilder:
        return self.with_receiver(Endpoint.phone(number))

    def with_email_receiver(self, address: str) -> MessageBuilder:
        return self.with_receiver(Endpoint.email(address))

    def with_content(self, content: Content) -> MessageBuilder:
        self._parts.append(content)
        return self

    def with_text_content(self, text: str, encoding: str | None = None) -> MessageBuilder:
        return self.with_content(TextContent(text, encoding))

    def with_media_content(
        self, url: str, content_type: str | None = None, caption: str | None = None
    ) -> MessageBuilder:
        return self.with_content(MediaContent(url, content_type, caption))

    def with_html_content(self, html: str, plain_text: str | None = None) -> MessageBuilder:
        return self.with_content(HtmlContent(html, plain_text))

    def with_template_content(self, template_id: str, parameters: Mapping[str, Any] | None = None) -> MessageBuilder:
        return self.with_content(TemplateContent(template_id, dict(parameters or {})))

    def with_property(self, name: str, value: Any) -> MessageBuilder:
        self._properties[name] = value
        return self

    def with_properties(self, properties: Mapping[str, Any]) -> MessageBuilder:
        self._properties.update(properties)
        return self

    @property
    def message(self) -> Message:
        """The message built so far (see ``build``)."""
        return self.build()

    def build(self) -> Message:
        """Build the message; raises ``ValueError`` when no content was given."""
        if not self._parts:
            raise ValueError("MessageBuilder: no content (call with_text_content, with_media_content, ...)")
        content: Content = self._parts[0] if len(self._parts) == 1 else MultipartContent(tuple(self._parts))
        return Message(
            id=self._id or new_message_id(),
            sender=self._sender,
            receiver=self._receiver,
            content=content,
            properties=dict(self._properties),
        )
