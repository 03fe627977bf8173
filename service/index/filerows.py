"""Rows of a generation's big, cold arrays, read with `pread` instead of memory-mapped.

A request reads a few hundred rows of `profile.npy` (the candidates' profile vectors) and a few
hundred CSR ranges of `partner_rows.npy` (the partner-network walk): well under 1 MiB. Through a
memory map they cost far more: the page cache holds these files in large folios (up to 2 MiB
on ext4 with large folios, Linux 6.x) and a fault maps the whole folio into the process, so
every scattered row costs up to 2 MiB of resident memory (measured: one profile row 2.0 MiB,
200 rows 88 MiB of the 94 MiB file; `madvise` RANDOM or NOHUGEPAGE change nothing). After a
few matches the worker had all of both files resident (BENCHMARKS.md: 1.3 GiB of the 3.6 GiB
PSS of the matching worker at 1,000,000 chunks).

`FileRows` reads just the bytes asked for, one `pread` per run of nearby rows, into an array
the caller owns: nothing of the file is mapped, and with `POSIX_FADV_RANDOM` the page cache
is not filled ahead either. The hot, small arrays of the read model stay memory-mapped (a
request reads them whole, and every worker shares their pages); so does the chunk index,
which FAISS reads in place.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

MERGE_GAP = 16 * 1024
"""Rows at most this many bytes apart are read in one `pread` (the bytes between included):
one system call costs about what copying 16 KiB does."""

MAPPED_ROWS = 4096
"""Beyond this many rows (the exact profile scan of a filter that admits up to 20,000 actors)
one `pread` per run costs more than a gather from a memory map: such a read maps the file for
the call only and unmaps it after, so what it paged in does not stay resident."""

Ints = npt.NDArray[np.int64]


class FileRows:
    """The rows of a C-ordered `.npy` file (items, for a 1-D one), indexed like the array:
    `rows[int_array]`, `rows[a:b]`, `rows[i]`. Only what is indexed is read."""

    def __init__(self, path: Path) -> None:
        with path.open("rb") as handle:
            version = np.lib.format.read_magic(handle)
            shape, fortran, dtype = (
                np.lib.format.read_array_header_1_0(handle)
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0(handle)
            )
            self._offset = handle.tell()
        if fortran or dtype.hasobject:
            raise ValueError(f"{path}: only C-ordered plain arrays are read by rows")
        self.path = path
        self.shape: tuple[int, ...] = tuple(shape)
        self.dtype = np.dtype(dtype)
        self._row_shape = self.shape[1:]
        self._row_bytes = self.dtype.itemsize * math.prod(self._row_shape)
        self._fd = os.open(path, os.O_RDONLY)
        if hasattr(os, "posix_fadvise"):  # no readahead: the reads are scattered
            os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_RANDOM)
        self.reads = 0
        """`pread` calls made (tests count them)."""
        self.bytes_read = 0

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 0

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> npt.NDArray[Any]:
        """The whole array (a full read: for tools and tests, not for requests)."""
        whole = self.take(np.arange(len(self), dtype=np.int64))
        return whole if dtype is None else whole.astype(dtype)

    def tolist(self) -> list[Any]:
        return np.asarray(self).tolist()  # type: ignore[no-any-return]

    def __getitem__(self, index: Any) -> npt.NDArray[Any]:
        if isinstance(index, slice):
            first, stop, step = index.indices(len(self))
            if step == 1:  # a CSR range: one read
                return self._range(first, max(first, stop))
            return self.take(np.arange(first, stop, step, dtype=np.int64))
        if isinstance(index, int | np.integer):
            row = int(index) + (len(self) if int(index) < 0 else 0)
            return self.take(np.array([row], dtype=np.int64))[0]  # type: ignore[no-any-return]
        return self.take(np.asarray(index, dtype=np.int64).reshape(-1))

    def take(self, rows: Ints) -> npt.NDArray[Any]:
        """Rows `rows` (any order, repeats allowed), as a new array in that order."""
        out = np.empty((len(rows), *self._row_shape), dtype=self.dtype)
        if not len(rows):
            return out
        if int(rows.min()) < 0 or int(rows.max()) >= len(self):
            raise IndexError(f"row out of range for {self.path.name} of {len(self)} rows")
        if len(rows) > MAPPED_ROWS:
            return self._take_mapped(rows, out)
        wanted = np.unique(rows)
        # Runs of rows whose gaps are small are read as one block, the gaps included.
        gap = MERGE_GAP // self._row_bytes
        cut = np.flatnonzero(wanted[1:] - wanted[:-1] > gap + 1) + 1
        first = np.concatenate(([0], cut))
        last = np.concatenate((cut, [len(wanted)])) - 1
        at = np.zeros(len(first) + 1, dtype=np.int64)
        at[1:] = np.cumsum(wanted[last] + 1 - wanted[first])
        read = self._read_blocks(wanted[first], at)
        block_of = np.repeat(np.arange(len(first)), last - first + 1)
        where = at[:-1][block_of] + (wanted - wanted[first][block_of])
        out[...] = read[where[np.searchsorted(wanted, rows)]]
        return out

    def spans(self, starts: Ints, ends: Ints) -> npt.NDArray[Any]:
        """Items `starts[i]:ends[i]` of a 1-D file, concatenated in the order given (the CSR
        ranges of a frontier): one `pread` per run of nearby ranges."""
        lengths = ends - starts
        out = np.empty(int(lengths.sum()), dtype=self.dtype)
        if not len(out):
            return out
        if int(starts.min()) < 0 or int(ends.max()) > len(self):
            raise IndexError(f"range out of range for {self.path.name} of {len(self)} items")
        order = np.argsort(starts, kind="stable")
        begin, end = starts[order], ends[order]
        reach = np.maximum.accumulate(end)
        gap = MERGE_GAP // self.dtype.itemsize
        cut = np.flatnonzero(begin[1:] > reach[:-1] + gap) + 1
        first = np.concatenate(([0], cut))
        after = np.concatenate((cut, [len(begin)]))
        block_begin, block_end = begin[first], reach[after - 1]
        at = np.zeros(len(first) + 1, dtype=np.int64)
        at[1:] = np.cumsum(block_end - block_begin)
        read = self._read_blocks(block_begin, at)
        # Each range's place in the buffer, back in the order given, then its items.
        block_of = np.repeat(np.arange(len(first)), after - first)
        place = np.empty(len(starts), dtype=np.int64)
        place[order] = at[:-1][block_of] + (begin - block_begin[block_of])
        offsets = np.repeat(place - np.cumsum(lengths) + lengths, lengths)
        out[...] = read[offsets + np.arange(len(out))]
        return out

    def _range(self, first: int, stop: int) -> npt.NDArray[Any]:
        out = np.empty((stop - first, *self._row_shape), dtype=self.dtype)
        if len(out):
            self._read_into(out.data.cast("B"), self._offset + first * self._row_bytes)
            self.reads += 1
            self.bytes_read += out.nbytes
        return out

    def _read_blocks(self, block_begin: Ints, at: Ints) -> npt.NDArray[Any]:
        """Rows `block_begin[i]` on, `at[i + 1] - at[i]` of them, read into one buffer."""
        size = self._row_bytes
        buffer = bytearray(int(at[-1]) * size)
        view = memoryview(buffer)
        fd, read = self._fd, os.preadv
        begins, ends = (at[:-1] * size).tolist(), (at[1:] * size).tolist()
        offsets = (self._offset + block_begin * size).tolist()
        for start, end, offset in zip(begins, ends, offsets, strict=True):
            if read(fd, [view[start:end]], offset) != end - start:  # a short read: go on
                self._read_into(view[start:end], offset)
        self.reads += len(block_begin)
        self.bytes_read += len(buffer)
        return np.frombuffer(buffer, dtype=self.dtype).reshape((-1, *self._row_shape))

    def _take_mapped(self, rows: Ints, out: npt.NDArray[Any]) -> npt.NDArray[Any]:
        mapped = np.memmap(self.path, self.dtype, "r", self._offset, self.shape)
        try:
            out[...] = mapped[rows]
            self.bytes_read += len(rows) * self._row_bytes
        finally:
            mapped._mmap.close()  # type: ignore[attr-defined]  # unmapped now, not at collection
        return out

    def _read_into(self, target: memoryview, offset: int) -> None:
        done = 0
        while done < len(target):
            got = os.preadv(self._fd, [target[done:]], offset + done)
            if got <= 0:
                raise OSError(f"{self.path}: short read at byte {offset + done}")
            done += got
