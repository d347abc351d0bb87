"""docs/connectors/twilio-sms.md cannot drift: its tables are the schema's, and every create field is listed."""

from __future__ import annotations

import re
from pathlib import Path

from messaging_core.cli.channels import schema_markdown
from messaging_twilio_sms import DELIVERY_ERRORS, TwilioChannelSchemas, _api

DOC = Path(__file__).resolve().parents[3] / "docs" / "connectors" / "twilio-sms.md"
BEGIN = "<!-- generated: messaging schema show twilio_sms --markdown -->\n"
END = "<!-- end generated -->"


def test_the_generated_tables_are_the_schemas() -> None:
    text = DOC.read_text(encoding="utf-8")
    block = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert block == schema_markdown(TwilioChannelSchemas.TWILIO_SMS), (
        "docs/connectors/twilio-sms.md is out of date: paste `messaging schema show twilio_sms --markdown` "
        "between its generated markers"
    )


def test_the_features_table_lists_every_create_field_once() -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("### Twilio features and what maps to them", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `(\w+)` \|", section, flags=re.MULTILINE)
    assert sorted(listed) == sorted(_api.CREATE_FIELDS)
    assert len(listed) == len(set(listed))


def test_the_delivery_error_table_is_the_plugins() -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("### Delivery errors", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| `(\w+)` \| (yes|no)", section, flags=re.MULTILINE)
    assert {int(code): (reason, permanent == "yes") for code, reason, permanent in rows} == DELIVERY_ERRORS
