# Buffer arguments for the thin ``def`` wrappers of the kernels.
#
# A wrapper needs a C pointer and an item count from whatever the caller passed:
# a numpy array (the common case on the hot path), bytes, bytearray,
# memoryview or array.array.  ``get_view`` fills a Py_buffer either way:
#
# - exact numpy arrays take a fast path that reads the array fields directly
#   (no buffer export: measured at about half the per-call cost of
#   PyObject_GetBuffer, which in turn is about half that of a typed memoryview);
#   ``view.obj`` stays NULL, so there is nothing to release;
# - everything else goes through PyObject_GetBuffer and is validated here, so
#   every wrong argument gets one of the exact messages below.
#
# Either way the caller must ``PyBuffer_Release(&view)`` (a no-op for the fast
# path) once done, in a ``finally``.  The wrappers keep the GIL throughout, so a
# borrowed numpy array cannot be resized under us.
#
# Messages (``what`` is the argument name, ``desc`` "int16 samples" or "bytes"):
#   TypeError   "{what} must be a buffer of {desc}, not {type}"
#   TypeError   "{what} must hold {desc}, got format {format!r}"
#   TypeError   "{what} is read-only"
#   ValueError  "{what} must be one-dimensional, got {ndim} dimensions"
#   ValueError  "{what} must be C-contiguous"

from cpython.buffer cimport (
    PyBUF_RECORDS_RO,
    PyBuffer_IsContiguous,
    PyBuffer_Release,
    PyObject_CheckBuffer,
    PyObject_GetBuffer,
)

cimport numpy as cnp

cdef extern from *:
    """
    #if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    #define PBX_HOST_BIG_ENDIAN 1
    #else
    #define PBX_HOST_BIG_ENDIAN 0
    #endif
    #define pbx_view_clear(view) ((view)->obj = NULL)
    """
    const bint PBX_HOST_BIG_ENDIAN
    void pbx_view_clear(Py_buffer* view) noexcept nogil   # the "nothing to release" state


cdef enum ItemKind:
    ITEM_INT16 = 0    # native-order int16 samples
    ITEM_BYTE = 1     # any 1-byte items (uint8, int8, char)


cdef inline str _describe(ItemKind kind):
    return "int16 samples" if kind == ITEM_INT16 else "bytes"


cdef inline bint _format_ok(const char* fmt, ItemKind kind) noexcept:
    """True when a PEP 3118 format string names the item kind in native order."""
    if fmt == NULL:                       # NULL means unsigned bytes
        return kind == ITEM_BYTE
    cdef char order = fmt[0]
    if order == b'@' or order == b'=' or (order == b'<' and not PBX_HOST_BIG_ENDIAN) \
            or (order == b'>' and PBX_HOST_BIG_ENDIAN) or (order == b'!' and PBX_HOST_BIG_ENDIAN):
        fmt += 1
    elif kind == ITEM_BYTE and (order == b'<' or order == b'>' or order == b'!'):
        fmt += 1                          # byte order is meaningless for single bytes
    if fmt[0] == 0 or fmt[1] != 0:
        return False
    if kind == ITEM_INT16:
        return fmt[0] == b'h'
    return fmt[0] == b'B' or fmt[0] == b'b' or fmt[0] == b'c'


cdef inline bint _numpy_fast(cnp.ndarray arr, ItemKind kind, bint writable) noexcept:
    if cnp.PyArray_NDIM(arr) != 1 or not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        return False
    if writable and not cnp.PyArray_ISWRITEABLE(arr):
        return False
    cdef int type_num = cnp.PyArray_TYPE(arr)
    if kind == ITEM_INT16:
        return type_num == cnp.NPY_INT16 and cnp.PyArray_ISNOTSWAPPED(arr)
    return type_num == cnp.NPY_UINT8 or type_num == cnp.NPY_INT8


cdef inline int get_view(object obj, Py_buffer* view, ItemKind kind, bint writable, str what) except -1:
    """Fill ``view`` (buf, len, itemsize) with a 1-D C-contiguous buffer of ``kind`` items."""
    pbx_view_clear(view)
    cdef cnp.ndarray arr
    if type(obj) is cnp.ndarray:
        arr = <cnp.ndarray>obj
        if _numpy_fast(arr, kind, writable):
            view.buf = cnp.PyArray_DATA(arr)
            view.len = cnp.PyArray_NBYTES(arr)
            view.itemsize = cnp.PyArray_ITEMSIZE(arr)
            return 0
    if not PyObject_CheckBuffer(obj):
        raise TypeError(f"{what} must be a buffer of {_describe(kind)}, not {type(obj).__name__}")
    PyObject_GetBuffer(obj, view, PyBUF_RECORDS_RO)
    try:
        if not _format_ok(view.format, kind):
            fmt = "B" if view.format == NULL else view.format.decode("ascii", "replace")
            raise TypeError(f"{what} must hold {_describe(kind)}, got format {fmt!r}")
        if view.ndim != 1:
            raise ValueError(f"{what} must be one-dimensional, got {view.ndim} dimensions")
        if not PyBuffer_IsContiguous(view, b'C'):
            raise ValueError(f"{what} must be C-contiguous")
        if writable and view.readonly:
            raise TypeError(f"{what} is read-only")
    except BaseException:
        PyBuffer_Release(view)
        raise
    return 0
