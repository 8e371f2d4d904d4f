"""Handlers of Keras's built-in layers: channel-wise, merging, reshaping and producing layers."""

import math

import keras
import numpy as np

from singe_keras.handlers.base import (
    LayerHandler,
    UnsupportedLayerError,
    _channels_last,
    _spatial_size,
    register_handler,
)


class ChannelwiseHandler(LayerHandler):
    """A layer that works on each channel independently.

    Every weight whose last axis has one entry per channel (BatchNormalization
    statistics, PReLU slopes, Normalization statistics) is sliced with the
    channel, and so are the per-channel entries of `config_keys`.
    """

    def __init__(self, source=False, config_keys=()):
        self.source = source
        self.config_keys = tuple(config_keys)

    def is_source(self, layer, call):
        return self.source

    def rebuild_config(self, layer, call, config, in_keep, out_keep):
        channels = call.input_shapes[0][-1]
        for key in self.config_keys:
            value = config.get(key)
            if value is None or np.ndim(value) == 0:
                continue
            value = np.asarray(value)
            if value.shape[-1] == channels:
                config[key] = value[..., out_keep[0]].tolist()
        return config

    def slice_weights(self, layer, call, weights, in_keep, out_keep):
        channels = call.input_shapes[0][-1]
        return {
            name: (w[..., out_keep[0]] if w.ndim and w.shape[-1] == channels else w)
            for name, w in weights.items()
        }


_AFFINE_PARAMETERS = [("gamma", "gamma_constraint", -1), ("beta", "beta_constraint", -1)]


class BatchNormalizationHandler(ChannelwiseHandler):
    """BatchNormalization: `gamma * (x - moving_mean) / sqrt(moving_variance) + beta`.

    A zero gamma zeroes a channel whatever its input. Without a scale
    (`scale=False`, as before a ReLU), a zero input channel gives
    `-moving_mean / sqrt(...)`: the moving mean is zeroed too, and it stays
    zero, since its updates average a channel that is zero.
    """

    def __init__(self):
        super().__init__(source=True)

    def output_parameters(self, layer):
        if layer.scale:
            return _AFFINE_PARAMETERS
        return [("moving_mean", None, -1), ("beta", "beta_constraint", -1)]

    def holds_zero(self, layer, call, zero_inputs):
        return layer.scale or super().holds_zero(layer, call, zero_inputs)

    def channel_scale(self, layer):
        return keras.ops.convert_to_numpy(layer.gamma) if layer.scale else None

    def check(self, layer, call):
        rank = len(call.input_shapes[0])
        if layer.axis not in (-1, rank - 1):
            raise UnsupportedLayerError(
                f"axis={layer.axis}: only the last (channel) axis is supported"
            )


class LayerNormalizationHandler(ChannelwiseHandler):
    """Normalizes over the channel axis: removing a channel changes the others."""

    mixes_channels = True

    def __init__(self):
        super().__init__(source=True)

    def output_parameters(self, layer):
        # Normalized over the channels, a zero channel is not zero: only a
        # zero gamma zeroes it.
        return _AFFINE_PARAMETERS if layer.scale else []

    def holds_zero(self, layer, call, zero_inputs):
        return layer.scale

    def check(self, layer, call):
        rank = len(call.input_shapes[0])
        axes = [a % rank for a in np.atleast_1d(layer.axis)]
        if axes != [rank - 1]:
            raise UnsupportedLayerError(
                f"axis={layer.axis}: only the last (channel) axis is supported"
            )


class GroupNormalizationHandler(ChannelwiseHandler):
    """Per-channel only when every channel is its own group."""

    def __init__(self):
        super().__init__(source=True)

    def output_parameters(self, layer):
        return _AFFINE_PARAMETERS

    def check(self, layer, call):
        channels = call.input_shapes[0][-1]
        if layer.groups not in (-1, channels):
            raise UnsupportedLayerError(
                f"groups={layer.groups}: channels are normalized in groups of "
                f"{channels // layer.groups}, and the layer needs a channel "
                "count divisible by `groups`; only groups=-1 (one channel per "
                "group) is pruned"
            )
        if layer.axis not in (-1, len(call.input_shapes[0]) - 1):
            raise UnsupportedLayerError(f"axis={layer.axis}: only -1 is supported")

    def rebuild_config(self, layer, call, config, in_keep, out_keep):
        config["groups"] = -1
        return config


