"""Numba settings shared by the CRF kernels: compiled once, cached on disk, GIL released.

The cache goes next to the sources (``__pycache__``); where that folder is read-only (an
installed site-packages), numba falls back to its user-wide cache (``NUMBA_CACHE_DIR`` if set).
The kernels are serial; the CRF runs them on its own threads, as many as numba's thread count
(``numba.set_num_threads`` or ``NUMBA_NUM_THREADS``).
"""

from __future__ import annotations

from llvmlite import ir
from numba import get_num_threads, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["PREFETCH_AHEAD", "get_num_threads", "jit", "prefetch"]

PREFETCH_AHEAD = 16  # rows looked up this many loop steps early: the lattice's reads are random


def jit(inline: bool = False):
    """numba.njit with the on-disk cache and the GIL released; ``inline``: a small helper that
    numba inlines into its callers (no call, no reference counting of the arrays passed)."""
    return njit(cache=True, nogil=True, error_model="numpy", inline="always" if inline else "never")


@intrinsic
def prefetch(typingctx, array, i):
    """Ask the CPU to bring ``array[i]`` into the cache: an element of a 1-D array, or a row (its
    first and last element) of a C-contiguous 2-D one. No effect on results.

    The lattice's hash lookups, blur, splat and slice read at random indices known some steps
    ahead; without this they wait on memory (measured: a 275k-vertex blur runs 2x faster with it).
    """
    if not (isinstance(array, types.Array) and array.ndim in (1, 2) and array.layout == "C"):
        return None
    if not isinstance(i, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        array_type, index_type = signature.args
        view = context.make_array(array_type)(context, builder, args[0])
        shape = cgutils.unpack_tuple(builder, view.shape)
        strides = cgutils.unpack_tuple(builder, view.strides)
        index = context.cast(builder, args[1], index_type, types.intp)
        if array_type.ndim == 1:
            places = [[index]]
        else:
            last = builder.sub(shape[1], context.get_constant(types.intp, 1))
            places = [[index, context.get_constant(types.intp, 0)], [index, last]]
        byte_ptr = ir.IntType(8).as_pointer()
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_ptr] + [ir.IntType(32)] * 3), "llvm.prefetch.p0i8"
        )
        read, keep, data = (ir.Constant(ir.IntType(32), value) for value in (0, 3, 1))
        for place in places:
            ptr = cgutils.get_item_pointer2(context, builder, view.data, shape, strides, "C", place, wraparound=False)
            builder.call(fn, [builder.bitcast(ptr, byte_ptr), read, keep, data])
        return context.get_dummy_value()

    return types.void(array, i), codegen
