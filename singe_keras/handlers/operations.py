"""Handlers of Keras operations on symbolic tensors.

In Keras 3, `x + 3.0`, `x * y`, `keras.ops.pad(x, ...)` or
`keras.ops.mean(x, axis=...)` on symbolic tensors are graph nodes whose
operation is a `keras.Operation`, not a layer. They are keyed by their
class in the same registry; their handlers read the call's other arguments
in `call.arguments`. Operations have no weights.
"""

import math

import keras
import numpy as np

from singe_keras import internals
from singe_keras.handlers.base import (
    BarrierHandler,
    LayerHandler,
    UnsupportedLayerError,
    channel_count,
    register_handler,
)
from singe_keras.handlers.layers import (
    ConcatenateHandler,
    MergeHandler,
    ReshapeHandler,
    _einsum_summed_size,
)


class OperationInput:
    """Stands for the `index`-th input tensor in a call's `LayerCall.arguments`.

    `singe_keras.handlers.fill_arguments(call.arguments, values)` puts
    `values[index]` in its place: a handler reads which input is which
    (`call.input_shapes` as values), or calls an operation on new inputs.
    """

    def __init__(self, index):
        self.index = index

    def __repr__(self):
        return f"OperationInput({self.index})"


def fill_arguments(arguments, inputs):
    """`(args, kwargs)` with each `OperationInput(i)` replaced by `inputs[i]`."""
    return keras.tree.map_structure(
        lambda x: inputs[x.index] if isinstance(x, OperationInput) else x, arguments
    )


def _probe(layer, call, other):
    """The outputs of an operation whose removed input channels are zero.

    Inputs as wide as the output (or the only input) are zero; a narrower
    input is broadcast over the channels and never removed: it is `other`.
    """
    width = call.output_shapes[0][-1]
    inputs = []
    for shape in call.input_shapes:
        removed = len(call.input_shapes) == 1 or channel_count(shape) == width
        concrete = tuple(1 if d is None else d for d in shape)
        inputs.append(np.full(concrete, 0.0 if removed else other, "float32"))
    args, kwargs = fill_arguments(call.arguments, inputs)
    return [keras.ops.convert_to_numpy(y) for y in keras.tree.flatten(layer(*args, **kwargs))]


def _probes(layer, call):
    return [y for other in (1.0, -1.0) for y in _probe(layer, call, other)]


def _check_probes(layer, call):
    """A removed channel must stay finite: the gated model multiplies it by 0."""
    try:
        outputs = _probes(layer, call)
    except Exception as error:  # any failure to evaluate makes a barrier, with its reason
        raise UnsupportedLayerError(
            f"cannot be evaluated on zero inputs ({type(error).__name__}: {error})"
        ) from error
    if not all(np.isfinite(y).all() for y in outputs):
        raise UnsupportedLayerError("maps a removed (zero) channel to inf or nan")


class ElementwiseOperationHandler(LayerHandler):
    """An element-wise operation: `x + 3.0`, `x * y`, `keras.ops.relu(x)`.

    Input tensors as wide as the output are coupled channel by channel, as
    the `Add`/`Multiply` layers couple them; a one-channel input broadcast
    over the channels is fixed. A constant with one entry per channel
    (`x * np.array([...])`) is sliced with the channels; a scalar leaves them
    alone. The operation is a source when a zero channel does not stay zero
    (`x + 3.0`), found by evaluating it on zeros; one that maps zero to inf or
    nan (`1 / x`, `log(x)`) is a barrier.
    """

    def check(self, layer, call):
        _check_probes(layer, call)

    def propagate(self, layer, call, inputs, tracer):
        width = call.output_shapes[0][-1]
        if all(len(labels) != width for labels in inputs):
            for labels in inputs:
                tracer.fix(labels)  # widened by a constant: new, fixed channels
            return [tracer.new_fixed(width)]
        return MergeHandler().propagate(layer, call, inputs, tracer)

    def is_source(self, layer, call):
        return any(np.any(y != 0) for y in _probes(layer, call))

    def rebuild_arguments(self, layer, call, in_keep, out_keep):
        width = call.output_shapes[0][-1]

        def slice_constant(x):
            if isinstance(x, OperationInput) or width == 1 or np.ndim(x) == 0:
                return x
            if np.shape(x)[-1] != width:
                return x
            return np.take(keras.ops.convert_to_numpy(x), out_keep[0], axis=-1)

        return keras.tree.map_structure(slice_constant, call.arguments)


