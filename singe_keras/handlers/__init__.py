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

A layer may also have *hidden* units, on no tensor (`hidden_units`: the heads
of `MultiHeadAttention`), which it gates itself (`gated_call`).

Keras operations on symbolic tensors (`x + 3.0`, `keras.ops.pad(x, ...)`)
are graph nodes too, with handlers keyed by their `keras.Operation` class.

A layer class with no handler is a *barrier*: no channel entering or leaving
it is ever pruned (unless it is a custom layer that the graph traces
through). Register a handler for your own layer with `register_handler`.
"""

import math
from typing import NamedTuple

import keras
import numpy as np


class LayerCall(NamedTuple):
    """The static shapes of one call of a layer (batch axis first).

    `arguments` holds the call's `(args, kwargs)` with each input tensor
    replaced by an `OperationInput` (which of a layer's inputs is its
    `key`, which its `attention_mask`; the other arguments of a Keras
    operation such as `keras.ops.pad(x, ...)`). `hidden_sizes` holds the
    number of hidden units per hidden axis (`LayerHandler.hidden_units`):
    the heads a call of `MultiHeadAttention` keeps.
    """

    input_shapes: list
    output_shapes: list
    arguments: tuple = None
    hidden_sizes: tuple = ()


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

    #: Whether `macs` knows the layer's cost. A layer without a handler is
    #: not costed: it counts 0 FLOPs, and `count_costs` names it.
    costed = True

    def check(self, layer: keras.Operation, call: LayerCall) -> None:
        """Raises `UnsupportedLayerError` if this layer's config is not handled."""

    def propagate(self, layer: keras.Operation, call: LayerCall, inputs: list, tracer) -> list:
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

    def hidden_units(self, layer: keras.Operation, call: LayerCall) -> tuple:
        """The sizes of the layer's hidden unit axes: units on no tensor.

        An attention layer's heads are units that no input or output channel
        carries. Each hidden axis is a coupling group of its own; the gated
        model gates it inside the layer (`gated_call`), and `rebuild_config`
        and `slice_weights` find its kept units after the outputs' in
        `out_keep`. Defaults to none.
        """
        return ()

    def activation_values(self, layer: keras.Operation, call: LayerCall) -> int | None:
        """Values one sample makes in this call's activations (`None` if unknown).

        What a gradient pass holds for the call, up to a small factor; it
        sizes automatic scoring passes (`CouplingGraph.values_per_sample`).
        Defaults to the outputs' sizes; a layer that makes large tensors of
        its own inside the call (an attention's scores) counts them too.
        `None` if a dimension other than the batch is not fixed.
        """
        sizes = [shape[1:] for shape in call.output_shapes]
        if any(d is None for size in sizes for d in size):
            return None
        return sum(math.prod(size) for size in sizes)

    def gated_call(self, layer: keras.Operation, gates: list, *args, **kwargs):
        """Calls `layer` with its hidden units scaled by `gates`.

        Only for layers with `hidden_units`. `gates` holds one tensor per
        hidden axis, of shape `(units,)` or, one row per sample,
        `(batch, units)`; the call's own arguments follow.
        """
        raise NotImplementedError(f"{type(self).__name__} has no hidden units to gate")

    def is_source(self, layer: keras.Operation, call: LayerCall) -> bool:
        """Whether an output channel can be non-zero when its inputs are zero."""
        return False

    def passes_channels(self, layer: keras.Operation, call: LayerCall) -> bool:
        """Whether output channel `i` is input channel `i` (a per-channel op)."""
        return True

    def rebuild_config(self, layer: keras.Operation, call: LayerCall, config: dict,
                       in_keep: list, out_keep: list) -> dict:
        """Returns the config of the layer with only the kept channels.

        Args:
            layer: the original layer.
            call: the `LayerCall` of one of its calls.
            config: a copy of `layer.get_config()`, free to modify.
            in_keep: per input tensor, the indices of its kept channels.
            out_keep: per output tensor, the indices of its kept channels,
                then per hidden axis (`hidden_units`) its kept units.
        """
        return config

    def slice_weights(self, layer: keras.Operation, call: LayerCall, weights: dict,
                      in_keep: list, out_keep: list) -> dict:
        """Returns the weights restricted to the kept channels.

        `weights` is `{name: array}`, each name the weight's path inside the
        layer (`"kernel"`; `"query/kernel"` in a layer with sublayers);
        `in_keep` and `out_keep` are as in `rebuild_config`. Select and
        reshape only (indexing, `np.take`, `np.moveaxis`, `reshape`):
        `count_costs` also slices `WeightShape` stand-ins, to count the
        parameters of a plan without reading a weight.
        """
        return weights

    def rebuild_arguments(self, layer: keras.Operation, call: LayerCall, in_keep: list,
                          out_keep: list) -> tuple:
        """Returns the `(args, kwargs)` of an operation call with the kept channels.

        Only Keras operations have call arguments to rebuild (a per-channel
        constant of `x * constant`); the default keeps `call.arguments`.
        """
        return call.arguments

    def macs(self, layer: keras.Operation, call: LayerCall) -> int:
        """Multiply-accumulates of one call, from its static shapes."""
        return 0

    def output_weights(self, layer: keras.Operation) -> np.ndarray | None:
        """The weights that make each new unit, output channels on the last axis.

        Magnitude criteria (`l1`, `l2`) read it. `None` for layers that make
        no new units.
        """
        return None

    def hidden_weights(self, layer: keras.Operation) -> list:
        """Per hidden axis, the weights of each hidden unit, units on the last axis.

        Magnitude criteria read them (an attention head's projection
        kernels). An empty list for layers without hidden units.
        """
        return []

    def input_weights(self, layer: keras.Operation) -> list:
        """The weights that read each input channel, input channels on the last axis.

        Group magnitude criteria (`group_l1`, `group_l2`) read them: each
        array is one parameter slice coupled with the channel. An empty list
        for layers that read their inputs without weights.
        """
        return []

    def channel_scale(self, layer: keras.Operation) -> np.ndarray | None:
        """A per-channel scale (BatchNormalization's gamma), or `None`."""
        return None

    def output_parameters(self, layer: keras.Operation) -> list:
        """The weights that, set to zero, make an output channel zero.

        `PruningCallback` masks them to keep pruned units at zero during
        training. Returns `(weight attribute, constraint attribute, channel
        axis)` tuples; the constraint attribute is `None` for a weight the
        optimizer does not train (it is masked at each pruning event only).
        An empty list for a source layer means its output channels cannot be
        zeroed through its weights (e.g. `sigmoid`).
        """
        return []

    def holds_zero(self, layer: keras.Operation, call: LayerCall, zero_inputs: list) -> bool:
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


