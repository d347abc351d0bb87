"""Built-in plugin: connection parameters from the environment.

- A value written ``${VAR}`` (or ``${VAR:-default}``) is replaced by the variable's value.
- A missing value is read from ``<PROVIDER>_<PARAMETER_IN_SNAKE_CASE>`` when that variable is set:
  ``AccountSid`` of provider ``twilio`` comes from ``TWILIO_ACCOUNT_SID``.
"""

from __future__ import annotations

import os
import re
from typing import Any

from messaging_core.hookspecs import hookimpl
from messaging_core.schema import ChannelSchema
from messaging_core.settings import interpolate_env

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def environment_variable(schema: ChannelSchema, parameter: str) -> str:
    """The variable a missing parameter is read from (``TWILIO_ACCOUNT_SID``)."""
    words = _CAMEL_BOUNDARY.sub("_", parameter)
    return f"{schema.provider}_{words}".upper().replace("-", "_")


@hookimpl(trylast=True)
def resolve_parameter(schema: ChannelSchema, parameter: str, value: Any) -> Any:
    if isinstance(value, str):
        return interpolate_env(value, where=f"parameter {parameter}") if "${" in value else None
    if value is None:
        return os.environ.get(environment_variable(schema, parameter))
    return None