class ChannelAxisOperationHandler(LayerHandler):
    """A structural operation that leaves the channel axis alone.

    Padding, pooling, resizing, slicing, reductions over other axes,
    transposes that keep the last axis last: output channel `i` is input
    channel `i` (inputs of one width are coupled, as by `keras.ops.stack`).
    Zero padding or a softmax over space make a zero channel non-zero: such
    calls are sources, found by evaluating them on zeros.

    Args:
        requirement: `requirement(layer, call)` returns how the call touches
            the channel axis (the reason it is a barrier), or `None`.
    """

    def __init__(self, requirement):
        self.requirement = requirement

    def check(self, layer, call):
        reason = self.requirement(layer, call)
        if reason is None and any(
            channel_count(shape) != channel_count(call.input_shapes[0])
            for shape in call.input_shapes + call.output_shapes
        ):
            reason = "changes the number of channels"
        if reason is not None:
            raise UnsupportedLayerError(reason)
        _check_probes(layer, call)

    def propagate(self, layer, call, inputs, tracer):
        labels = MergeHandler().propagate(layer, call, inputs, tracer)[0]
        return [labels] * len(call.output_shapes)

    def is_source(self, layer, call):
        return any(np.any(y != 0) for y in _probes(layer, call))


def _touches_last_axis(axes, rank, what):
    """The reason `axes` (of a tensor of `rank`) make a barrier, or `None`."""
    if axes is None:
        return f"{what} every axis, the channel axis included"
    if any(a % rank == rank - 1 for a in np.atleast_1d(axes)):
        return f"{what} the channel axis"
    return None


def _axis_requirement(attribute, what, new_axis=False):
    """A requirement on the op's `attribute` axes; `new_axis`: counted in the output."""

    def requirement(layer, call):
        shape = call.output_shapes[0] if new_axis else call.input_shapes[0]
        return _touches_last_axis(getattr(layer, attribute), len(shape), what)

    return requirement


def _no_requirement(layer, call):
    return None


def _channels_last_requirement(layer, call):
    data_format = layer.data_format or keras.config.image_data_format()
    if data_format != "channels_last":
        return f"data_format={data_format!r}: only 'channels_last' is supported"
    return None


def _pad_requirement(layer, call):
    rank = len(call.input_shapes[0])
    widths = np.broadcast_to(np.asarray(layer.pad_width), (rank, 2))
    return "pads the channel axis" if widths[-1].any() else None


def _transpose_requirement(layer, call):
    rank = len(call.input_shapes[0])
    last = rank - 1 if layer.axes is None else layer.axes[-1] % rank
    return None if (layer.axes is not None and last == rank - 1) else "moves the channel axis"


def _tile_requirement(layer, call):
    return "tiles the channel axis" if np.atleast_1d(layer.repeats)[-1] != 1 else None


def _squeeze_requirement(layer, call):
    if layer.axis is None:
        return "squeezes every axis of size 1" if call.input_shapes[0][-1] == 1 else None
    return _touches_last_axis(layer.axis, len(call.input_shapes[0]), "squeezes")


def _item_requirement(layer, call):
    """`x[key]` keeps the channel axis if the key takes all of it, in order."""
    key = call.arguments[0][1]
    key = list(key) if isinstance(key, (tuple, list)) else [key]
    if not all(k is None or k is Ellipsis or isinstance(k, (int, slice)) for k in key):
        return "indexes with a tensor"
    if Ellipsis in key:
        tail = key[key.index(Ellipsis) + 1:]
    elif len([k for k in key if k is not None]) < len(call.input_shapes[0]):
        return None  # the channel axis is not indexed
    else:
        tail = key
    indexed = [i for i, k in enumerate(tail) if k is not None]
    last = indexed[-1] if indexed else -1
    if any(k is None for k in tail[last + 1:]):
        return "adds an axis after the channel axis"
    if indexed and tail[last] != slice(None):
        return "indexes the channel axis"
    return None


class ReshapeOperationHandler(ReshapeHandler):
    """`keras.ops.reshape`: as the `Reshape` layer, with the batch axis in `newshape`."""

    shape_key = "newshape"