def _nonzero_at_zero(function):
    """Whether an element-wise function maps 0 to something else."""
    return bool(keras.ops.convert_to_numpy(function(keras.ops.zeros((1, 1)))).item() != 0)


def _activation_is_source(layer):
    """Zero weights give `activation(0)`: a zero only if that is zero."""
    return _nonzero_at_zero(keras.activations.get(layer.activation))


_CHANNEL_MIXING_ACTIVATIONS = ("softmax", "log_softmax", "sparsemax")


def _channel_mixing_activation(activation):
    """The name of `activation` if it mixes the channel axis (softmax), else `None`."""
    name = getattr(keras.activations.get(activation), "__name__", "")
    return name if name in _CHANNEL_MIXING_ACTIVATIONS else None


class ElementwiseHandler(LayerHandler):
    """A weightless element-wise function (ReLU, ELU, an Activation layer).

    It is a source when `f(0) != 0` (sigmoid, a ReLU with a threshold), which
    is found by calling the layer on a zero.
    """

    def is_source(self, layer, call):
        return _nonzero_at_zero(layer)


class ActivationHandler(ElementwiseHandler):
    """`keras.layers.Activation`; softmax over the channel axis is a barrier."""

    def check(self, layer, call):
        name = _channel_mixing_activation(layer.activation)
        if name:
            raise UnsupportedLayerError(f"{name} over the channel axis mixes channels")


class SoftmaxHandler(LayerHandler):
    def check(self, layer, call):
        rank = len(call.input_shapes[0])
        if any(a % rank == rank - 1 for a in np.atleast_1d(layer.axis)):
            raise UnsupportedLayerError("softmax over the channel axis mixes channels")

    def is_source(self, layer, call):
        return True


class ChannelsLastHandler(LayerHandler):
    """Pooling, padding, cropping, upsampling: channels pass through."""

    def check(self, layer, call):
        _channels_last(layer)


class MergeHandler(LayerHandler):
    """Add, Subtract, Multiply, Average, Maximum, Minimum: inputs are coupled.

    An input with a single channel broadcast over the others (a spatial
    attention map) is not coupled; its channel is fixed. It also makes the
    merge a source (`0 + a != 0`), except for `Multiply` (`0 * a == 0`).
    """

    def is_source(self, layer, call):
        width = call.output_shapes[0][-1]
        broadcast = any(shape[-1] != width for shape in call.input_shapes)
        return broadcast and not isinstance(layer, keras.layers.Multiply)

    def holds_zero(self, layer, call, zero_inputs):
        if not isinstance(layer, keras.layers.Multiply):
            return super().holds_zero(layer, call, zero_inputs)
        # 0 * a == 0: one zero input is enough (a broadcast map is not one).
        width = call.output_shapes[0][-1]
        return any(
            zero for zero, shape in zip(zero_inputs, call.input_shapes) if shape[-1] == width
        )

    def propagate(self, layer, call, inputs, tracer):
        width = max(len(labels) for labels in inputs)
        full = [labels for labels in inputs if len(labels) == width]
        for labels in inputs:
            if len(labels) != width:
                tracer.fix(labels)  # broadcast over the channel axis
        for labels in full[1:]:
            tracer.couple(full[0], labels)
        return [full[0]]


class ConcatenateHandler(LayerHandler):
    """Concatenation along channels places the inputs' channels side by side."""

    def propagate(self, layer, call, inputs, tracer):
        rank = len(call.output_shapes[0])
        if layer.axis % rank == rank - 1:
            return [np.concatenate(inputs)]
        return MergeHandler().propagate(layer, call, inputs, tracer)

    def passes_channels(self, layer, call):
        return False


class FlattenHandler(LayerHandler):
    """Flatten: each input channel appears once per spatial position."""

    def propagate(self, layer, call, inputs, tracer):
        _channels_last(layer)
        return [np.tile(inputs[0], _spatial_size(call.input_shapes[0]))]

    def passes_channels(self, layer, call):
        return False


class ReshapeHandler(LayerHandler):
    """Reshape that keeps the channel axis last, or flattens everything."""

    def propagate(self, layer, call, inputs, tracer):
        in_shape, out_shape = call.input_shapes[0], call.output_shapes[0]
        if out_shape[-1] == in_shape[-1]:
            return [inputs[0]]
        if len(out_shape) == 2:
            return [np.tile(inputs[0], _spatial_size(in_shape))]
        raise UnsupportedLayerError(
            f"reshape {in_shape} -> {out_shape} moves the channel axis"
        )

    def passes_channels(self, layer, call):
        return call.output_shapes[0][-1] == call.input_shapes[0][-1]

    #: The config key of the target shape.
    shape_key = "target_shape"

    def rebuild_config(self, layer, call, config, in_keep, out_keep):
        target = list(config[self.shape_key])
        target[-1] = len(out_keep[0]) if target[-1] != -1 else -1
        config[self.shape_key] = tuple(target)
        return config


