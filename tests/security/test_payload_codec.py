"""The payload codec: every payload AES-256-GCM encrypted, rotation without breaking old payloads,
tampering refused loudly, unencrypted payloads (from before encryption) passed through."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.exceptions import ApplicationError

from schemas import temporal
from schemas.keyring import KeyRing
from schemas.payload_codec import (
    COMPRESSION,
    COMPRESSION_KEY,
    ENCODING,
    KEY_ID,
    EncryptionCodec,
    PayloadCodecError,
)
from schemas.settings import InsecureSettingsError, Settings

OLD = KeyRing.parse(KeyRing.generate_entry("2026-01"))
ROTATED = KeyRing([KeyRing.parse(KeyRing.generate_entry("2026-07")).newest, OLD.newest])


class Contact(BaseModel):
    email: str
    name: str


SECRET_TEXT = b'{"email": "kwame.asante@example.org", "name": "Kwame Asante"}'


def plain(data: bytes = SECRET_TEXT) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=data)


async def test_a_payload_is_encrypted_and_decrypts_to_itself() -> None:
    codec = EncryptionCodec(OLD)
    [sealed] = await codec.encode([plain()])
    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata[KEY_ID] == b"2026-01"
    assert b"kwame" not in sealed.data.lower() and b"json/plain" not in sealed.data
    assert COMPRESSION_KEY not in sealed.metadata  # small: not worth compressing
    [opened] = await codec.decode([sealed])
    assert opened == plain()


async def test_each_payload_gets_a_fresh_nonce() -> None:
    codec = EncryptionCodec(OLD)
    first, second = await codec.encode([plain(), plain()])
    assert first.data[:12] != second.data[:12]
    assert first.data != second.data


async def test_a_large_payload_is_compressed_before_encryption_and_says_so() -> None:
    codec = EncryptionCodec(OLD)
    big = plain(json.dumps([{"amount_minor": 150000, "stage": "posted"}] * 200).encode())
    [sealed] = await codec.encode([big])
    assert sealed.metadata[COMPRESSION_KEY] == COMPRESSION
    assert len(sealed.data) < len(big.data) / 5
    assert await codec.decode([sealed]) == [big]


async def test_a_payload_under_an_old_key_decodes_after_rotation() -> None:
    [sealed_before] = await EncryptionCodec(OLD).encode([plain()])
    rotated = EncryptionCodec(ROTATED)
    assert await rotated.decode([sealed_before]) == [plain()]
    [sealed_after] = await rotated.encode([plain()])
    assert sealed_after.metadata[KEY_ID] == b"2026-07"  # the newest key encrypts
    with pytest.raises(PayloadCodecError, match="2026-07"):
        await EncryptionCodec(OLD).decode([sealed_after])  # a ring without the new key


async def test_a_key_dropped_from_the_ring_fails_loudly_naming_it() -> None:
    [sealed] = await EncryptionCodec(OLD).encode([plain()])
    other = EncryptionCodec(KeyRing.parse(KeyRing.generate_entry("2027-01")))
    with pytest.raises(PayloadCodecError, match=r"key id '2026-01'.*not in BANKFLOW_PAYLOAD_KEYS"):
        await other.decode([sealed])


@pytest.mark.parametrize("position", [0, 12, 20, -1])
async def test_a_tampered_payload_fails_loudly(position: int) -> None:
    codec = EncryptionCodec(OLD)
    [sealed] = await codec.encode([plain()])
    data = bytearray(sealed.data)
    data[position] ^= 0x01
    tampered = Payload(metadata=dict(sealed.metadata), data=bytes(data))
    with pytest.raises(PayloadCodecError, match="failed authentication"):
        await codec.decode([tampered])


async def test_changed_metadata_fails_authentication_too() -> None:
    codec = EncryptionCodec(OLD)
    big = plain(b"x" * 5000)
    [sealed] = await codec.encode([big])
    stripped = Payload(
        metadata={k: v for k, v in sealed.metadata.items() if k != COMPRESSION_KEY},
        data=sealed.data,
    )
    with pytest.raises(PayloadCodecError, match="failed authentication"):
        await codec.decode([stripped])
    # the same secret under another key id is another key
    renamed = EncryptionCodec(KeyRing.parse(f"other:{OLD.newest.secret.decode()}"))
    relabelled = Payload(metadata={**sealed.metadata, KEY_ID: b"other"}, data=sealed.data)
    with pytest.raises(PayloadCodecError, match="failed authentication"):
        await renamed.decode([relabelled])


async def test_a_truncated_payload_fails_loudly() -> None:
    codec = EncryptionCodec(OLD)
    [sealed] = await codec.encode([plain()])
    short = Payload(metadata=dict(sealed.metadata), data=sealed.data[:20])
    with pytest.raises(PayloadCodecError, match="truncated"):
        await codec.decode([short])


async def test_a_payload_from_before_encryption_passes_through_unchanged() -> None:
    codec = EncryptionCodec(OLD)
    null = Payload(metadata={"encoding": b"binary/null"})
    assert await codec.decode([plain(), null]) == [plain(), null]


async def test_the_data_converter_encrypts_models_end_to_end() -> None:
    settings = Settings(payload_keys=OLD)
    converter = temporal.data_converter(settings)
    assert isinstance(converter.payload_codec, EncryptionCodec)
    payloads = await converter.encode([Contact(email="kwame@example.org", name="Kwame")])
    assert payloads[0].metadata["encoding"] == ENCODING
    assert b"kwame" not in payloads[0].data.lower()
    [back] = await converter.decode(payloads, [Contact])
    assert back == Contact(email="kwame@example.org", name="Kwame")


def test_no_codec_without_a_key_ring() -> None:
    with pytest.raises(ValueError, match="BANKFLOW_PAYLOAD_KEYS"):
        EncryptionCodec(KeyRing())


def test_production_settings_without_payload_keys_are_refused() -> None:
    settings = Settings(jwt_keys=KeyRing.generate_entry("j"), payload_keys=KeyRing())
    with pytest.raises(InsecureSettingsError, match="BANKFLOW_PAYLOAD_KEYS is not set"):
        settings.refuse_insecure()
    dev = Settings(env="dev", payload_keys=KeyRing())
    assert dev.payload_keys.newest.kid == "dev"  # dev only: a built-in, published key


async def test_a_failures_message_and_stack_trace_are_encrypted_too() -> None:
    converter = temporal.data_converter(Settings(payload_keys=OLD))
    try:
        raise ApplicationError("no savings for kwame.asante@example.org", type="InvalidData")
    except ApplicationError as error:
        failure = Failure()
        await converter.encode_failure(error, failure)
    assert failure.message == "Encoded failure" and not failure.stack_trace
    assert failure.encoded_attributes.metadata["encoding"] == ENCODING
    assert b"kwame" not in failure.SerializeToString()
    assert failure.application_failure_info.type == "InvalidData"  # the code stays readable
    back = await converter.decode_failure(failure)
    assert isinstance(back, ApplicationError) and back.type == "InvalidData"
    assert back.message == "no savings for kwame.asante@example.org"
