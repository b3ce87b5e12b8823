"""What an HDF5 file (Keras 2 ``.h5``, Keras 3 ``.weights.h5``) may hold before rnnfuse reads it.

HDF5 can make a reader open other files: an external link names a file and a path in it,
a dataset with external storage (``external=``) keeps its bytes in named raw files, a
virtual dataset maps other files' datasets, and a filter that HDF5 does not build in is
loaded as a plugin from the plugin path.  :func:`check_h5_file` walks the whole file once,
without following anything, and refuses all of these before any data is read, as well as
datasets whose declared size the bytes in the file cannot hold (a chunked dataset that
declares 149 GiB and was never written) and data types that are not plain numbers.
:class:`DatasetReader` then reads each dataset at most once (a file that lists one dataset
many times is refused) within a total bound.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._files import GIB
from ._keras_model import KerasFormatError

MAX_H5_OBJECTS = 100_000  # groups and datasets in one file
MAX_WEIGHT_BYTES = 4 * GIB  # the weights one file may make rnnfuse hold
MAX_FILTER_RATIO = 1100  # deflate inflates at most ~1032 times
_FILTERS = {1: "gzip", 2: "shuffle", 3: "fletcher32", 32000: "lzf"}  # built into HDF5 / h5py
_KINDS = "fiub"  # float, int, unsigned, bool; complex, strings, compounds are refused
_SLACK = 64 * 1024  # small datasets need not be backed byte for byte (fill values of tiny arrays)


def check_h5_file(f: Any, path: str) -> None:
    """Walk every link and object of the open file ``f``; raise :class:`KerasFormatError`
    naming ``path`` and the object for anything that would read elsewhere or cannot fit.

    Every object must be reachable by one link only (Keras writes no others), so that a
    reader that reads what it finds reads each dataset once; the datasets together may
    declare at most :data:`MAX_WEIGHT_BYTES`.
    """
    h5py = _h5py()
    root = f["/"]
    seen: dict[Any, str] = {root.id: "/"}
    pending: list[tuple[str, Any]] = [("/", root)]
    total = 0
    while pending:
        where, group = pending.pop()
        for name in group:
            full = f"{where.rstrip('/')}/{name}"
            _check_link(group.get(name, getlink=True), full, path, h5py)
            obj = group[name]
            if obj.id in seen:
                raise KerasFormatError(
                    f"source: {path!r}: {full!r} is a second link to {seen[obj.id]!r}; "
                    f"an object reached twice is refused (it would be read twice)"
                )
            seen[obj.id] = full
            if len(seen) > MAX_H5_OBJECTS:
                raise KerasFormatError(f"source: {path!r}: more than {MAX_H5_OBJECTS:,} objects")
            if isinstance(obj, h5py.Group):
                pending.append((full, obj))
            elif isinstance(obj, h5py.Dataset):
                total += check_dataset(obj, f"source: {path!r}: dataset {full!r}")
                if total > MAX_WEIGHT_BYTES:
                    raise KerasFormatError(
                        f"source: {path!r}: its datasets declare more than "
                        f"{MAX_WEIGHT_BYTES:,} bytes in all"
                    )


def _check_link(link: Any, full: str, path: str, h5py: Any) -> None:
    if isinstance(link, h5py.ExternalLink):
        raise KerasFormatError(
            f"source: {path!r}: {full!r} is an external link to "
            f"{link.filename!r}; a model file may not name other files"
        )
    if isinstance(link, h5py.SoftLink):
        raise KerasFormatError(
            f"source: {path!r}: {full!r} is a soft link to {link.path!r}; Keras files hold no links"
        )
    if not isinstance(link, h5py.HardLink):
        raise KerasFormatError(f"source: {path!r}: {full!r} is a link of an unknown kind")


def check_dataset(ds: Any, who: str) -> int:
    """The bytes dataset ``ds`` declares, after checking that they lie in this file, in plain
    numbers, backed by what the file stores."""
    if ds.is_virtual:
        raise KerasFormatError(f"{who} is a virtual dataset (it maps other files); refused")
    if ds.external:
        files = [entry[0] for entry in ds.external]
        raise KerasFormatError(f"{who} keeps its data in external files {files}; refused")
    filters = _filter_ids(ds)
    unknown = [i for i in filters if i not in _FILTERS]
    if unknown:
        raise KerasFormatError(
            f"{who} uses HDF5 filters {unknown}, which would load plugins; "
            f"expected only {sorted(_FILTERS.values())}"
        )
    if ds.dtype.kind not in _KINDS or ds.dtype.fields is not None:
        raise KerasFormatError(
            f"{who} has dtype {ds.dtype}; expected real numbers (float, int or bool)"
        )
    return _check_backed(ds, who, bool(filters))


def _check_backed(ds: Any, who: str, filtered: bool) -> int:
    if ds.shape is None:  # an empty dataspace (h5py.Empty)
        return 0
    declared = int(np.prod(ds.shape, dtype=object)) * ds.dtype.itemsize
    if declared > MAX_WEIGHT_BYTES:
        raise KerasFormatError(
            f"{who} declares shape {list(ds.shape)} ({declared:,} bytes), more than "
            f"the {MAX_WEIGHT_BYTES:,} bytes a weight file may hold; refused before allocating"
        )
    stored = ds.id.get_storage_size()
    room = stored * (MAX_FILTER_RATIO if filtered else 1) + _SLACK
    if declared > room:
        raise KerasFormatError(
            f"{who} declares shape {list(ds.shape)} ({declared:,} bytes) but the file "
            f"holds {stored:,} bytes of it; refused before allocating"
        )
    return declared


def _filter_ids(ds: Any) -> list[int]:
    plist = ds.id.get_create_plist()
    return [plist.get_filter(k)[0] for k in range(plist.get_nfilters())]


class DatasetReader:
    """Reads datasets of one file: each at most once, within :data:`MAX_WEIGHT_BYTES` in all."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._read: dict[Any, str] = {}
        self._bytes = 0

    def read(self, ds: Any, name: str) -> np.ndarray:
        """The array of dataset ``ds`` (``name`` for messages), checked before reading."""
        who = f"source: {self.path!r}: dataset {name!r}"
        if ds.id in self._read:
            raise KerasFormatError(
                f"{who} is the same dataset as {self._read[ds.id]!r}; a file that lists "
                f"one dataset twice is refused"
            )
        self._bytes += check_dataset(ds, who)
        if self._bytes > MAX_WEIGHT_BYTES:
            raise KerasFormatError(
                f"source: {self.path!r}: its datasets hold more than "
                f"{MAX_WEIGHT_BYTES:,} bytes in all"
            )
        self._read[ds.id] = name
        return np.asarray(ds[()])


def _h5py() -> Any:
    import h5py

    return h5py
