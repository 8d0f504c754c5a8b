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


def _is_place(array, i, col) -> bool:
    """Whether (array, i, col) name 8 lanes of a row: a C-contiguous 2-D float32 array, integers."""
    rows = isinstance(array, types.Array) and array.ndim == 2 and array.layout == "C" and array.dtype == types.float32
    return rows and isinstance(i, types.Integer) and isinstance(col, types.Integer)


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
    if not _is_place(array, i, col):
        return None

    def codegen(context, builder, signature, args):
        return builder.load(_lanes_pointer(context, builder, signature, args), align=4)

    return vec8(array, i, col), codegen


def _storing(streamed: bool):
    """The intrinsic array[i, col:col + 8] = value: a plain store, or one past the caches."""

    @intrinsic
    def store(typingctx, array, i, col, value):
        if not (_is_place(array, i, col) and value == vec8):
            return None

        def codegen(context, builder, signature, args):
            pointer = _lanes_pointer(context, builder, signature, args)
            instruction = builder.store(args[3], pointer, align=32 if streamed else 4)
            if streamed:
                instruction.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
            return context.get_dummy_value()

        return types.void(array, i, col, value), codegen

    return store


store8 = _storing(streamed=False)
store8.__doc__ = "array[i, col:col + 8] = value."
stream8 = _storing(streamed=True)
stream8.__doc__ = """array[i, col:col + 8] = value, written past the caches (a non-temporal store): for buffers
too big to stay cached, this saves reading each line before writing it. The array must be 32-byte
aligned with rows a multiple of 32 bytes (``aligned_empty``); ``store_fence()`` after the last
one, before other threads read."""


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


def _splat(builder, value, vector_type):
    """``value`` (an LLVM scalar) in every lane of ``vector_type``."""
    one = builder.insert_element(ir.Constant(vector_type, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, one, ir.Constant(_INTS, [0] * LANES))


def _mixes(a, b) -> bool:
    """Whether operands a and b are vec8 or numbers, at least one a vec8 (numbers fill all lanes)."""
    return vec8 in (a, b) and all(kind == vec8 or isinstance(kind, types.Number) for kind in (a, b))


def _lanewise(build):
    """An intrinsic of two operands (see ``_mixes``) that ``build(builder, left, right)`` combines lane by lane."""

    @intrinsic
    def apply(typingctx, a, b):
        if not _mixes(a, b):
            return None

        def codegen(context, builder, signature, args):
            left, right = (
                value if kind == vec8 else _splat(builder, context.cast(builder, value, kind, types.float32), _VECTOR)
                for kind, value in zip(signature.args, args)
            )
            return build(builder, left, right)

        return vec8(a, b), codegen

    return apply


def _larger(builder, a, b):
    """The lane-wise larger of a and b (b where a is NaN)."""
    return builder.select(builder.fcmp_ordered(">", a, b), a, b)


def _times_power_of_two(builder, m, n):
    """m * 2**n for whole numbers n (as floats): n + 127 put in the exponent bits of a float."""
    exponent = builder.add(builder.fptosi(n, _INTS), ir.Constant(_INTS, [127] * LANES))
    return builder.fmul(m, builder.bitcast(builder.shl(exponent, ir.Constant(_INTS, [23] * LANES)), _VECTOR))


def _operator(op, build) -> None:
    """``a op b`` on vec8 (and numbers): the lane-wise intrinsic of ``build``."""
    lanes = _lanewise(build)

    @overload(op)
    def implement(a, b):
        return (lambda a, b: lanes(a, b)) if _mixes(a, b) else None


_operator(operator.add, ir.IRBuilder.fadd)
_operator(operator.sub, ir.IRBuilder.fsub)
_operator(operator.mul, ir.IRBuilder.fmul)

maximum8 = _lanewise(_larger)
maximum8.__doc__ = "The lane-wise larger of a and b (b where a is NaN)."
times_power_of_two8 = _lanewise(_times_power_of_two)
times_power_of_two8.__doc__ = (
    "m * 2**n lane by lane, for whole numbers n in -126..127 (as floats): the scale of an exp."
)


@intrinsic
def broadcast8(typingctx, x):
    """A number (as float32) in all 8 lanes."""
    if not isinstance(x, types.Number):
        return None

    def codegen(context, builder, signature, args):
        return _splat(builder, context.cast(builder, args[0], signature.args[0], types.float32), _VECTOR)

    return vec8(x), codegen


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
def first_lanes8(typingctx, a, n):
    """a with lanes n and on set to 0 (all kept where n >= 8): the padding classes of a row."""
    if not (a == vec8 and isinstance(n, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        count = _splat(builder, context.cast(builder, args[1], signature.args[1], types.int32), _INTS)
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
                halves = [
                    ir.Constant(ir.VectorType(ir.IntType(32), width), list(range(k, k + width))) for k in (0, width)
                ]
                value = combine(builder, *(builder.shuffle_vector(value, value, half) for half in halves))
            return builder.extract_element(value, ir.Constant(ir.IntType(32), 0))

        return types.float32(a), codegen

    return fold


hsum8 = _horizontal(ir.IRBuilder.fadd)
hsum8.__doc__ = "The sum of the 8 lanes (pairwise: ((0+4)+(2+6))+((1+5)+(3+7)))."
hmax8 = _horizontal(_larger)
hmax8.__doc__ = "The largest of the 8 lanes."