class WeightShape:
    """A weight's shape standing in for its values, for `slice_weights`.

    Indexing (integers, slices, one index array, `...`), `np.take`,
    `np.moveaxis` and `reshape` give the shape the same operation gives an
    array, in time independent of the weight's size: `count_costs` counts
    the parameters a plan leaves from the shapes alone.
    """

    def __init__(self, shape):
        self.shape = tuple(int(d) for d in shape)

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return math.prod(self.shape)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        ellipses = [i for i, index in enumerate(key) if index is Ellipsis]
        if ellipses:
            at = ellipses[0]
            key = key[:at] + (slice(None),) * (self.ndim - len(key) + 1) + key[at + 1 :]
        shape = []
        for dimension, index in zip(self.shape, key + (slice(None),) * (self.ndim - len(key))):
            if isinstance(index, slice):
                shape.append(len(range(*index.indices(dimension))))
            elif np.ndim(index) == 1:
                index = np.asarray(index)
                shape.append(int(index.sum()) if index.dtype == bool else len(index))
            elif np.ndim(index) != 0:
                raise TypeError(f"WeightShape takes 1-D index arrays only. Received: {index!r}")
        return WeightShape(shape)

    def reshape(self, *shape):
        return WeightShape(np.empty(self.shape, np.dtype([])).reshape(*shape).shape)

    def __array_function__(self, function, types, args, kwargs):
        if function is np.take:
            return self._take(*args, **kwargs)
        if function is np.moveaxis:
            return WeightShape(np.moveaxis(np.empty(self.shape, np.dtype([])), *args[1:]).shape)
        return NotImplemented

    def _take(self, array, indices, axis):
        shape = list(self.shape)
        shape[axis] = len(np.atleast_1d(indices))
        return WeightShape(shape)


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


