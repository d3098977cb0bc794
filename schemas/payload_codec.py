"""Every Temporal payload encrypted: AES-256-GCM under the newest key of BANKFLOW_PAYLOAD_KEYS.

Temporal keeps a workflow's history for the namespace's retention, replicates and exports it, and
shows it to whoever reaches the Web UI. Workflows carry ids, not personal data, but amounts,
account numbers and free-text reasons are still the bank's business: so the server only ever sees
ciphertext. The codec sits under the pydantic converter (schemas/temporal.py), in every client,
worker, replayer and in the API's remote-codec endpoint.

An encoded payload is the whole original payload (its metadata and data, serialised) encrypted:

    metadata: encoding=binary/encrypted, encryption-key-id=<kid>, encryption-cipher=AES256GCM,
              compression=zlib (only when it paid: payloads above COMPRESS_ABOVE bytes)
    data:     12-byte random nonce || ciphertext || 16-byte GCM tag

The key id, cipher and compression flag are also the GCM associated data, so changing any of them
fails authentication like a changed byte of ciphertext does. Each key's AES key is derived from
the ring's secret with HKDF-SHA256, so a secret of any length (the ring takes 32+ random bytes,
written URL-safe) gives a full 256-bit key. A fresh random nonce per payload is safe for about
2^32 payloads per key (NIST SP 800-38D); rotate well before (README, Security).

Decoding a payload without this codec's encoding returns it unchanged: histories written before
encryption was switched on keep replaying and their workflows keep running. A payload that says it
is encrypted but names a key the ring lacks, or fails authentication, raises PayloadCodecError:
never a guess, never garbage handed to a workflow.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from functools import cached_property

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from schemas.keyring import KeyRing

ENCODING = b"binary/encrypted"
CIPHER = b"AES256GCM"
COMPRESSION = b"zlib"
KEY_ID = "encryption-key-id"
CIPHER_KEY = "encryption-cipher"
COMPRESSION_KEY = "compression"
# Below this a payload is encrypted as it is: zlib's header and the time are not worth a few bytes.
COMPRESS_ABOVE = 512
NONCE_BYTES = 12
TAG_BYTES = 16
_HKDF_INFO = b"bankflow temporal payload encryption v1"


class PayloadCodecError(ValueError):
    """An encrypted payload that cannot be decrypted: unknown key id, tampered, or truncated."""


def derive_key(secret: bytes) -> bytes:
    """The AES-256 key for one ring secret (HKDF-SHA256, no salt: the secret is already random)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(secret)


def _associated_data(kid: bytes, compression: bytes) -> bytes:
    return b"\x00".join((ENCODING, CIPHER, kid, compression))


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over each payload; the ring's newest key encrypts, every key decrypts."""

    def __init__(self, ring: KeyRing, *, compress_above: int = COMPRESS_ABOVE) -> None:
        if not ring:
            raise ValueError("payload encryption needs a key ring (BANKFLOW_PAYLOAD_KEYS)")
        self._ring = ring
        self._compress_above = compress_above

    @cached_property
    def _ciphers(self) -> dict[bytes, AESGCM]:
        return {key.kid.encode(): AESGCM(derive_key(key.secret)) for key in self._ring}

    @property
    def encrypting_kid(self) -> str:
        return self._ring.newest.kid

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        plain = payload.SerializeToString()
        compression = b""
        if len(plain) > self._compress_above:
            packed = zlib.compress(plain)
            if len(packed) < len(plain):
                plain, compression = packed, COMPRESSION
        kid = self.encrypting_kid.encode()
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[kid].encrypt(nonce, plain, _associated_data(kid, compression))
        metadata = {"encoding": ENCODING, KEY_ID: kid, CIPHER_KEY: CIPHER}
        if compression:
            metadata[COMPRESSION_KEY] = compression
        return Payload(metadata=metadata, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # written before encryption was on (or by another codec): as it is
        kid = payload.metadata.get(KEY_ID, b"")
        cipher = self._ciphers.get(kid)
        if cipher is None:
            known = ", ".join(k.kid for k in self._ring)
            raise PayloadCodecError(
                f"payload encrypted with key id {kid.decode(errors='replace')!r}, which is not "
                f"in BANKFLOW_PAYLOAD_KEYS (key ids: {known}); put that key back in the ring"
            )
        if payload.metadata.get(CIPHER_KEY) != CIPHER:
            raise PayloadCodecError("encrypted payload names an unknown cipher")
        compression = payload.metadata.get(COMPRESSION_KEY, b"")
        if compression not in (b"", COMPRESSION):
            raise PayloadCodecError("encrypted payload names an unknown compression")
        data = payload.data
        if len(data) < NONCE_BYTES + TAG_BYTES:
            raise PayloadCodecError("encrypted payload is truncated")
        try:
            plain = cipher.decrypt(
                data[:NONCE_BYTES], data[NONCE_BYTES:], _associated_data(kid, compression)
            )
        except InvalidTag:
            raise PayloadCodecError(
                f"encrypted payload (key id {kid.decode()!r}) failed authentication: it was "
                "changed after encryption, or the key under that id is not the one used"
            ) from None
        if compression:
            plain = zlib.decompress(plain)
        inner = Payload()
        try:
            inner.ParseFromString(plain)
        except DecodeError as exc:  # authenticated, so only a bug on the encoding side
            raise PayloadCodecError(f"decrypted payload is not a payload: {exc}") from exc
        return inner
