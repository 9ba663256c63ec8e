"""Staged bytes written and read back past the page cache (``O_DIRECT``), where allowed.

Why the station's large copies do this:

* **The read-back checks the disk, not memory.** Read through the page cache, the
  read-back after each flush sees the kernel's cached copy of what was just written;
  read with ``O_DIRECT`` it sees what the device returns.
* **The copy does not allocate a page of cache per 4 KiB written.** Nobody reads a staged
  recording again soon (the store takes it by link), so caching it only evicts pages
  that are needed. On a virtual machine whose freed memory is handed back to the host
  (free page reporting), every newly allocated page also costs a fault in the host:
  measured on the 2-core development machine, 1 GiB written with ``dd conv=fsync`` took
  3.0–3.6 s of system time through the page cache and 0.1 s with ``oflag=direct``.

``O_DIRECT`` needs the buffer's address, the file offset and the length aligned to the
device's logical block; :data:`ALIGN` (4096) covers 512- and 4096-byte devices. What is
not aligned (the end of a file, a short read from the recorder) goes through the
ordinary descriptor, at its offset. A filesystem that refuses ``O_DIRECT`` (``EINVAL``
at the open or at the first write or read) gets the ordinary path for the rest of the
file: the same bytes, fsynced the same way, only through the cache.
"""

from __future__ import annotations

import errno
import mmap
import os
import threading
from collections.abc import Iterable
from pathlib import Path

ALIGN = 4096

# Tests switch this off to run the ordinary (page cache) path on the same filesystem.
ENABLED = True


def aligned_buffer(size: int) -> mmap.mmap:
    """A writable buffer of ``size`` bytes at a page boundary (anonymous memory)."""
    return mmap.mmap(-1, size)


class BufferPool:
    """Page-aligned buffers kept for the next file once a copy is done with them.

    A fresh buffer is fresh memory: the kernel faults in (and zeroes) each of its pages
    on first use, and on a virtual machine that hands freed memory back to the host the
    host faults too (about 3 ms of system time per MB on the development machine). The
    copies of one docking use the same few sizes, so keeping up to ``keep_bytes`` of them
    makes that a cost per station rather than per file.
    """

    def __init__(self, keep_bytes: int) -> None:
        self.keep_bytes = keep_bytes
        self._free: dict[int, list[mmap.mmap]] = {}
        self._kept = 0
        self._lock = threading.Lock()

    def take(self, size: int) -> mmap.mmap:
        with self._lock:
            free = self._free.get(size)
            if free:
                self._kept -= size
                return free.pop()
        return aligned_buffer(size)

    def give(self, buffers: Iterable[mmap.mmap]) -> None:
        """Keep ``buffers`` for later takers; the caller must hold no view of them and no
        other thread may still read or write them."""
        with self._lock:
            for buf in buffers:
                if self._kept + len(buf) <= self.keep_bytes:
                    self._free.setdefault(len(buf), []).append(buf)
                    self._kept += len(buf)


# The station's copies (16 at once by default) each hold a ring of three or so 4 MiB
# chunks and a 1 MiB read-back buffer: 256 MiB covers that with room to spare.
BUFFERS = BufferPool(keep_bytes=256 << 20)


def open_direct(path: str | Path, flags: int) -> int | None:
    """``path`` opened with ``flags | O_DIRECT``, or None where it cannot be: no direct
    I/O on the filesystem or platform (EINVAL), or any other refusal (out of
    descriptors, say). The direct descriptor only spares the page cache; the caller's
    ordinary descriptor does the same work, and meets any error that is really the
    file's."""
    if not ENABLED or not hasattr(os, "O_DIRECT"):
        return None
    try:
        return os.open(path, flags | os.O_DIRECT)
    except OSError:
        return None


def pwrite_all(fd: int, buf: memoryview, offset: int) -> None:
    while buf:
        n = os.pwrite(fd, buf, offset)
        buf = buf[n:]
        offset += n


class DirectWriter:
    """Writes a file's bytes at the offsets given: the aligned part of each piece through
    an ``O_DIRECT`` descriptor of its own, the rest through ``out`` (the copy's ordinary
    descriptor, which the caller fsyncs and closes)."""

    def __init__(self, path: str | Path, out: int) -> None:
        self.out = out
        self.direct = open_direct(path, os.O_WRONLY)

    def write_at(self, buf: memoryview, offset: int) -> None:
        head = 0
        if self.direct is not None and offset % ALIGN == 0:
            head = len(buf) - len(buf) % ALIGN
            if head:
                try:
                    pwrite_all(self.direct, buf[:head], offset)
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    # Refused after all (an alignment this device wants larger, a buffer
                    # not ours to align): the ordinary path rewrites the piece.
                    self.close()
                    head = 0
        if head < len(buf):
            pwrite_all(self.out, buf[head:], offset + head)

    def close(self) -> None:
        if self.direct is not None:
            os.close(self.direct)
            self.direct = None


class DirectReader:
    """Reads a file back past the page cache in pieces of at most ``piece`` bytes, or
    through ``fallback`` (an ordinary descriptor of the same file) where that is refused.

    One reader serves one thread at a time: :meth:`read` returns a view of the reader's
    own buffer, valid until the next call.
    """

    def __init__(self, path: str | Path, fallback: int, piece: int) -> None:
        self.fallback = fallback
        self.fd = open_direct(path, os.O_RDONLY)
        self.buf: mmap.mmap | None = None
        if self.fd is not None:
            # An unaligned request widens to the blocks around it: room for one more at
            # each end.
            try:
                self.buf = BUFFERS.take(piece + 2 * ALIGN)
            except BaseException:
                self.close()
                raise

    def read(self, offset: int, n: int) -> bytes | memoryview:
        """Up to ``n`` bytes at ``offset``; fewer only at the end of the file."""
        if self.fd is not None and self.buf is not None:
            start = offset - offset % ALIGN
            end = offset + n
            want = -(-(end - start) // ALIGN) * ALIGN
            try:
                got = os.preadv(self.fd, [memoryview(self.buf)[:want]], start)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self.close()
            else:
                lo = offset - start
                return memoryview(self.buf)[lo : max(lo, min(got, end - start))]
        return os.pread(self.fallback, n, offset)

    def close(self, *, reuse: bool = False) -> None:
        """Close the descriptor; with ``reuse``, give the buffer to the next file (only
        when no read is under way and no returned view is still used)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if reuse and self.buf is not None:
            BUFFERS.give([self.buf])
        self.buf = None
