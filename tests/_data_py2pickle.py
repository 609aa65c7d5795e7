"""Write pickles the way Python 2's cPickle wrote CIFAR's batches (protocol 2, str as BINSTRING).

Python 3 cannot produce these: it pickles bytes through ``_codecs.encode`` at protocol 2 and names
``numpy._core`` instead of the ``numpy.core`` the real files name. Loading the real format needs
``encoding="bytes"`` and an unpickler that knows the old module name, so the tests need the real
opcodes. Supports what the CIFAR files hold: dicts, lists, bytes (Python 2 str), ints, and C-order
uint8 numpy arrays.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np


def _bytes(b: bytes) -> bytes:
    if len(b) < 256:
        return b"U" + bytes([len(b)]) + b  # SHORT_BINSTRING
    return b"T" + struct.pack("<i", len(b)) + b  # BINSTRING


def _int(i: int) -> bytes:
    return b"J" + struct.pack("<i", i)  # BININT


def _array(a: np.ndarray) -> bytes:
    assert a.dtype == np.uint8
    a = np.ascontiguousarray(a)
    shape = b"(" + b"".join(_int(d) for d in a.shape) + b"t"
    dtype = b"cnumpy\ndtype\n" + _bytes(b"u1") + b"\x89\x88\x87R"  # dtype('u1', False, True)
    dtype_state = b"(" + _int(3) + _bytes(b"|") + b"NNN" + _int(-1) + _int(-1) + _int(0) + b"tb"
    return (
        b"cnumpy.core.multiarray\n_reconstruct\n"
        + b"cnumpy\nndarray\n"
        + _int(0)
        + b"\x85"
        + _bytes(b"b")
        + b"\x87R"  # _reconstruct(ndarray, (0,), 'b')
        + b"("
        + _int(1)
        + shape
        + dtype
        + dtype_state
        + b"\x89"
        + _bytes(a.tobytes())
        + b"tb"  # __setstate__
    )


def _value(v: Any) -> bytes:
    if isinstance(v, np.ndarray):
        return _array(v)
    if isinstance(v, bytes):
        return _bytes(v)
    if isinstance(v, bool) or not isinstance(v, (int, list, dict)):
        raise TypeError(f"unsupported in a py2 pickle here: {type(v).__name__}")
    if isinstance(v, int):
        return _int(v)
    if isinstance(v, list):
        return b"]" + (b"(" + b"".join(_value(x) for x in v) + b"e" if v else b"")
    return b"}" + (b"(" + b"".join(_value(k) + _value(x) for k, x in v.items()) + b"u" if v else b"")


def dumps_py2(obj: Any) -> bytes:
    """`obj` pickled as Python 2 cPickle (protocol 2) with numpy 1.x would have pickled it."""
    return b"\x80\x02" + _value(obj) + b"."
