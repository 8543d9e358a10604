"""`Secret`: a password held so that printing, logging or repr() never shows it.

Only `reveal()` gives the value back, and only the code that hands it to a client
library calls it (`streams.security`, the local stack). Everything else sees `**********`.
"""

from __future__ import annotations

from typing import Final

MASK: Final = "**********"


class Secret:
    """A string that does not say what it is."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value itself: only for handing to a client library, never for output."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling (multiprocessing, copy) must not become a way to print it by accident;
        # it still round-trips, since a child process needs the credential too.
        return (Secret, (self._value,))
