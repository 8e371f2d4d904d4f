"""Tracing: the nodes of a Keras model, in execution order, with their static calls.

`TracedNode` is one call of a layer or operation with its handler; `Scope` a
functional model (nested ones included); `Tracer` the union-find of channel
labels that handlers couple. `CouplingGraph` (singe_keras.graph.coupling)
drives them.
"""

import dataclasses

import keras
import numpy as np

from singe_keras import handlers as handlers_lib
from singe_keras import internals


class Tracer:
    """Union-find over channel labels, used by the handlers while tracing."""

    def __init__(self):
        self._parent = []
        self._fixed = []
        self._spaces = []  # (sort key, layer path, labels) of each producer
        self._units_of_layer = {}
        self.path = None  # path of the layer being traced
        self.depth = 0  # its distance from the model inputs

    def _new(self, count, fixed):
        start = len(self._parent)
        self._parent.extend(range(start, start + count))
        self._fixed.extend([fixed] * count)
        return np.arange(start, start + count)

    def new_units(self, layer, count, axis=None):
        """Labels for the `count` new units of a producer (once per layer).

        `axis`: the index of a hidden unit axis (attention heads), whose
        units are the layer's too but not its output channels.
        """
        key = (id(layer), axis)
        if key not in self._units_of_layer:
            labels = self._new(count, fixed=False)
            self._units_of_layer[key] = labels
            self._spaces.append(((self.depth, self.path), self.path, labels))
        return self._units_of_layer[key]

    def new_fixed(self, count):
        """Labels for `count` channels that are never pruned."""
        return self._new(count, fixed=True)

    def find(self, label):
        root = label
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[label] != root:
            self._parent[label], label = root, self._parent[label]
        return root

    def couple(self, labels_a, labels_b):
        """Channels `labels_a[i]` and `labels_b[i]` are removed together."""
        if len(labels_a) != len(labels_b):
            raise handlers_lib.UnsupportedLayerError(
                f"cannot couple {len(labels_a)} channels with {len(labels_b)}"
            )
        for a, b in zip(labels_a, labels_b):
            root_a, root_b = self.find(a), self.find(b)
            if root_a != root_b:
                self._parent[root_b] = root_a
                self._fixed[root_a] = self._fixed[root_a] or self._fixed[root_b]

    def fix(self, labels):
        """The channels `labels` are never pruned."""
        for label in labels:
            self._fixed[self.find(label)] = True

    def is_fixed(self, label):
        return self._fixed[self.find(label)]


@dataclasses.dataclass(eq=False)
class TracedNode:
    """One call of a leaf layer, with flat tensor ids for its inputs/outputs.

    `hidden` holds one tensor id per hidden unit axis of the layer
    (`LayerHandler.hidden_units`, attention heads): labels on no real
    tensor, numbered and kept like a tensor's channels.
    """

    layer: object
    path: str
    call: handlers_lib.LayerCall
    handler: handlers_lib.LayerHandler
    inputs: list
    outputs: list
    _keras_node: object
    _input_keys: list
    hidden: list = dataclasses.field(default_factory=list)

    def resized(self, in_keep, out_keep):
        """The call's `LayerCall` with only the kept channels (shapes only).

        Args:
            in_keep: per input tensor, the indices of its kept channels.
            out_keep: per output tensor, likewise, then per hidden axis.
        """
        return self.call._replace(
            input_shapes=[s[:-1] + (len(k),) for s, k in zip(self.call.input_shapes, in_keep)],
            output_shapes=[
                s[:-1] + (len(k),) for s, k in zip(self.call.output_shapes, out_keep)
            ],
            hidden_sizes=tuple(len(k) for k in out_keep[len(self.outputs):]),
        )

    def sliced_weights(self, in_keep, out_keep, values=True):
        """The layer's weights with only the kept channels.

        Args:
            in_keep: per input tensor, the indices of its kept channels.
            out_keep: per output tensor, likewise, then per hidden axis.
            values: whether to read the weights. `False` slices their
                shapes (`handlers.WeightShape`s) instead, to count the
                rebuilt layer's parameters without reading a weight.
                Defaults to `True`.

        Returns:
            `{name: array or WeightShape}` of sliced weights (named as in
            `weight_names`), or `None` if no channel of this call is removed
            (the weights are then unchanged).
        """
        call = self.resized(in_keep, out_keep)
        if call[:2] == self.call[:2] and call.hidden_sizes == self.call.hidden_sizes:
            return None
        weights = {
            name: keras.ops.convert_to_numpy(w) if values else handlers_lib.WeightShape(w.shape)
            for name, w in zip(weight_names(self.layer), getattr(self.layer, "weights", ()))
        }
        return self.handler.slice_weights(self.layer, self.call, weights, in_keep, out_keep)

    def __call__(self, values, layer=None, arguments=None, hidden_gates=None):
        """Calls `layer` (default: the traced one) on `values[tensor id]`.

        `arguments`: the `(args, kwargs)` of an operation call, with
        `OperationInput`s for its input tensors (default: the traced ones).
        `hidden_gates`: one gate tensor per hidden axis, for the handler's
        `gated_call` (default: an ordinary call).
        """
        if arguments is None:
            local = {key: values[t] for key, t in zip(self._input_keys, self.inputs)}
            args, kwargs = self._keras_node.arguments.fill_in(local)
        else:
            args, kwargs = handlers_lib.fill_arguments(
                arguments, [values[t] for t in self.inputs]
            )
        layer = layer or self.layer
        if hidden_gates is None:
            outputs = layer(*args, **kwargs)
        else:
            outputs = self.handler.gated_call(layer, hidden_gates, *args, **kwargs)
        return keras.tree.flatten(outputs)


