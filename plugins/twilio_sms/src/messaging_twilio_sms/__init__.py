"""Twilio SMS/MMS channel for pluggable-messaging.

Install ``pluggable-messaging-twilio-sms`` and the channel ``twilio_sms`` appears in
``ChannelRegistry.discover()`` through its entry point; nothing else needs importing.
"""

from __future__ import annotations

from messaging_twilio_sms._api import DELIVERY_ERRORS, STATUS_TABLE, TwilioErrorCodes, TwilioMessage, map_status
from messaging_twilio_sms.connector import TwilioSmsConnector
from messaging_twilio_sms.schemas import TwilioChannelSchemas
from messaging_twilio_sms.segments import SegmentInfo, count_segments
from messaging_twilio_sms.settings import TwilioSettings
from messaging_twilio_sms.webhooks import OptOutType

__version__ = "0.1.0"

__all__ = [
    "DELIVERY_ERRORS",
    "STATUS_TABLE",
    "OptOutType",
    "SegmentInfo",
    "TwilioChannelSchemas",
    "TwilioErrorCodes",
    "TwilioMessage",
    "TwilioSettings",
    "TwilioSmsConnector",
    "__version__",
    "count_segments",
    "map_status",
]