class ProducerHandler(LayerHandler):
    """A layer whose outputs are new units (conv filters, dense neurons).

    The kernel is read with its input channels on `in_axis` and its output
    channels on `out_axis`; every other weight with one entry per output
    channel (the bias) is sliced with the output.
    """

    units_key = "filters"
    in_axis = -2
    out_axis = -1

    def check(self, layer, call):
        _channels_last(layer)
        if getattr(layer, "groups", 1) != 1:
            raise UnsupportedLayerError(f"groups={layer.groups}: grouped convolution")

    def propagate(self, layer, call, inputs, tracer):
        units = tracer.new_units(layer, call.output_shapes[0][-1])
        if _channel_mixing_activation(getattr(layer, "activation", None)):
            # Like a softmax Activation layer after it: removing one output
            # changes the others, so none is removed (the inputs still can be).
            tracer.fix(units)
        return [units]

    def is_source(self, layer, call):
        return True

    def passes_channels(self, layer, call):
        return False

    def holds_zero(self, layer, call, zero_inputs):
        return bool(self.output_parameters(layer))  # a zero kernel reads nothing

    def rebuild_config(self, layer, call, config, in_keep, out_keep):
        config[self.units_key] = len(out_keep[0])
        return config

    def output_weights(self, layer):
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        return np.moveaxis(kernel, self.out_axis, -1)

    def input_weights(self, layer):
        return [np.moveaxis(keras.ops.convert_to_numpy(layer.kernel), self.in_axis, -1)]

    def output_parameters(self, layer):
        if _activation_is_source(layer):
            return []
        return [("kernel", "kernel_constraint", self.out_axis), ("bias", "bias_constraint", -1)]

    def slice_weights(self, layer, call, weights, in_keep, out_keep):
        kernel = np.take(weights["kernel"], in_keep[0], axis=self.in_axis)
        sliced = {"kernel": np.take(kernel, out_keep[0], axis=self.out_axis)}
        if "bias" in weights:
            sliced["bias"] = weights["bias"][out_keep[0]]
        return sliced

    def macs(self, layer, call):
        kernel = math.prod(layer.kernel_size)
        return (
            _spatial_size(call.output_shapes[0])
            * kernel
            * call.input_shapes[0][-1]
            * call.output_shapes[0][-1]
            // getattr(layer, "groups", 1)
        )


class ConvHandler(ProducerHandler):
    """Conv1D/2D/3D; with one group per channel it is a depthwise convolution.

    `Conv2D(C, k, groups=C)` on C channels (ConvNeXt's depthwise conv) passes
    each channel through, as `DepthwiseConv2D` does, and is pruned with it.
    Other grouped convolutions are barriers.
    """

    @staticmethod
    def _depthwise(layer):
        return layer.groups > 1 and layer.groups == layer.filters and layer.kernel.shape[-2] == 1

    def check(self, layer, call):
        if self._depthwise(layer):
            _channels_last(layer)
        else:
            super().check(layer, call)

    def propagate(self, layer, call, inputs, tracer):
        if self._depthwise(layer):
            return [inputs[0]]
        return super().propagate(layer, call, inputs, tracer)

    def passes_channels(self, layer, call):
        return self._depthwise(layer)

    def rebuild_config(self, layer, call, config, in_keep, out_keep):
        if self._depthwise(layer):
            config["groups"] = len(out_keep[0])
        return super().rebuild_config(layer, call, config, in_keep, out_keep)

    def slice_weights(self, layer, call, weights, in_keep, out_keep):
        if self._depthwise(layer):  # the kernel's input axis has one entry
            in_keep = [np.arange(1)]
        return super().slice_weights(layer, call, weights, in_keep, out_keep)

    def macs(self, layer, call):
        if self._depthwise(layer):
            kernel = math.prod(layer.kernel_size)
            return _spatial_size(call.output_shapes[0]) * kernel * call.output_shapes[0][-1]
        return super().macs(layer, call)


