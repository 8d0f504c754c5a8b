"""Eight float32 lanes (one AVX register) as a numba value, for the CRF's rows of classes.

LLVM leaves the CRF's loops over a row of 24 classes scalar: its vector loop wants 32 elements
(8 lanes unrolled 4 times) and it cannot prove rows of two arrays apart to pack them otherwise.
With these the kernels say what they mean: load 8 classes of a row, compute, store them back.
The arithmetic is lane by lane in the scalar code's order (a multiply then an add, never fused),
so results round exactly as the scalar loops did; only ``hsum8`` adds its lanes in another order.

Arrays are C-contiguous 2-D float32 with rows a multiple of ``LANES`` wide (no bounds checks).
numba's disk cache does not notice edits here: after one, clear the kernels' ``__pycache__``.
"""

from __future__ import annotations

import operator

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, overload, register_model

LANES = 8
_FLOAT = ir.FloatType()
_VECTOR = ir.VectorType(_FLOAT, LANES)
_INTS = ir.VectorType(ir.IntType(32), LANES)


class Vec8Type(types.Type):
    """The numba type of eight float32 lanes."""

    def __init__(self) -> None:
        super().__init__(name="vec8")


vec8 = Vec8Type()


@register_model(Vec8Type)
class _Vec8Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VECTOR)


def _is_rows(array) -> bool:
    return isinstance(array, types.Array) and array.ndim == 2 and array.layout == "C" and array.dtype == types.float32


def _lanes_pointer(context, builder, signature, args):
    """Pointer to array[i, col] (the first three arguments) as a pointer to 8 lanes."""
    array_type, i_type, col_type = signature.args[:3]
    view = context.make_array(array_type)(context, builder, args[0])
    place = [context.cast(builder, value, kind, types.intp) for value, kind in zip(args[1:3], (i_type, col_type))]
    shape, strides = cgutils.unpack_tuple(builder, view.shape), cgutils.unpack_tuple(builder, view.strides)
    pointer = cgutils.get_item_pointer2(context, builder, view.data, shape, strides, "C", place, wraparound=False)
    return builder.bitcast(pointer, _VECTOR.as_pointer())


@intrinsic
def load8(typingctx, array, i, col):
    """array[i, col:col + 8]."""
    if not (_is_rows(array) and isinstance(i, types.Integer) and isinstance(col, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        return builder.load(_lanes_pointer(context, builder, signature, args), align=4)

    return vec8(array, i, col), codegen


@intrinsic
def store8(typingctx, array, i, col, value):
    """array[i, col:col + 8] = value."""
    if not (_is_rows(array) and isinstance(i, types.Integer) and isinstance(col, types.Integer) and value == vec8):
        return None

    def codegen(context, builder, signature, args):
        builder.store(args[3], _lanes_pointer(context, builder, signature, args), align=4)
        return context.get_dummy_value()

    return types.void(array, i, col, value), codegen


@intrinsic
def stream8(typingctx, array, i, col, value):
    """array[i, col:col + 8] = value, written past the caches (a non-temporal store): for buffers
    too big to stay cached, this saves reading each line before writing it. The array must be
    32-byte aligned with rows a multiple of 32 bytes (``aligned_empty``); ``store_fence()`` after
    the last one, before other threads read."""
    if not (_is_rows(array) and isinstance(i, types.Integer) and isinstance(col, types.Integer) and value == vec8):
        return None

    def codegen(context, builder, signature, args):
        store = builder.store(args[3], _lanes_pointer(context, builder, signature, args), align=32)
        store.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()

    return types.void(array, i, col, value), codegen


@intrinsic
def store_fence(typingctx):
    """Order the non-temporal stores before: a full fence (mfence on x86; portable LLVM)."""

    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.void(), codegen


def aligned_empty(shape: tuple[int, int]) -> np.ndarray:
    """An uninitialised float32 array whose data starts on a 64-byte boundary (for ``stream8``)."""
    count = shape[0] * shape[1]
    raw = np.empty(count * 4 + 64, np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start : start + count * 4].view(np.float32).reshape(shape)


def _as_lanes(context, builder, kind, value):
    """A vec8 as it is, a number broadcast to all 8 lanes (as float32)."""
    if kind == vec8:
        return value
    scalar = context.cast(builder, value, kind, types.float32)
    one = builder.insert_element(ir.Constant(_VECTOR, ir.Undefined), scalar, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, one, ir.Constant(_INTS, [0] * LANES))


def _lanewise(name: str):
    """An intrinsic for builder.<name> (fadd, fsub, fmul) on vec8 or number operands, one at least vec8."""

    @intrinsic
    def apply(typingctx, a, b):
        if vec8 not in (a, b) or not all(kind == vec8 or isinstance(kind, types.Number) for kind in (a, b)):
            return None

        def codegen(context, builder, signature, args):
            left, right = (_as_lanes(context, builder, kind, v) for kind, v in zip(signature.args, args))
            return getattr(builder, name)(left, right)

        return vec8(a, b), codegen

    return apply


_add, _sub, _mul = _lanewise("fadd"), _lanewise("fsub"), _lanewise("fmul")


def _operator(op, implementation):
    @overload(op)
    def lanes(a, b):
        if vec8 in (a, b) and all(kind == vec8 or isinstance(kind, types.Number) for kind in (a, b)):
            return lambda a, b: implementation(a, b)
        return None


_operator(operator.add, _add)
_operator(operator.sub, _sub)
_operator(operator.mul, _mul)


@intrinsic
def broadcast8(typingctx, x):
    """A number (as float32) in all 8 lanes."""
    if not isinstance(x, types.Number):
        return None

    def codegen(context, builder, signature, args):
        return _as_lanes(context, builder, signature.args[0], args[0])

    return vec8(x), codegen


@intrinsic
def maximum8(typingctx, a, b):
    """The lane-wise larger of a and b (b where a is NaN)."""
    if not (a == vec8 and b == vec8):
        return None

    def codegen(context, builder, signature, args):
        return builder.select(builder.fcmp_ordered(">", args[0], args[1]), args[0], args[1])

    return vec8(a, b), codegen


@intrinsic
def floor8(typingctx, a):
    """The lane-wise floor."""
    if a != vec8:
        return None

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VECTOR, [_VECTOR]), "llvm.floor.v8f32")
        return builder.call(fn, [args[0]])

    return vec8(a), codegen