def weight_names(layer):
    """The names of a layer's weights, in order: their paths inside the layer.

    `"kernel"` for a Dense layer; `"query/kernel"` for the query projection
    of a `MultiHeadAttention` (whose four kernels are all called `kernel`).
    A variable's path starts with the name scopes it was built in (a parent
    layer's, sometimes), then the layer's name.
    """
    names = []
    for w in getattr(layer, "weights", ()):
        parts = w.path.split("/")
        inside = parts[parts.index(layer.name) + 1:] if layer.name in parts[:-1] else [w.name]
        names.append("/".join(inside))
    return names


@dataclasses.dataclass(eq=False)
class Scope:
    """A functional model (the traced one, or one nested in it) and its items.

    `items` holds `TracedNode`s and nested `Scope`s in execution order. A
    nested scope is called like a node (`scope(values, layer=model)`).
    """

    model: object
    path: str
    inputs: list
    outputs: list
    input_specs: list  # (name, shape, dtype) per input
    input_structure: object
    output_structure: object
    items: list
    call_node: TracedNode = None
    call_arguments: tuple = None  # a traced custom layer: its one positional input

    def __call__(self, values, layer):
        return self.call_node(values, layer=layer, arguments=self.call_arguments)

    def nodes(self):
        """The leaf `TracedNode`s of this scope and its nested scopes, in order."""
        for item in self.items:
            if isinstance(item, Scope):
                yield from item.nodes()
            else:
                yield item


def _function_of(model):
    """The `Functional` behind a functional or built Sequential model, else None."""
    if isinstance(model, keras.Sequential):
        return internals.sequential_function(model)
    if internals.is_functional(model):
        return model
    return None


def _names(layers):
    """Layer names from a name, a layer, or a list of them."""
    if isinstance(layers, (str, keras.layers.Layer)):
        layers = [layers]
    return [getattr(x, "name", x) for x in layers or ()]


def _is_composite_candidate(layer):
    """A custom layer (not Keras's own) that no handler describes."""
    return (
        isinstance(layer, keras.layers.Layer)
        and not type(layer).__module__.startswith("keras.")
        and not handlers_lib.has_handler(layer)
    )


def _trace_call(layer, node):
    """`(functional model of layer.call, None)`, or `(None, reason)`.

    A layer is traced through when its call is made of Keras layers and
    operations on one positional input (a tensor or a list of tensors). Its
    own weights (used outside sublayers) would become constants: such a
    layer stays a barrier, as does one whose call needs concrete values.
    """
    inner = {id(w) for w in internals.sublayer_weights(layer)}
    if any(id(w) not in inner for w in layer.weights):
        return None, "it has weights of its own (outside its sublayers)"
    args, kwargs = node.arguments.args, node.arguments.kwargs
    if len(args) != 1 or any(
        isinstance(x, keras.KerasTensor) for x in keras.tree.flatten(kwargs)
    ):
        return None, "it is called with more than one tensor argument"
    inputs = keras.tree.map_structure(
        lambda x: keras.Input(batch_shape=x.shape, dtype=x.dtype)
        if isinstance(x, keras.KerasTensor) else x,
        args[0],
    )
    try:
        outputs = layer.call(inputs, **kwargs)
        function = keras.Model(inputs, outputs, name=layer.name)
    except Exception as error:  # the reason is reported; the layer is a barrier
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return None, (
            "its call cannot be traced on symbolic inputs "
            f"({type(error).__name__}: {first_line[:200]})"
        )
    traced = [tuple(kt.shape) for kt in function.outputs]
    if traced != [tuple(kt.shape) for kt in node.outputs]:
        return None, "its call traced on symbolic inputs gives other output shapes"
    return function, None


def _arguments_of(node):
    """A call's `(args, kwargs)`, input tensors as `OperationInput`s."""
    index = {}
    for i, kt in enumerate(node.input_tensors):
        index.setdefault(id(kt), i)
    return node.arguments.convert(
        lambda x: handlers_lib.OperationInput(index[id(x)])
        if isinstance(x, keras.KerasTensor) else x
    )


def _ordered_nodes(function):
    """Keras's own execution order (`Function._run_through_graph`)."""
    for node in internals.nodes_in_order(function):
        if node.operation is not None and not node.is_input:
            yield node