class DenseHandler(ProducerHandler):
    units_key = "units"

    def macs(self, layer, call):
        positions = _spatial_size(call.output_shapes[0])
        return positions * call.input_shapes[0][-1] * call.output_shapes[0][-1]


class EinsumDenseHandler(DenseHandler):
    """`EinsumDense` that works as a `Dense` on the last axis: `"abc,cd->abd"`.

    The kernel is `(input channels, units)`, every other axis of the input
    passes to the output, and a bias (if any) is on the units. Other
    equations (attention's per-head projections) move or split axes: the
    layer is then a barrier, whose MACs are still counted.
    """

    @staticmethod
    def _is_dense(layer):
        operands, _, output = layer.equation.replace(" ", "").partition("->")
        source, _, kernel = operands.partition(",")
        return (
            len(kernel) == 2 and source[:-1] == output[:-1]
            and source[-1:] == kernel[:1] and output[-1:] == kernel[1:]
            and kernel[0] not in output and layer.bias_axes in (None, kernel[1])
        )

    def check(self, layer, call):
        if not self._is_dense(layer):
            raise UnsupportedLayerError(
                f"equation={layer.equation!r}, bias_axes={layer.bias_axes!r}: only a "
                "Dense on the last axis ('...c,cd->...d', bias on 'd') is pruned"
            )
        if layer.lora_enabled:
            raise UnsupportedLayerError("LoRA is enabled")

    def rebuild_config(self, layer, call, config, in_keep, out_keep):
        config["output_shape"] = tuple(config["output_shape"][:-1]) + (len(out_keep[0]),)
        return config

    def macs(self, layer, call):
        if self._is_dense(layer):
            return super().macs(layer, call)
        # One MAC per output element and summed index, as `keras.ops.einsum`.
        outputs = math.prod(1 if d is None else d for d in call.output_shapes[0][1:])
        shapes = [call.input_shapes[0], tuple(layer.kernel.shape)]
        return outputs * _einsum_summed_size(layer.equation, shapes)


class ConvTransposeHandler(ProducerHandler):
    # Transposed kernels are (*kernel_size, filters, input_channels).
    in_axis = -1
    out_axis = -2

    def macs(self, layer, call):
        kernel = math.prod(layer.kernel_size)
        return (
            _spatial_size(call.input_shapes[0])
            * kernel
            * call.input_shapes[0][-1]
            * call.output_shapes[0][-1]
        )


def _depthwise_keep(in_keep, multiplier):
    """Output indices of a depthwise conv for kept input channels."""
    return (np.asarray(in_keep)[:, None] * multiplier + np.arange(multiplier)).ravel()


class DepthwiseConvHandler(LayerHandler):
    """Each input channel gives `depth_multiplier` outputs, removed with it."""

    def check(self, layer, call):
        _channels_last(layer)
        name = _channel_mixing_activation(layer.activation)
        if name:
            raise UnsupportedLayerError(f"activation={name!r} mixes the channels")

    def propagate(self, layer, call, inputs, tracer):
        return [np.repeat(inputs[0], layer.depth_multiplier)]

    def is_source(self, layer, call):
        return True

    def passes_channels(self, layer, call):
        return layer.depth_multiplier == 1

    def input_weights(self, layer):
        # (*kernel_size, channels, multiplier): the multiplier's filters go with the channel.
        return [np.moveaxis(keras.ops.convert_to_numpy(layer.kernel), -2, -1)]

    def output_parameters(self, layer):
        if _activation_is_source(layer):
            return []
        return [("bias", "bias_constraint", -1)]

    def slice_weights(self, layer, call, weights, in_keep, out_keep):
        sliced = {"kernel": np.take(weights["kernel"], in_keep[0], axis=-2)}
        if "bias" in weights:
            sliced["bias"] = weights["bias"][out_keep[0]]
        return sliced

    def macs(self, layer, call):
        kernel = math.prod(layer.kernel_size)
        return _spatial_size(call.output_shapes[0]) * kernel * call.output_shapes[0][-1]


