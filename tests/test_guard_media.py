"""What the media store accepts: ciphertext and small plain pictures, nothing in clear.

Pure tests of `bridge.guard.media` and `bridge.guard.images` with real samples: AES-CTR
ciphertext made like Element's attachments (the `cryptography` package), pictures saved
by Pillow (the library Synapse makes thumbnails with), and files in clear of every kind,
polyglots included.
"""

from __future__ import annotations

import base64
import gzip
import io
import os
import struct
import zipfile
import zlib

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from PIL import Image, PngImagePlugin

from bridge.guard import media
from bridge.guard.identifiers import nir_key

NIR = "1850578006084" + f"{nir_key('1850578006084'):02d}"
CHINESE = "病人张三艾滋病毒阳性病毒载量检测不到"
REPORT = (
    "Compte rendu de consultation. Mme X, née le 12/03/1979, NIR " + NIR + ". Sérologie VIH "
    "positive, charge virale indétectable sous traitement. À revoir dans trois mois.\n"
).encode()


def aes_ctr(plain: bytes) -> bytes:
    """An attachment as Element encrypts it: AES-256-CTR, random key and IV."""
    encryptor = Cipher(algorithms.AES(os.urandom(32)), modes.CTR(os.urandom(16))).encryptor()
    return encryptor.update(plain) + encryptor.finalize()


def picture(fmt: str, size: tuple[int, int] = (64, 64), **options: object) -> bytes:
    image = Image.new("RGB", size)
    image.putdata([(x % 251, (x * 7) % 253, (x * 13) % 255) for x in range(size[0] * size[1])])
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def exif(tags: dict[int, str]) -> bytes:
    data = Image.Exif()
    data.update(tags)
    return data.tobytes()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def zipped(name: str, content: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, content)
    return out.getvalue()


PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n" + REPORT + b"%%EOF\n"


@pytest.mark.parametrize(
    "size", [17, 24, 32, 100, 255, 256, 257, 1000, 4095, 4096, 4097, 12_289, 300_000]
)
def test_element_style_encrypted_attachments_are_accepted(size: int) -> None:
    assert media.judge(aes_ctr(os.urandom(size))) is None
    assert media.judge(aes_ctr((REPORT * (size // len(REPORT) + 1))[:size])) is None


def test_encrypted_documents_are_accepted_whatever_they_hide() -> None:
    for plain in (PDF, zipped("cr.docx", REPORT * 50), gzip.compress(REPORT * 20), b""):
        assert media.judge(aes_ctr(plain)) is None


def test_random_bytes_are_refused_at_the_stated_rate_only() -> None:
    """Thousands of random files of every size from 18 bytes: none refused."""
    sizes = [*range(18, 300), 511, 512, 1023, 2048, 8191, 8193]
    refused = [n for n in sizes for _ in range(20) if media.judge(os.urandom(n)) is not None]
    assert refused == []


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("French text", REPORT * 3),
        ("a NIR alone", NIR.encode()),
        ("a NIR and a line break", NIR.encode() + b"\n"),
        ("four letters", b"VIH+"),
        ("base64 of text", base64.b64encode(REPORT * 3)),
        ("base64 of random", base64.b64encode(os.urandom(3000))),
        ("hex of random", os.urandom(3000).hex().encode()),
        ("UTF-16 LE text", (REPORT.decode() * 3).encode("utf-16-le")),
        ("UTF-16 with BOM", (REPORT.decode() * 3).encode("utf-16")),
        ("short UTF-16", "Mme X VIH+".encode("utf-16-le")),
        ("Cyrillic UTF-8", ("Пациентка Иванова, ВИЧ положительный. " * 4).encode()),
        ("Chinese UTF-8", (CHINESE * 3).encode()),
        ("Chinese UTF-16 at length", (CHINESE * 400).encode("utf-16-le")),
        ("HTML", b"<!DOCTYPE html><html><body><p>" + REPORT + b"</p></body></html>"),
        ("JSON", b'{"resourceType": "Patient", "name": "' + REPORT + b'"}'),
        ("PDF", PDF),
        ("PDF after junk", os.urandom(200) + PDF),
        ("DOCX (ZIP)", zipped("word/document.xml", REPORT * 20)),
        ("ZIP after random bytes", os.urandom(5000) + zipped("a.txt", REPORT * 20)),
        ("gzip of text", gzip.compress(REPORT * 50)),
        ("RTF", b"{\\rtf1\\ansi " + REPORT + b"}"),
        ("TIFF scan", picture("TIFF")),
        ("BMP", picture("BMP")),
        ("text in the middle of random", os.urandom(40_000) + REPORT * 4 + os.urandom(40_000)),
        ("text after random", os.urandom(100_000) + REPORT * 3),
        ("DICOM", bytes(128) + b"DICM" + os.urandom(4000)),
        ("HEIC", b"\x00\x00\x00\x18ftypheic" + os.urandom(4000)),
    ],
)
def test_files_in_clear_are_refused(name: str, data: bytes) -> None:
    assert media.judge(data) is not None, name


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("PNG", {}),
        ("PNG", {"optimize": True}),
        ("JPEG", {"quality": 80}),  # Synapse's own thumbnails
        ("JPEG", {"progressive": True}),
        ("JPEG", {"exif": exif({0x010F: "Fairphone", 0x0110: "FP5"})}),
        ("GIF", {}),
        ("WEBP", {}),
        ("WEBP", {"lossless": True}),
    ],
)
def test_plain_pictures_for_avatars_are_accepted(fmt: str, options: dict[str, object]) -> None:
    assert media.judge(picture(fmt, **options)) is None


