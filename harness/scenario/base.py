"""The scenario models' common base and located validation errors."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError


class StrictModel(BaseModel):
    """Frozen, no unknown fields, fields by name or alias: every scenario and envelope model."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True
    )


def custom_error(
    loc: tuple[str | int, ...], kind: str, message: str, value: Any
) -> InitErrorDetails:
    """One validation error at ``loc``, for :func:`raise_errors`."""
    return {"type": PydanticCustomError(kind, message), "loc": loc, "input": value}


def raise_errors(title: str, errors: list[InitErrorDetails]) -> None:
    """Raise all ``errors`` at once (a ``ValidationError``), if there are any."""
    if errors:
        raise ValidationError.from_exception_data(title, errors)
