"""File plumbing shared by the readers and writers: compression by content, fast number parsing,
temporary copies for pymatgen, token counting, atomic outputs and error locations.

Compression is recognised from the first bytes of a file (gzip, bzip2, xz), never from its name,
so ``CHGCAR.gz`` that is really plain text, or a gzipped ``foo.dat``, both read correctly.
"""

from __future__ import annotations

import bz2
import contextlib
import dataclasses
import gzip
import io
import lzma
import os
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

import numpy as np

from rhoprop.errors import DensityFormatError

_ParseDoubles = Callable[[IO[bytes], np.ndarray, int], int]
_parse_n_doubles: _ParseDoubles | None
try:  # pymatgen's C parser (what VolumetricData.parse_file uses); about 10x faster than numpy
    from pymatgen.optimization.fast_parser import parse_n_doubles as _parse_n_doubles
except ImportError:  # pragma: no cover - older pymatgen without the compiled parser
    _parse_n_doubles = None

HEAD_BYTES = 65536
CHUNK_BYTES = 1 << 20
_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"))
_OPENERS: dict[str, Callable[..., IO[Any]]] = {
    "gzip": gzip.open,
    "bzip2": bz2.open,
    "xz": lzma.open,
}
_SUFFIX_COMPRESSION = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz", ".lzma": "xz"}
# Extensions on which pymatgen's zopen decides to decompress (it goes by the name only).
ZOPEN_COMPRESSED_SUFFIXES = frozenset({".gz", ".bz2", ".xz", ".lzma", ".z"})
_DECOMPRESSION_ERRORS = (EOFError, OSError, lzma.LZMAError, gzip.BadGzipFile, zlib.error)


@dataclasses.dataclass(frozen=True)
class Source:
    """A density file on disk: its path, compression (from content) and first decompressed bytes."""

    path: Path
    compression: str | None
    head: bytes

    def open(self) -> BinaryIO:
        """Open a fresh binary stream of the decompressed content, positioned at the start."""
        if self.compression is None:
            return open(self.path, "rb")
        return cast(BinaryIO, _OPENERS[self.compression](self.path, "rb"))

    def read_all(self) -> bytes:
        """Return the whole decompressed content (used on error paths and for small files)."""
        with self.open() as fh, decompression_errors(self):
            return fh.read()

    def __str__(self) -> str:
        return str(self.path)


@contextlib.contextmanager
def decompression_errors(source: Source) -> Iterator[None]:
    """Turn errors of a corrupt or truncated compressed stream into a :class:`DensityFormatError`.

    Operating-system errors (those with an errno: disk full, permission, I/O) pass through
    unchanged: they are not a problem of the file's content.
    """
    try:
        yield
    except _DECOMPRESSION_ERRORS as exc:
        if source.compression is None or (isinstance(exc, OSError) and exc.errno is not None):
            raise
        raise DensityFormatError(
            f"{source.path} is {source.compression}-compressed but its compressed stream is "
            f"corrupt or truncated ({exc}); re-copy or re-compress the file"
        ) from exc


def open_source(path: str | os.PathLike[str]) -> Source:
    """Check that ``path`` is a readable, non-empty file and sniff its compression and first
    bytes."""
    path = Path(path)
    if not path.exists():
        if path.is_symlink():
            raise DensityFormatError(
                f"density file {path} is a broken symbolic link (to {os.readlink(path)}, which "
                "does not exist)"
            )
        raise DensityFormatError(f"density file {path} does not exist")
    if path.is_dir():
        raise DensityFormatError(f"{path} is a directory; pass the path of a density file")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except OSError as exc:
        raise DensityFormatError(f"cannot read density file {path}: {exc}") from exc
    if not magic:
        raise DensityFormatError(f"density file {path} is empty (0 bytes)")
    compression = next((name for sig, name in _MAGIC if magic.startswith(sig)), None)
    source = Source(path, compression, b"")
    with source.open() as fh, decompression_errors(source):
        head = fh.read(HEAD_BYTES)
    if not head.strip():
        what = "empty after decompression" if compression else "blank (only whitespace)"
        raise DensityFormatError(f"density file {path} is {what}")
    return Source(path, compression, head)


def compression_for_name(path: str | os.PathLike[str]) -> str | None:
    """The compression a writer applies to ``path``, from its last suffix (.gz, .bz2, .xz)."""
    return _SUFFIX_COMPRESSION.get(Path(path).suffix.lower())


def parse_doubles(fh: BinaryIO, n: int) -> tuple[np.ndarray, int]:
    """Parse up to ``n`` whitespace-separated numbers from a seekable binary stream.

    Returns the array (length ``n``) and how many values were parsed; parsing stops at the first
    token that is not a number and leaves the stream right after the last parsed value.
    """
    out = np.empty(n, dtype=np.float64)
    if _parse_n_doubles is not None:
        return out, int(_parse_n_doubles(fh, out, n))
    return out, parse_doubles_numpy(fh, out, n)


