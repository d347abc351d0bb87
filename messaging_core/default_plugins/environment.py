"""Built-in plugin: connection parameters from the environment.

- A value written ``${VAR}`` (or ``${VAR:-default}``) is replaced by the variable's value.
- A missing value is read from ``<PROVIDER>_<PARAMETER_IN_SNAKE_CASE>`` when that variable is set:
  ``AccountSid`` of provider ``twilio`` comes from ``TWILIO_ACCOUNT_SID``. Such a value is text;
  it is converted to the parameter's type (integer, number, boolean) when it reads as one, and
  otherwise left as text for validation to report. A connector configured with
  ``environment_defaults = false`` opts out of this rule (``ENVIRONMENT_DEFAULTS``);
  ``messaging config validate`` lists the parameters it fills.
"""

from __future__ import annotations

import math
import os
from typing import Any

from messaging_core.hookspecs import hookimpl
from messaging_core.schema import ChannelSchema, DataType
from messaging_core.settings import ENVIRONMENT_DEFAULTS, environment_variable, interpolate_env

__all__ = ["environment_variable", "resolve_parameter"]


@hookimpl(trylast=True)
def resolve_parameter(schema: ChannelSchema, parameter: str, value: Any) -> Any:
    if isinstance(value, str):
        return interpolate_env(value, where=f"parameter {parameter}") if "${" in value else None
    if value is None:
        if not ENVIRONMENT_DEFAULTS.get():
            return None
        text = os.environ.get(environment_variable(schema, parameter))
        spec = schema.parameter_spec(parameter)
        return text if text is None or spec is None or spec.repeated else _typed(spec.data_type, text)
    return None


_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _typed(data_type: DataType, text: str) -> Any:
    """``text`` as a ``data_type`` value when it reads as one, else unchanged (validation reports it)."""
    try:
        if data_type is DataType.INTEGER:
            return int(text)
        if data_type is DataType.NUMBER:
            number = float(text)
            return number if math.isfinite(number) else text
    except ValueError:
        return text
    if data_type is DataType.BOOLEAN:
        return _BOOLEANS.get(text.strip().lower(), text)
    return text
