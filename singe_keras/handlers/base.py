"""The handler protocol and registry: per-layer knowledge, keyed by layer class.

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

A layer class with no handler is a *barrier* (`BarrierHandler`): no channel
entering or leaving it is ever pruned (unless it is a custom layer that the
graph traces through). Register a handler for your own layer with
`register_handler`.
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

    def hidden_parameters(self, layer: keras.Operation) -> list:
        """Per hidden unit axis, the weights that, set to zero, remove its units.

        As `output_parameters`, for `PruningCallback`'s masks of hidden units
        (attention heads): one list per axis of `hidden_units`, of `(weight
        path, constraint attribute, unit axis)` tuples; a path may name a
        sublayer's weight (`"value_dense.kernel"`).
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


_REGISTRY = {}
# Handlers of other libraries' layer classes, keyed by "module.ClassName" so
# that singe_keras imports no optional library.
_REGISTRY_BY_PATH = {}


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


def register_handler_by_path(path, handler):
    """Registers `handler` for the class named `path` ("module.ClassName").

    For other libraries' layers: the class is matched by name, so that
    singe_keras imports no optional library.
    """
    _REGISTRY_BY_PATH[path] = handler