class ContractionHandler(BarrierHandler):
    """`keras.ops.einsum` and `keras.ops.matmul`: a barrier that costs MACs.

    They mix the channel axis (attention's `QK^T` and `AV`, a product with a
    constant matrix). One multiply-accumulate per output element and per
    index summed over.
    """

    def __init__(self):
        super().__init__("contracts tensors over the channel axis (einsum/matmul)")
        self.costed = True

    def macs(self, layer, call):
        outputs = math.prod(1 if d is None else d for d in call.output_shapes[0])
        if len(call.input_shapes) < 2:
            return 0
        if hasattr(layer, "subscripts"):
            return outputs * _einsum_summed_size(layer.subscripts, call.input_shapes)
        return outputs * call.input_shapes[0][-1]  # matmul: (..., n, k) @ (..., k, m)


def _register_operations():
    """Handlers of the Keras operations that may appear in functional graphs."""
    core, image, ops_math, nn, knp = internals.operation_modules()

    def register(module, names, handler):
        for name in names:
            if hasattr(module, name):  # older Keras versions lack a few
                register_handler(getattr(module, name), handler)

    elementwise = ElementwiseOperationHandler()
    register(knp, (
        "Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum",
        "Power", "Negative", "Absolute", "Abs", "Square", "Sqrt", "Exp", "Expm1", "Log",
        "Log1p", "Sign", "Sin", "Cos", "Tanh", "Sinh", "Floor", "Ceil", "Round", "Clip",
        "Reciprocal",
    ), elementwise)
    register(nn, (
        "Relu", "Relu6", "Sigmoid", "HardSigmoid", "HardSilu", "Silu", "Gelu", "Elu",
        "Selu", "Celu", "LeakyRelu", "Softplus", "Softsign", "LogSigmoid", "HardTanh",
        "TanhShrink", "SoftShrink", "HardShrink", "Squareplus", "SparsePlus", "Threshold",
    ), elementwise)
    register(core, ("Cast", "StopGradient"), elementwise)
    register(ops_math, ("Erf", "Rsqrt"), elementwise)
    register(knp, ("Pad",), ChannelAxisOperationHandler(_pad_requirement))
    register(knp, ("GetItem",), ChannelAxisOperationHandler(_item_requirement))
    register(knp, ("Transpose",), ChannelAxisOperationHandler(_transpose_requirement))
    register(knp, ("Tile",), ChannelAxisOperationHandler(_tile_requirement))
    register(knp, ("Squeeze",), ChannelAxisOperationHandler(_squeeze_requirement))
    register(knp, ("Mean", "Sum", "Max", "Min", "Amax", "Amin", "Std", "Var", "Median"),
             ChannelAxisOperationHandler(_axis_requirement("axis", "reduces")))
    register(ops_math, ("Logsumexp",),
             ChannelAxisOperationHandler(_axis_requirement("axis", "reduces")))
    register(nn, ("Softmax", "LogSoftmax"),
             ChannelAxisOperationHandler(_axis_requirement("axis", "normalizes over")))
    register(knp, ("Flip", "Roll", "Cumsum", "Cumprod", "Repeat"),
             ChannelAxisOperationHandler(_axis_requirement("axis", "runs along")))
    register(knp, ("Split",), ChannelAxisOperationHandler(_axis_requirement("axis", "splits")))
    register(core, ("Unstack",),
             ChannelAxisOperationHandler(_axis_requirement("axis", "unstacks")))
    register(knp, ("Stack",),
             ChannelAxisOperationHandler(_axis_requirement("axis", "stacks along", True)))
    register(knp, ("ExpandDims",),
             ChannelAxisOperationHandler(_axis_requirement("axis", "adds an axis after", True)))
    register(nn, ("MaxPool", "AveragePool"),
             ChannelAxisOperationHandler(_channels_last_requirement))
    register(image, ("Resize",), ChannelAxisOperationHandler(_channels_last_requirement))
    register(knp, ("Copy",), ChannelAxisOperationHandler(_no_requirement))
    register(knp, ("Concatenate",), ConcatenateHandler())
    register(knp, ("Reshape",), ReshapeOperationHandler())
    register(knp, ("Einsum", "Matmul"), ContractionHandler())


_register_operations()
