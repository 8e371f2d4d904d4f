"""Per-layer knowledge: how channels flow through a layer and how to slice it.

Every layer class that singe_keras can prune through has a `LayerHandler` in a
registry keyed by the exact layer class (a subclass may override `call`, so it
never inherits its parent's handler silently). A handler answers four
questions about one layer:

1. `propagate`: which output channels are new units, which are the input
   channels passed through, and which input channels must be removed together
   (coupled).
2. `is_source`: can a channel of the output be non-zero when the same channel of
   every input is zero (a bias, a BatchNormalization shift, `sigmoid(0)`)? The
   gated model scales channels after such layers (docs/method.md, "gates").
3. `rebuild_config` / `slice_weights`: the config and weights of the layer once
   some input and output channels are removed.
4. `macs`: multiply-accumulates of one call (FLOPs = 2 x MACs).

A layer class with no handler is a *barrier*: no channel entering or leaving
it is ever pruned. Register a handler for your own layer with
`register_handler`.
"""

import math
from typing import NamedTuple

import keras
import numpy as np


class LayerCall(NamedTuple):
    """The static shapes of one call of a layer (batch axis first)."""

    input_shapes: list
    output_shapes: list


class UnsupportedLayerError(ValueError):
    """A layer cannot be pruned through (no handler, or an unsupported config).

    The graph tracer turns this error into a barrier and tells the user which
    layers stopped pruning and why.
    """


class LayerHandler:
    """Base class for the per-layer knowledge of a layer class.

    The defaults describe a layer that keeps every channel where it is
    (pooling, padding, dropout, ...): the output channels are the input
    channels, the layer has no per-channel weights, costs no MACs and maps a
    zero channel to zero.

    Subclass it and call `register_handler` to teach singe_keras a custom
    layer.

    Example:

    ```python
    class ScaleHandler(singe_keras.LayerHandler):
        def slice_weights(self, layer, call, weights, in_keep, out_keep):
            return {"scale": weights["scale"][..., out_keep[0]]}

    singe_keras.register_handler(MyPerChannelScale, ScaleHandler())
    ```
    """

    #: Whether removing a channel changes the values of the channels kept
    #: (LayerNormalization over the channel axis). The rebuilt model of a
    #: graph that prunes through such a layer is not exact.
    mixes_channels = False

    def check(self, layer, call):
        """Raises `UnsupportedLayerError` if this layer's config is not handled."""

    def propagate(self, layer, call, inputs, tracer):
        """Returns the channel labels of each output of one call of `layer`.

        Args:
            layer: the layer called.
            call: the `LayerCall` (static shapes) of this call.
            inputs: one `numpy` array of channel labels per input tensor (the
                last axis of the tensor; one label per channel).
            tracer: the `Tracer`, to create new channels, couple and fix them.

        Returns:
            A list with one label array per output tensor.
        """
        return [inputs[0]]

    def is_source(self, layer, call):
        """Whether an output channel can be non-zero when its inputs are zero."""
        return False

    def passes_channels(self, layer, call):
        """Whether output channel `i` is input channel `i` (a per-channel op)."""
        return True

    def rebuild_config(self, layer, call, config, in_keep, out_keep):
        """Returns the config of the layer with only the kept channels.

        Args:
            layer: the original layer.
            call: the `LayerCall` of one of its calls.
            config: a copy of `layer.get_config()`, free to modify.
            in_keep: per input tensor, the indices of its kept channels.
            out_keep: per output tensor, the indices of its kept channels.
        """
        return config

    def slice_weights(self, layer, call, weights, in_keep, out_keep):
        """Returns the weights (`{name: array}`) restricted to the kept channels."""
        return weights

    def macs(self, layer, call):
        """Multiply-accumulates of one call, from its static shapes."""
        return 0

    def output_weights(self, layer):
        """The weights that make each new unit, output channels on the last axis.

        Magnitude criteria (`l1`, `l2`) read it. `None` for layers that make
        no new units.
        """
        return None

    def input_weights(self, layer):
        """The weights that read each input channel, input channels on the last axis.

        Group magnitude criteria (`group_l1`, `group_l2`) read them: each
        array is one parameter slice coupled with the channel. An empty list
        for layers that read their inputs without weights.
        """
        return []

    def channel_scale(self, layer):
        """A per-channel scale (BatchNormalization's gamma), or `None`."""
        return None

    def output_parameters(self, layer):
        """The weights that, set to zero, make an output channel zero.

        `PruningCallback` masks them to keep pruned units at zero during
        training. Returns `(weight attribute, constraint attribute, channel
        axis)` tuples; the constraint attribute is `None` for a weight the
        optimizer does not train (it is masked at each pruning event only).
        An empty list for a source layer means its output channels cannot be
        zeroed through its weights (e.g. `sigmoid`).
        """
        return []

    def holds_zero(self, layer, call, zero_inputs):
        """Whether a pruned output channel is zero once `output_parameters` are.

        Args:
            layer: the layer called.
            call: the `LayerCall` of this call.
            zero_inputs: per input tensor, whether its pruned channels are
                held at zero.

        Returns:
            `True` if the pruned channels of the output are exactly zero. By
            default: every input's are, and the layer is not a source or has
            weights to mask.
        """
        maskable = bool(self.output_parameters(layer)) or not self.is_source(layer, call)
        return maskable and all(zero_inputs)


