"""A deterministic MP4-looking body of any size, generated in chunks so that neither side ever holds it whole.

It starts with a real `ftyp` box and continues with pseudo-random bytes: one random block, rotated by a
different amount for every chunk, which is as fast as copying memory and makes every chunk differ (a part
stored in the wrong place changes the SHA-256).
"""

import hashlib
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CHUNK_BYTES = 1024 * 1024
# size 24, type ftyp, major brand isom, minor version 0x200, compatible brands isom, iso2
FTYP_BOX = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"


def generated_chunks(size: int, seed: int = 0) -> Iterator[bytes]:
    """`size` bytes in chunks of CHUNK_BYTES (the last one shorter), always the same for the same arguments."""
    block = random.Random(seed).randbytes(CHUNK_BYTES)  # noqa: S311  # test data, reproducible on purpose
    sent = 0
    index = 0
    while sent < size:
        shift = (index * 7919 * 8) % CHUNK_BYTES
        chunk = block[shift:] + block[:shift]
        if index == 0:
            chunk = FTYP_BOX + chunk[len(FTYP_BOX) :]
        chunk = chunk[: size - sent]
        sent += len(chunk)
        index += 1
        yield chunk


def generated_sha256(size: int, seed: int = 0) -> str:
    digest = hashlib.sha256()
    for chunk in generated_chunks(size, seed):
        digest.update(chunk)
    return digest.hexdigest()


def stored_size_and_sha256(s3: "S3Client", bucket: str, key: str) -> tuple[int, str]:
    """The size and SHA-256 of what S3 holds under `key`, read back in a stream (never held whole)."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    digest = hashlib.sha256()
    size = 0
    for chunk in body.iter_chunks(CHUNK_BYTES):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()
