"""Error and skip records shared by the data modules."""

from __future__ import annotations

from dataclasses import dataclass

from mtlbench.infra.errors import UserError


class DataError(UserError):
    """A user-facing problem with ``--data``; the message is one line the CLI prints as is."""


@dataclass(frozen=True)
class Skipped:
    """A file that was looked at and left out, with the reason a person can act on."""

    name: str
    reason: str