def test_the_samples_built_by_hand_are_well_formed() -> None:
    """The refused samples below differ from these accepted ones by their payload only."""
    assert media.judge(_gif_with_extension(0xF9, b"\x04\x00\x00\x00")) is None
    assert media.judge(_gif_with_extension(0xFF, b"NETSCAPE2.0", b"\x01\x00\x00")) is None
    assert media.judge(_jpeg_with_segment(0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x01")) is None


def _png_with_text() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", REPORT.decode())
    return picture("PNG", pnginfo=info)


def _png_with_private_chunk() -> bytes:
    png = picture("PNG")
    return png[:33] + png_chunk(b"prVt", REPORT) + png[33:]


def _gif_with_extension(label: int, *parts: bytes) -> bytes:
    gif = picture("GIF")
    at = 13 + (3 << ((gif[10] & 7) + 1) if gif[10] & 0x80 else 0)
    blocks = b"".join(bytes([len(part)]) + part for part in parts)
    return gif[:at] + bytes([0x21, label]) + blocks + b"\x00" + gif[at:]


def _jpeg_with_segment(marker: int, body: bytes) -> bytes:
    jpeg = picture("JPEG")
    return jpeg[:2] + bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("GIF with a plain-text extension", _gif_with_extension(0x01, REPORT[:255])),
        (
            "GIF with an XMP application block",
            _gif_with_extension(0xFF, b"XMP DataXMP", REPORT[:255]),
        ),
        ("JPEG with IPTC (APP13)", _jpeg_with_segment(0xED, b"Photoshop 3.0\x00" + REPORT)),
        ("PNG with eXIf", picture("PNG", exif=exif({0x010F: "x"}))),
        ("PNG with a tEXt chunk", _png_with_text()),
        ("PNG with a private chunk", _png_with_private_chunk()),
        ("PNG with text after IEND", picture("PNG") + REPORT),
        ("PNG with a wrong CRC", picture("PNG")[:-1] + b"\x00"),
        ("text behind a PNG signature", b"\x89PNG\r\n\x1a\n" + REPORT * 3),
        ("JPEG with a comment", picture("JPEG", comment=REPORT)),
        ("JPEG with text after its end", picture("JPEG") + REPORT),
        ("JPEG with an EXIF description", picture("JPEG", exif=exif({0x010E: "Mme X"}))),
        ("JPEG with an EXIF user comment", picture("JPEG", exif=exif({0x9286: "x"}))),
        ("JPEG with long EXIF text", picture("JPEG", exif=exif({0x010F: "M" * 200}))),
        ("JPEG with XMP", picture("JPEG", xmp=b"<x:xmpmeta>" + REPORT + b"</x:xmpmeta>")),
        ("text behind a JPEG signature", b"\xff\xd8\xff\xe0" + REPORT * 3),
        ("GIF with a comment", picture("GIF", comment=REPORT)),
        ("GIF with text after its end", picture("GIF") + REPORT),
        ("WebP with EXIF", picture("WEBP", exif=exif({0x010F: "x"}))),
        ("WebP with XMP", picture("WEBP", xmp=b"<x:xmpmeta>" + REPORT + b"</x:xmpmeta>")),
        ("a picture over 1 MiB", picture("PNG", (800, 800), compress_level=0)),
    ],
)
def test_pictures_that_carry_more_than_pixels_are_refused(name: str, data: bytes) -> None:
    assert media.judge(data) is not None, name


def test_thresholds_stay_far_from_what_random_bytes_reach() -> None:
    """Entropy limits sit below the mean of random bytes by the stated margin only."""
    for size in (256, 1024, media.WINDOW):
        limit = media.entropy_limit(size, 1e-12)
        assert media.expected_entropy(size) - 1.0 < limit < media.expected_entropy(size)
    full = media.text_limit(media.WINDOW, 1e-12)
    assert 0.39 * media.WINDOW < full < 0.46 * media.WINDOW