class BarrierHandler(LayerHandler):
    """No channel that enters or leaves the layer is pruned.

    Args:
        reason: why, in a few words, for the user.
        costs: the handler that counts the layer's MACs (the class's own
            handler when only its config is unsupported), or `None` if the
            cost is unknown. Defaults to `None`.
    """

    def __init__(self, reason, costs=None):
        self.reason = reason
        self.costs = costs
        self.costed = costs is not None

    def macs(self, layer, call):
        return self.costs.macs(layer, call) if self.costed else 0

    def activation_values(self, layer, call):
        return (self.costs if self.costed else super()).activation_values(layer, call)

    def propagate(self, layer, call, inputs, tracer):
        for labels in inputs:
            tracer.fix(labels)
        return [tracer.new_fixed(channel_count(shape)) for shape in call.output_shapes]

    def passes_channels(self, layer, call):
        return False


# Keras operations ---------------------------------------------------------
#
# In Keras 3, `x + 3.0`, `x * y`, `keras.ops.pad(x, ...)` or
# `keras.ops.mean(x, axis=...)` on symbolic tensors are graph nodes whose
# operation is a `keras.Operation`, not a layer. They are keyed by their
# class in the same registry; their handlers read the call's other arguments
# in `call.arguments`. Operations have no weights.


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