@intrinsic
def times_power_of_two8(typingctx, m, n):
    """m * 2**n lane by lane, for whole numbers n in -126..127 (as floats): the scale of an exp."""
    if not (m == vec8 and n == vec8):
        return None

    def codegen(context, builder, signature, args):
        exponent = builder.add(builder.fptosi(args[1], _INTS), ir.Constant(_INTS, [127] * LANES))
        power = builder.bitcast(builder.shl(exponent, ir.Constant(_INTS, [23] * LANES)), _VECTOR)
        return builder.fmul(args[0], power)

    return vec8(m, n), codegen


@intrinsic
def first_lanes8(typingctx, a, n):
    """a with lanes n and on set to 0 (all kept where n >= 8): the padding classes of a row."""
    if not (a == vec8 and isinstance(n, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        count = context.cast(builder, args[1], signature.args[1], types.int32)
        count = builder.insert_element(ir.Constant(_INTS, ir.Undefined), count, ir.Constant(ir.IntType(32), 0))
        count = builder.shuffle_vector(count, count, ir.Constant(_INTS, [0] * LANES))
        keep = builder.icmp_signed("<", ir.Constant(_INTS, list(range(LANES))), count)
        return builder.select(keep, args[0], ir.Constant(_VECTOR, [0.0] * LANES))

    return vec8(a, n), codegen


def _horizontal(combine):
    """An intrinsic that folds the 8 lanes into one float32: halves, then quarters, then pairs."""

    @intrinsic
    def fold(typingctx, a):
        if a != vec8:
            return None

        def codegen(context, builder, signature, args):
            value, width = args[0], LANES
            while width > 1:
                width //= 2
                kind = ir.VectorType(_FLOAT, width)
                low = builder.shuffle_vector(
                    value, value, ir.Constant(ir.VectorType(ir.IntType(32), width), list(range(width)))
                )
                high = builder.shuffle_vector(
                    value, value, ir.Constant(ir.VectorType(ir.IntType(32), width), list(range(width, 2 * width)))
                )
                value = combine(builder, low, high)
                assert value.type == kind
            return builder.extract_element(value, ir.Constant(ir.IntType(32), 0))

        return types.float32(a), codegen

    return fold


hsum8 = _horizontal(lambda builder, low, high: builder.fadd(low, high))
hsum8.__doc__ = "The sum of the 8 lanes (pairwise: ((0+4)+(2+6))+((1+5)+(3+7)))."
hmax8 = _horizontal(lambda builder, low, high: builder.select(builder.fcmp_ordered(">", low, high), low, high))
hmax8.__doc__ = "The largest of the 8 lanes."