def parse_doubles_numpy(fh: BinaryIO, out: np.ndarray, n: int) -> int:
    """Slower stand-in for pymatgen's compiled parser (pymatgen < 2026.5): same contract."""
    start = fh.tell()
    text = fh.read()
    parts = text.split(maxsplit=n)
    values = parts[:n]
    try:
        out[: len(values)] = np.array(values, dtype=np.float64)
        got = len(values)
    except ValueError:
        got = 0
        while got < len(values):
            try:
                out[got] = float(values[got])
            except ValueError:
                break
            got += 1
    remainder = text.split(maxsplit=got)
    rest = remainder[got] if got < len(remainder) else b""
    fh.seek(start + len(text) - len(rest))
    return got


def count_tokens(chunks: Iterator[bytes]) -> int:
    """Count whitespace-separated tokens in a stream of byte chunks (compiled, ~0.3 ms per MB)."""
    from rhoprop.io._kernels import count_tokens_in

    total = 0
    after_space = True
    for chunk in chunks:
        if chunk:
            n, after_space = count_tokens_in(np.frombuffer(chunk, dtype=np.uint8), after_space)
            total += n
    return total


def count_tokens_and_digest(fh: BinaryIO, start: int, digest: str) -> tuple[int, str]:
    """Tokens after byte ``start`` of a plain binary file and the content hash ``digest`` (see
    :mod:`rhoprop.io.digest`) of all its bytes, read once.

    The digest describes exactly the bytes that were counted (and then parsed from the page cache),
    so a caller recording provenance needs no second pass over the file.
    """
    from rhoprop.io.digest import new_digest

    fh.seek(0)
    hasher = new_digest(digest)
    hasher.update(fh.read(start))
    n_tokens = count_tokens(tee(iter_chunks(fh), hasher.update))
    return n_tokens, str(hasher.hexdigest())


def tee(chunks: Iterator[bytes], sink: Callable[[bytes], object]) -> Iterator[bytes]:
    """Yield ``chunks`` unchanged while passing each one to ``sink`` (a file's ``write``, a hash's
    ``update``)."""
    for chunk in chunks:
        sink(chunk)
        yield chunk


def iter_chunks(fh: IO[bytes], size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Yield the rest of ``fh`` in chunks of ``size`` bytes."""
    while chunk := fh.read(size):
        yield chunk


@contextlib.contextmanager
def scratch_file() -> Iterator[tuple[BinaryIO, str]]:
    """A writable temporary file and its path (for pymatgen, which opens files by name); removed
    after.

    Uses the system temporary folder (``TMPDIR``); short-lived, so it usually never leaves the page
    cache.
    """
    tmp = tempfile.NamedTemporaryFile(prefix="rhoprop-", suffix=".vasp", delete=False)  # noqa: SIM115
    try:
        yield tmp, tmp.name  # type: ignore[misc]
    finally:
        tmp.close()
        Path(tmp.name).unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); on success fsync it and move it over
    ``path``.

    Readers of ``path`` see either the old file or the complete new one, never a partial write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def open_for_writing(path: str | os.PathLike[str], compression: str | None) -> IO[str]:
    """Open ``path`` for writing text, compressed with ``compression`` (None, gzip, bzip2, xz)."""
    if compression is None:
        return open(path, "w", encoding="utf-8", newline="\n")
    return cast(IO[str], _OPENERS[compression](path, "wt", encoding="utf-8", newline="\n"))


def text_lines(data: bytes) -> list[str]:
    """Split decoded bytes into lines (latin-1, so any byte decodes)."""
    return data.decode("latin-1").splitlines()


def first_bad_value(
    lines: list[str], start: int, stop_prefixes: tuple[str, ...] = ()
) -> tuple[int, str] | None:
    """Find the first token from line index ``start`` on that is not a finite number.

    Scanning stops (returning None) at a line starting with one of ``stop_prefixes``. Returns the
    1-based line number and the offending token, or None when every value is a finite number.
    """
    for index in range(start, len(lines)):
        stripped = lines[index].strip()
        if stop_prefixes and stripped.upper().startswith(stop_prefixes):
            return None
        for token in stripped.split():
            try:
                value = float(token)
            except ValueError:
                return index + 1, token
            if not np.isfinite(value):
                return index + 1, token
    return None


def describe_line(lines: list[str], lineno: int) -> str:
    """``line N ('text')`` for error messages (text shortened to 60 characters)."""
    text = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
    if len(text) > 60:
        text = text[:57] + "..."
    return f"line {lineno} ({text!r})"


def as_bytes_stream(fh: BinaryIO, source: Source) -> BinaryIO:
    """Return a cheaply seekable stream for the rest of ``fh``.

    Plain files are returned as they are; compressed streams are read into memory, because backward
    seeks in a decompressing stream restart the decompression from the beginning.
    """
    if source.compression is None:
        return fh
    with decompression_errors(source):
        return io.BytesIO(fh.read())