class MultiHeadAttentionHandler(LayerHandler):
    """`keras.layers.MultiHeadAttention`: its units are its heads.

    A head is the slice of the query, key and value projections (kernels
    `(dim, num_heads, head_dim)`, biases `(num_heads, head_dim)`) and the rows
    of the output projection (kernel `(num_heads, head_dim, *output_shape)`)
    that belong to it. Heads live on no tensor: they are the layer's hidden
    units (`hidden_units`), gated on each head's attention output before the
    output projection (`gated_call`), and the rebuilt layer has fewer
    `num_heads`. The query, key, value and output channels are fixed: in a
    transformer they are the residual width, which stays whole. The cost is
    the four projections and the two products of attention, `QK^T` and `AV`,
    so that FLOPs targets are honest for transformers; removing a head
    removes its share of all six.

    Calls that return the attention scores (their head axis is not the last)
    and gated attention (`use_gate=True`) are barriers whose MACs are counted.
    """

    _HEAD_WEIGHTS = ("query", "key", "value")  # heads on axis -2 of kernel and bias

    def check(self, layer, call):
        if len(call.output_shapes) > 1:
            raise UnsupportedLayerError(
                "return_attention_scores=True: the scores' head axis is not the "
                "channel axis, so heads are not pruned"
            )
        if layer.get_config().get("use_gate"):
            raise UnsupportedLayerError("use_gate=True: gated attention heads are not pruned")

    def propagate(self, layer, call, inputs, tracer):
        for labels in inputs:
            tracer.fix(labels)
        return [tracer.new_fixed(channel_count(call.output_shapes[0]))]

    def hidden_units(self, layer, call):
        return (layer.num_heads,)

    def is_source(self, layer, call):
        return True

    def passes_channels(self, layer, call):
        return False

    def gated_call(self, layer, gates, query, value, key=None, query_mask=None,
                   value_mask=None, key_mask=None, attention_mask=None,
                   return_attention_scores=False, training=None, use_causal_mask=False):
        # `MultiHeadAttention.call` with each head's output scaled by its gate
        # before the output projection. It reads the Keras masks of its inputs
        # (`mask_zero` embeddings) and combines them as `call` does, through
        # the layer's own (private) mask and attention methods, so that the
        # gated layer computes what the layer computes.
        from keras.src.backend import get_keras_mask, set_keras_mask

        key = value if key is None else key
        query_mask = get_keras_mask(query)
        value_mask = get_keras_mask(value) if value_mask is None else value_mask
        key_mask = get_keras_mask(key) if key_mask is None else key_mask
        for tensor in (query, value, key):
            set_keras_mask(tensor, None)  # read here, not by the projections
        mask = layer._compute_attention_mask(
            query, value, query_mask=query_mask, value_mask=value_mask,
            key_mask=key_mask, attention_mask=attention_mask,
            use_causal_mask=use_causal_mask,
        )
        heads, _ = layer._compute_attention(
            layer.query_dense(query), layer.key_dense(key), layer.value_dense(value),
            mask, training,
        )
        # heads: (batch, *positions, num_heads, head_dim); gate: (num_heads,)
        # or one row per sample, (batch, num_heads).
        gate = keras.ops.cast(gates[0], heads.dtype)
        if len(gate.shape) == 2:
            positions = (1,) * (len(heads.shape) - 3)
            gate = keras.ops.reshape(gate, (-1,) + positions + (gate.shape[-1],))
        output = layer.output_dense(heads * keras.ops.expand_dims(gate, -1))
        if query_mask is not None:
            set_keras_mask(output, query_mask)
        return output

    def hidden_weights(self, layer):
        kernels = [np.moveaxis(keras.ops.convert_to_numpy(getattr(layer, name).kernel), -2, -1)
                   for name in ("query_dense", "key_dense", "value_dense")]
        kernels.append(np.moveaxis(keras.ops.convert_to_numpy(layer.output_dense.kernel), 0, -1))
        return [np.concatenate([k.reshape(-1, layer.num_heads) for k in kernels])]

    def rebuild_config(self, layer, call, config, in_keep, out_keep):
        config["num_heads"] = len(out_keep[-1])
        return config

    def slice_weights(self, layer, call, weights, in_keep, out_keep):
        heads = out_keep[-1]
        sliced = {}
        for name, w in weights.items():
            projection = name.split("/")[0]
            if projection in self._HEAD_WEIGHTS:
                sliced[name] = np.take(w, heads, axis=-2)
            elif name == "attention_output/kernel":
                sliced[name] = w[heads]
            else:
                sliced[name] = w
        return sliced

    def macs(self, layer, call):
        query, key, value, heads = self._shapes(layer, call)
        key_dim, value_dim = layer.key_dim, layer.value_dim
        target, source = _spatial_size(query), _spatial_size(value)
        projections = (
            target * query[-1] * heads * key_dim
            + source * key[-1] * heads * key_dim
            + source * value[-1] * heads * value_dim
            + target * heads * value_dim * math.prod(call.output_shapes[0][len(query) - 1:])
        )
        return projections + heads * self._scores(layer, query, value) * (key_dim + value_dim)

    def activation_values(self, layer, call):
        # The output, and inside the call: the projected queries, keys and
        # values, the scores and their softmax (the largest tensors of a
        # transformer; returned scores are the softmax, counted once), and
        # the heads' outputs.
        output = call.output_shapes[0][1:]
        query, _, value, heads = self._shapes(layer, call)
        if any(d is None for d in output + query[1:] + value[1:]):
            return None
        target, source = _spatial_size(query), _spatial_size(value)
        key_dim, value_dim = layer.key_dim, layer.value_dim
        return math.prod(output) + heads * (
            target * key_dim + source * (key_dim + value_dim)
            + 2 * self._scores(layer, query, value) + target * value_dim
        )

    @staticmethod
    def _shapes(layer, call):
        """The query, key and value shapes of a call, and its number of heads."""
        shapes = fill_arguments(call.arguments, call.input_shapes)
        shapes = _bind_arguments(("query", "value", "key"), shapes)
        query, value = shapes["query"], shapes["value"]
        heads = call.hidden_sizes[0] if call.hidden_sizes else layer.num_heads
        return query, shapes.get("key") or value, value, heads

    @staticmethod
    def _scores(layer, query, value):
        """The size of one head's scores, `query` against `value` positions.

        Along the attention axes (`attention_axes`; all by default), for
        each position along the others.
        """
        positions = range(1, len(query) - 1)
        axes = positions if layer.attention_axes is None else layer.attention_axes
        others = math.prod(query[axis] for axis in positions if axis not in axes)
        return (others * math.prod(query[axis] for axis in axes)
                * math.prod(value[axis] for axis in axes))


def _bind_arguments(names, arguments):
    """`{name: value}` of a call's leading positional or keyword arguments."""
    args, kwargs = arguments
    bound = dict(zip(names, args))
    bound.update((name, kwargs[name]) for name in names if kwargs.get(name) is not None)
    return bound


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


def _register_operations():
    """Handlers of the Keras operations that may appear in functional graphs."""
    from keras.src.ops import core, image, math as ops_math, nn, numpy as knp

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


class LayerScaleHandler(ChannelwiseHandler):
    """ConvNeXt's `LayerScale`: a per-channel scale of `projection_dim` entries."""

    def rebuild_config(self, layer, call, config, in_keep, out_keep):
        config["projection_dim"] = len(out_keep[0])
        return config


