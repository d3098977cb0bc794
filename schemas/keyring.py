"""Key rings: the setting type of every secret key the services sign or encrypt with.

A ring is written `kid:secret[,kid:secret...]`, newest first. The newest key signs (or encrypts);
every key in the ring verifies (or decrypts), so a key is rotated by putting a new one in front
and dropping the old one once nothing it signed can still be presented. The key id travels with
what it signed (a token's `kid` header), so verification picks the one key to try.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

KID = re.compile(r"[A-Za-z0-9._-]{1,64}")
MIN_SECRET_BYTES = 32
# Secrets that have been published: in this project's history, docs and examples, and the usual
# fill-ins. A service outside BANKFLOW_ENV=dev refuses any of them whatever its length.
KNOWN_PLACEHOLDERS = frozenset({"dev-only-secret-change-me-in-production-32b"})
_PLACEHOLDER_WORDS = ("changeme", "change-me", "change_me", "replace-me", "placeholder")
# The start of every built-in BANKFLOW_ENV=dev key (schemas.settings): published, so refused.
DEV_KEY_PREFIX = "bankflow-dev-only-"


@dataclass(frozen=True)
class Key:
    kid: str
    secret: bytes

    def __repr__(self) -> str:  # never the secret, in a log line or a traceback
        return f"Key(kid={self.kid!r}, secret=<{len(self.secret)} bytes>)"


class KeyRing:
    """An immutable list of keys, newest first, with unique key ids."""

    __slots__ = ("keys",)

    def __init__(self, keys: Iterable[Key] = ()) -> None:
        ring = tuple(keys)
        kids = [k.kid for k in ring]
        duplicates = sorted({kid for kid in kids if kids.count(kid) > 1})
        if duplicates:
            raise ValueError(f"key id(s) used twice: {', '.join(duplicates)}")
        for key in ring:
            if not KID.fullmatch(key.kid):
                raise ValueError(f"key id {key.kid!r} is not 1-64 of A-Z a-z 0-9 . _ -")
            if not key.secret:
                raise ValueError(f"key {key.kid!r} has an empty secret")
        self.keys = ring

    @classmethod
    def parse(cls, text: str) -> KeyRing:
        """`kid:secret` entries separated by commas or whitespace; the secret may contain `:`."""
        keys = []
        for entry in re.split(r"[,\s]+", text.strip()):
            if not entry:
                continue
            kid, sep, secret = entry.partition(":")
            if not sep:
                raise ValueError("each key is written kid:secret (the key id, a colon, the secret)")
            keys.append(Key(kid, secret.encode()))
        return cls(keys)

    @staticmethod
    def generate_entry(kid: str | None = None) -> str:
        """A new random `kid:secret` entry (48 random bytes, URL-safe base64)."""
        return f"{kid or secrets.token_hex(4)}:{secrets.token_urlsafe(48)}"

    @property
    def newest(self) -> Key:
        if not self.keys:
            raise LookupError("the key ring is empty")
        return self.keys[0]

    def get(self, kid: str) -> Key | None:
        return next((k for k in self.keys if k.kid == kid), None)

    def weaknesses(self) -> list[str]:
        """Why each weak key must not be used outside dev: too short or a published placeholder."""
        found = []
        for key in self.keys:
            text = key.secret.decode(errors="replace")
            lowered = text.casefold()
            if (
                lowered in KNOWN_PLACEHOLDERS
                or lowered.startswith(DEV_KEY_PREFIX)
                or any(w in lowered for w in _PLACEHOLDER_WORDS)
            ):
                found.append(f"key {key.kid!r} is a known placeholder")
            elif len(key.secret) < MIN_SECRET_BYTES:
                found.append(f"key {key.kid!r} is shorter than {MIN_SECRET_BYTES} bytes")
            elif len(set(key.secret)) < 8:
                found.append(f"key {key.kid!r} repeats too few characters to be random")
        return found

    def __iter__(self) -> Iterator[Key]:
        return iter(self.keys)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KeyRing) and other.keys == self.keys

    def __hash__(self) -> int:
        return hash(self.keys)

    def __repr__(self) -> str:
        return f"KeyRing(kids={[k.kid for k in self.keys]!r})"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def validate(value: Any) -> KeyRing:
            if isinstance(value, KeyRing):
                return value
            if isinstance(value, str):
                return cls.parse(value)
            raise ValueError("a key ring is a string of kid:secret entries")

        return core_schema.no_info_plain_validator_function(
            validate,
            # Dumped settings (model_dump_json, a repr in a log) show key ids, never secrets.
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda ring: ",".join(f"{k.kid}:**********" for k in ring)
            ),
        )