class SeparableConvHandler(ProducerHandler):
    """Depthwise then pointwise: consumes input channels, produces new units."""

    def output_weights(self, layer):
        return keras.ops.convert_to_numpy(layer.pointwise_kernel)

    def input_weights(self, layer):
        depthwise = keras.ops.convert_to_numpy(layer.depthwise_kernel)
        pointwise = keras.ops.convert_to_numpy(layer.pointwise_kernel)
        channels = depthwise.shape[-2]
        # Pointwise rows c * multiplier ... (c + 1) * multiplier - 1 read channel c.
        pointwise = pointwise.reshape(channels, layer.depth_multiplier, -1)
        return [np.moveaxis(depthwise, -2, -1), np.moveaxis(pointwise, 0, -1)]

    def output_parameters(self, layer):
        if _activation_is_source(layer):
            return []
        return [("pointwise_kernel", "pointwise_constraint", -1), ("bias", "bias_constraint", -1)]

    def slice_weights(self, layer, call, weights, in_keep, out_keep):
        mid_keep = _depthwise_keep(in_keep[0], layer.depth_multiplier)
        pointwise = np.take(weights["pointwise_kernel"], mid_keep, axis=-2)
        sliced = {
            "depthwise_kernel": np.take(weights["depthwise_kernel"], in_keep[0], axis=-2),
            "pointwise_kernel": pointwise[..., out_keep[0]],
        }
        if "bias" in weights:
            sliced["bias"] = weights["bias"][out_keep[0]]
        return sliced

    def macs(self, layer, call):
        positions = _spatial_size(call.output_shapes[0])
        mid = call.input_shapes[0][-1] * layer.depth_multiplier
        depthwise = positions * math.prod(layer.kernel_size) * mid
        return depthwise + positions * mid * call.output_shapes[0][-1]


def _einsum_summed_size(subscripts, input_shapes):
    """The product of the sizes of the indices an einsum sums over."""
    spec = subscripts.replace(" ", "")
    operands, arrow, output = spec.partition("->")
    operands = operands.split(",")
    letters = "".join(operands).replace(".", "")
    if not arrow:
        output = "".join(c for c in letters if letters.count(c) == 1)
    sizes = {}
    for operand, shape in zip(operands, input_shapes):
        head, _, tail = operand.partition("...")
        dims = list(zip(head, shape)) + list(zip(tail, shape[len(shape) - len(tail):]))
        for letter, size in dims:
            sizes[letter] = 1 if size is None else size
    return math.prod(size for letter, size in sizes.items() if letter not in output)


def _register_builtins():
    L = keras.layers
    passthrough = LayerHandler()
    for cls in (
        L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D,
        L.GaussianDropout, L.GaussianNoise, L.AlphaDropout, L.Identity,
    ):
        register_handler(cls, passthrough)
    elementwise = ElementwiseHandler()
    for cls in (L.ReLU, L.LeakyReLU, L.ELU):
        register_handler(cls, elementwise)
    channels_last = ChannelsLastHandler()
    for cls in (
        L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D,
        L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D,
        L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D,
        L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D,
        L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D,
        L.Cropping1D, L.Cropping2D, L.Cropping3D,
        L.UpSampling1D, L.UpSampling2D, L.UpSampling3D,
    ):
        register_handler(cls, channels_last)
    register_handler(L.Activation, ActivationHandler())
    register_handler(L.Softmax, SoftmaxHandler())
    register_handler(L.PReLU, ChannelwiseHandler())
    register_handler(L.BatchNormalization, BatchNormalizationHandler())
    register_handler(L.LayerNormalization, LayerNormalizationHandler())
    register_handler(L.GroupNormalization, GroupNormalizationHandler())
    register_handler(
        L.Normalization, ChannelwiseHandler(source=True, config_keys=("mean", "variance"))
    )
    register_handler(
        L.Rescaling, ChannelwiseHandler(source=True, config_keys=("scale", "offset"))
    )
    merge = MergeHandler()
    for cls in (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum):
        register_handler(cls, merge)
    register_handler(L.Concatenate, ConcatenateHandler())
    register_handler(L.Flatten, FlattenHandler())
    register_handler(L.Reshape, ReshapeHandler())
    conv = ConvHandler()
    for cls in (L.Conv1D, L.Conv2D, L.Conv3D):
        register_handler(cls, conv)
    transpose = ConvTransposeHandler()
    for cls in (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose):
        register_handler(cls, transpose)
    depthwise = DepthwiseConvHandler()
    for cls in (L.DepthwiseConv1D, L.DepthwiseConv2D):
        register_handler(cls, depthwise)
    separable = SeparableConvHandler()
    for cls in (L.SeparableConv1D, L.SeparableConv2D):
        register_handler(cls, separable)
    register_handler(L.Dense, DenseHandler())
    register_handler(L.EinsumDense, EinsumDenseHandler())


_register_builtins()
