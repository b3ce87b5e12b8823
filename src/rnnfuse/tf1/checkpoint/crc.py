"""CRC-32C (Castagnoli) and the masked form LevelDB and TensorFlow store on disk.

Uses ``google-crc32c`` (a dependency; hardware-accelerated); where its compiled
extension is missing the pure-Python table loop below is used, correct but slow
(about 1 MB/s).
"""

from __future__ import annotations

__all__ = ["crc32c", "masked_crc32c", "mask_crc"]

_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF


def _make_table() -> tuple[int, ...]:
    poly = 0x82F63B78  # Castagnoli, bit-reflected
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def _loop_update(register: int, data: bytes | bytearray | memoryview) -> int:
    """The CRC register after ``data`` (the pure-Python reference, one byte at a time)."""
    table = _TABLE
    for byte in bytes(data):
        register = table[(register ^ byte) & 0xFF] ^ (register >> 8)
    return register


def _python_crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    return _loop_update(crc ^ _U32, data) ^ _U32


try:
    import google_crc32c as _google

    _FAST = _google.implementation == "c"
except ImportError:  # no wheel for this platform
    _FAST = False


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-32C of ``data``, continuing from ``crc`` (the CRC of what came before).

    >>> hex(crc32c(b"123456789")), crc32c(b"56789", crc32c(b"1234")) == crc32c(b"123456789")
    ('0xe3069283', True)
    """
    if not _FAST:
        return _python_crc32c(data, crc)
    return _google.extend(crc, data if isinstance(data, bytes) else bytes(data))


def masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    """The masked CRC32C that LevelDB and TensorFlow store on disk."""
    return mask_crc(crc32c(data))


def mask_crc(crc: int) -> int:
    """LevelDB's mask of a CRC32C value (what is stored on disk)."""
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & _U32