def _channels_last(layer):
    data_format = getattr(layer, "data_format", "channels_last")
    if data_format != "channels_last":
        raise UnsupportedLayerError(
            f"data_format={data_format!r}: only 'channels_last' is supported"
        )


def channel_count(shape):
    """The size of the channel (last) axis; 1 for tensors without one."""
    return shape[-1] if len(shape) > 1 and shape[-1] is not None else 1


def _spatial_size(shape):
    """Product of the dimensions between the batch and the channel axes."""
    if any(d is None for d in shape[1:-1]):
        raise ValueError(
            f"Cannot count the cost of a tensor of shape {shape}: its spatial "
            "size is unknown. Build the model with a fixed input size, e.g. "
            "`keras.Input(shape=(32, 32, 3))`."
        )
    return math.prod(shape[1:-1])


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

    def rebuild_config(self, layer, call, config, in_keep, out_keep):
        target = list(config["target_shape"])
        target[-1] = len(out_keep[0]) if target[-1] != -1 else -1
        config["target_shape"] = tuple(target)
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
        )


class DenseHandler(ProducerHandler):
    units_key = "units"

    def macs(self, layer, call):
        positions = _spatial_size(call.output_shapes[0])
        return positions * call.input_shapes[0][-1] * call.output_shapes[0][-1]


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


class BarrierHandler(LayerHandler):
    """No channel that enters or leaves the layer is pruned."""

    def __init__(self, reason):
        self.reason = reason

    def propagate(self, layer, call, inputs, tracer):
        for labels in inputs:
            tracer.fix(labels)
        return [tracer.new_fixed(channel_count(shape)) for shape in call.output_shapes]

    def passes_channels(self, layer, call):
        return False


_REGISTRY = {}


def register_handler(layer_class, handler):
    """Registers the handler that describes how to prune through `layer_class`.

    Lookup is by exact class: a subclass of `keras.layers.Conv2D` gets no
    handler (and is a barrier) until one is registered for it, because it may
    override `call`.

    Args:
        layer_class: a `keras.layers.Layer` subclass.
        handler: a `LayerHandler` instance.

    Raises:
        TypeError: if `layer_class` is not a Keras layer class or `handler` is
            not a `LayerHandler`.
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise TypeError(
            "`layer_class` must be a subclass of `keras.layers.Layer`. "
            f"Received: layer_class={layer_class!r}"
        )
    if not isinstance(handler, LayerHandler):
        raise TypeError(
            "`handler` must be an instance of `singe_keras.LayerHandler`. "
            f"Received: handler={handler!r}"
        )
    _REGISTRY[layer_class] = handler


def get_handler(layer, call):
    """Returns the handler of `layer`, or a `BarrierHandler` saying why not.

    Args:
        layer: a Keras layer (or operation) of a traced graph.
        call: the `LayerCall` of one call of the layer.
    """
    handler = _REGISTRY.get(type(layer))
    if handler is None:
        return BarrierHandler(
            f"no handler registered for {type(layer).__name__}; use "
            "`singe_keras.register_handler` to add one"
        )
    try:
        handler.check(layer, call)
    except UnsupportedLayerError as error:
        return BarrierHandler(str(error))
    return handler


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
    conv = ProducerHandler()
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


_register_builtins()