def _register_applications():
    """The custom layers of `keras.applications` models."""
    from keras.src.applications import convnext, inception_resnet_v2

    register_handler(convnext.LayerScale, LayerScaleHandler())
    # `inputs[0] + inputs[1] * scale`: the two inputs are coupled, 0 stays 0.
    register_handler(inception_resnet_v2.CustomScaleLayer, MergeHandler())


class ViTPatchingHandler(BarrierHandler):
    """keras-hub's `ViTPatchingAndEmbedding`: a barrier rebuilt from a config that loads.

    Its class token and position embedding are weights of its own, added to
    every channel: the patch channels are the residual width, never pruned.
    Its MACs are the patch embedding's (a strided convolution). keras-hub
    0.32's `get_config` holds `num_patches` and `num_positions`, which its
    constructor refuses, and lacks `use_patch_bias` and `data_format`.
    """

    def __init__(self):
        super().__init__("its class token and position embedding are weights of its own")
        self.costed = True

    def macs(self, layer, call):
        patches = math.prod(call.output_shapes[0][1:-1]) - int(layer.use_class_token)
        return patches * math.prod(layer.patch_size) * layer.num_channels * layer.hidden_dim

    def rebuild_config(self, layer, call, config, in_keep, out_keep):
        for key in ("num_patches", "num_positions"):
            config.pop(key, None)
        config.update(use_patch_bias=layer.use_patch_bias, data_format=layer.data_format)
        return config


_REGISTRY = {}
# Handlers of other libraries' layer classes, keyed by "module.ClassName" so
# that singe_keras imports no optional library.
_REGISTRY_BY_PATH = {
    "keras_hub.src.models.vit.vit_layers.ViTPatchingAndEmbedding": ViTPatchingHandler(),
}


def _lookup(layer):
    cls = type(layer)
    return _REGISTRY.get(cls) or _REGISTRY_BY_PATH.get(f"{cls.__module__}.{cls.__qualname__}")


def register_handler(layer_class: type, handler: LayerHandler) -> None:
    """Registers the handler that describes how to prune through `layer_class`.

    Lookup is by exact class: a subclass of `keras.layers.Conv2D` gets no
    handler (and is a barrier) until one is registered for it, because it may
    override `call`. Keras operations on symbolic tensors (`x + 3.0`,
    `keras.ops.pad`) are graph nodes too, keyed by their `keras.Operation`
    class.

    Args:
        layer_class: a `keras.layers.Layer` (or `keras.Operation`) subclass.
        handler: a `LayerHandler` instance.

    Raises:
        TypeError: if `layer_class` is not a Keras layer or operation class,
            or `handler` is not a `LayerHandler`.

    Example:

    ```python
    singe_keras.register_handler(MyPerChannelScale, ScaleHandler())
    ```
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.Operation)):
        raise TypeError(
            "`layer_class` must be a subclass of `keras.layers.Layer` or "
            f"`keras.Operation`. Received: layer_class={layer_class!r}"
        )
    if not isinstance(handler, LayerHandler):
        raise TypeError(
            "`handler` must be an instance of `singe_keras.LayerHandler`. "
            f"Received: handler={handler!r}"
        )
    _REGISTRY[layer_class] = handler


def has_handler(layer):
    """Whether a handler is registered for the exact class of `layer`."""
    return _lookup(layer) is not None


def get_handler(layer, call):
    """Returns the handler of `layer`, or a `BarrierHandler` saying why not.

    Args:
        layer: a Keras layer (or operation) of a traced graph.
        call: the `LayerCall` of one call of the layer.
    """
    handler = _lookup(layer)
    if handler is None:
        return BarrierHandler(
            f"no handler registered for {type(layer).__name__}, so its FLOPs "
            "are not counted either; use `singe_keras.register_handler` to add one"
        )
    try:
        handler.check(layer, call)
    except UnsupportedLayerError as error:
        return unsupported(layer, handler, error)
    return handler


def unsupported(layer, handler, error):
    """The `BarrierHandler` of a layer whose `handler` raised `error`.

    The class's handler still counts the layer's MACs (a grouped convolution
    costs what it costs), unless channels come first, where its shapes are
    read wrongly.
    """
    channels_last = getattr(layer, "data_format", "channels_last") == "channels_last"
    return BarrierHandler(str(error), costs=handler if channels_last else None)


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
    register_handler(L.MultiHeadAttention, MultiHeadAttentionHandler())


_register_builtins()
_register_operations()
_register_applications()
