"""Coupling groups: which channels of a Keras model must be removed together.

`trace(model)` walks a functional or Sequential model (nested models
included, and custom layers made of Keras layers and operations, whose `call`
is traced on symbolic inputs) and labels every channel of every tensor. A
producer (a conv or a Dense) creates new labels; the layer handlers of
`singe_keras.handlers` pass them on, concatenate them, tile them (Flatten) or
couple them (Add). Coupled labels form one *unit*; units whose channels are
coupled with each other form a *coupling group* (docs/method.md, "Units,
coupling groups, gates").

Keras's private graph structures (`Functional._nodes_by_depth`) are read
through `singe_keras.internals`; everything else sees a `CouplingGraph`.
"""

import collections
import dataclasses

import keras
import numpy as np

from singe_keras import handlers as handlers_lib
from singe_keras import internals, user_warning
from singe_keras.graph.tracing import (
    Scope,
    TracedNode,
    Tracer,
    _arguments_of,
    _function_of,
    _is_composite_candidate,
    _names,
    _ordered_nodes,
    _trace_call,
)


@dataclasses.dataclass(frozen=True)
class CouplingGroup:
    """Channels that are removed together, unit by unit.

    Attributes:
        name: the path of the group's first producer layer (e.g.
            `"stem_conv"`, or `"backbone/conv1"` inside a nested model).
        size: the number of prunable units.
        producers: paths of the layers whose new units belong to the group.
        layers: paths of every layer that reads or writes the group's
            channels (producers, BatchNormalization, consumers, ...).
    """

    name: str
    size: int
    producers: tuple
    layers: tuple


class CouplingGraph:
    """A traced model: its coupling groups and how to run or rebuild it.

    Build one with `singe_keras.trace(model)`.

    Attributes:
        model: the traced model (never modified).
        groups: the `CouplingGroup`s with at least one prunable unit.
        barriers: `{layer path: reason}` of the layers no channel is pruned
            through.
        inexact_layers: paths of prunable layers that mix channels
            (LayerNormalization over channels): with them, a rebuilt model is
            not exactly the gated model.
        ignored_layers: the names in `ignored_layers`.
    """

    def __init__(self, model: keras.Model, ignored_layers: list | tuple = (),
                 warn: bool = True) -> None:
        function = _function_of(model)
        if function is None:
            raise TypeError(
                "singe_keras can only trace functional and Sequential Keras models "
                "(nested ones included), because it needs the graph of layer calls. "
                f"Received: model={model!r} of class {type(model).__name__}. If it "
                "is a subclassed model, rewrite it with the functional API, or "
                "build a Sequential model with an `Input`."
            )
        self.model = model
        self.barriers = {}
        self._tracer = Tracer()
        self._labels = {}
        self._first_call_inputs = {}
        self._depth = collections.defaultdict(int)  # tensor id -> depth
        self._next_tensor = 0
        self._composites = {}  # id(custom layer) -> (Functional or None, reason)
        self._ignored = set(_names(ignored_layers))
        self.scope = self._trace_function(model, function, "", None, None)
        self.nodes = list(self.scope.nodes())
        for t in self.scope.outputs:
            self._tracer.fix(self._labels[t])  # model outputs are never pruned
        self._fix_ignored(ignored_layers)
        self._unit_indices = {}
        self._number_units()
        self.inexact_layers = [
            n.path
            for n in self.nodes
            if n.handler.mixes_channels
            and any(self.unit_indices(t).max(initial=-1) >= 0 for t in n.inputs)
        ]
        if warn:
            for (class_name, reason), paths in self.barrier_causes().items():
                user_warning.warn(
                    f"No channel is pruned through {describe_layers(class_name, paths)}: "
                    f"{reason}.",
                )

    # Tracing ---------------------------------------------------------------

    def _tensor(self):
        self._next_tensor += 1
        return self._next_tensor - 1

    def _trace_function(self, model, function, prefix, input_ids, call_node):
        keys = {}
        if input_ids is None:
            input_ids = []
            for kt in function.inputs:
                input_ids.append(self._tensor())
                self._labels[input_ids[-1]] = self._tracer.new_fixed(
                    handlers_lib.channel_count(kt.shape)
                )
        for kt, t in zip(function.inputs, input_ids):
            keys[id(kt)] = t
        items = []
        for node in _ordered_nodes(function):
            if any(id(kt) not in keys for kt in node.input_tensors):
                continue  # not reachable from the inputs, as in Keras
            inputs = [keys[id(kt)] for kt in node.input_tensors]
            layer = node.operation
            path = prefix + layer.name
            call = handlers_lib.LayerCall(
                [tuple(kt.shape) for kt in node.input_tensors],
                [tuple(kt.shape) for kt in node.outputs],
                _arguments_of(node),
            )
            traced = TracedNode(
                layer, path, call, None, inputs, None, node,
                [id(kt) for kt in node.input_tensors],
            )
            nested, inner, reason = _function_of(layer), layer, None
            if nested is None and _is_composite_candidate(layer):
                if {layer.name, path} & self._ignored:
                    reason = "named in `ignored_layers`, so not traced through"
                else:
                    nested, reason = self._composite_function(layer, node)
                    inner = nested
            if nested is not None:
                item = self._trace_function(inner, nested, path + "/", inputs, traced)
                if inner is not layer:  # a custom layer's call, traced through
                    item.call_arguments = ((_arguments_of(node)[0][0],), {})
                outputs = item.outputs
            else:
                outputs = self._trace_layer(traced, reason)
                item = traced
            for kt, t in zip(node.outputs, outputs):
                keys[id(kt)] = t
            items.append(item)
        inputs_kt = function.inputs
        return Scope(
            model=model,
            path=prefix.rstrip("/"),
            inputs=list(input_ids),
            outputs=[keys[id(kt)] for kt in function.outputs],
            input_specs=[
                (internals.producing_operation(kt).name, tuple(kt.shape), kt.dtype)
                for kt in inputs_kt
            ],
            input_structure=keras.tree.map_structure(
                lambda kt: keys[id(kt)], internals.input_structure(function)
            ),
            output_structure=keras.tree.map_structure(
                lambda kt: keys[id(kt)], internals.output_structure(function)
            ),
            items=items,
            call_node=call_node,
        )

    def _composite_function(self, layer, node):
        """The functional model of a custom layer's `call`, or why there is none.

        Calling `layer.call` on symbolic inputs records its inner layers and
        operations as graph nodes, so that they are traced (and pruned) like
        those of a nested model. A layer called several times is traced once.
        """
        if id(layer) not in self._composites:
            self._composites[id(layer)] = _trace_call(layer, node)
        return self._composites[id(layer)]

    def _trace_layer(self, traced, reason=None):
        tracer, layer = self._tracer, traced.layer
        tracer.path = traced.path
        tracer.depth = 1 + max((self._depth[t] for t in traced.inputs), default=0)
        inputs = [self._labels[t] for t in traced.inputs]
        if reason is None:
            handler = handlers_lib.get_handler(layer, traced.call)
        else:
            handler = handlers_lib.BarrierHandler(reason)
        try:
            outputs = handler.propagate(layer, traced.call, inputs, tracer)
        except handlers_lib.UnsupportedLayerError as error:
            handler = handlers_lib.unsupported(layer, handler, error)
            outputs = handler.propagate(layer, traced.call, inputs, tracer)
        if isinstance(handler, handlers_lib.BarrierHandler):
            self.barriers[traced.path] = handler.reason
        # A layer called several times reads its inputs with one set of
        # weights: channel i of every call is removed together.
        if getattr(layer, "weights", None):
            first = self._first_call_inputs.setdefault(id(layer), inputs)
            for a, b in zip(first, inputs):
                tracer.couple(a, b)
        hidden = [
            tracer.new_units(layer, count, axis)
            for axis, count in enumerate(handler.hidden_units(layer, traced.call))
        ]
        traced.handler = handler
        traced.call = traced.call._replace(hidden_sizes=tuple(len(h) for h in hidden))
        traced.outputs = [self._new_tensor(labels) for labels in outputs]
        traced.hidden = [self._new_tensor(labels) for labels in hidden]
        return traced.outputs

    def _new_tensor(self, labels):
        t = self._tensor()
        self._labels[t] = np.asarray(labels)
        self._depth[t] = self._tracer.depth
        return t

    def _fix_ignored(self, ignored_layers):
        names = _names(ignored_layers)
        self.ignored_layers = names
        by_name = {}
        for node in self.nodes:
            by_name.setdefault(node.layer.name, []).append(node)
            by_name.setdefault(node.path, []).append(node)
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ValueError(
                f"`ignored_layers` names layers that are not in the model: {unknown}. "
                "Pass layer names or layer objects of the model. "
                f"Received: ignored_layers={ignored_layers}"
            )
        for name in names:
            for node in by_name[name]:
                for t in node.outputs + node.hidden:
                    self._tracer.fix(self._labels[t])

    def _number_units(self):
        """Gives each prunable unit a group and an index within it."""
        tracer = self._tracer
        # A group is named after, and numbers its units like, its producer
        # closest to the inputs (ties: by path).
        spaces = sorted(tracer._spaces, key=lambda space: space[0])
        roots_spaces = {}
        for s, (_, _, labels) in enumerate(spaces):
            for label in labels:
                if not tracer.is_fixed(label):
                    roots_spaces.setdefault(tracer.find(label), []).append(s)
        # Spaces sharing a unit belong to one group.
        space_parent = list(range(len(spaces)))

        def space_root(s):
            while space_parent[s] != s:
                s = space_parent[s]
            return s

        for shared in roots_spaces.values():
            for s in shared[1:]:
                a, b = space_root(shared[0]), space_root(s)
                space_parent[max(a, b)] = min(a, b)
        self._unit_of_root = {}  # root label -> global unit index
        group_units = {}
        for s, (_, _, labels) in enumerate(spaces):
            units = group_units.setdefault(space_root(s), [])
            for label in labels:
                root = tracer.find(label)
                if not tracer.is_fixed(root) and root not in self._unit_of_root:
                    self._unit_of_root[root] = None
                    units.append(root)
        self.groups, self._group_offsets = [], {}
        offset = 0
        for s, units in group_units.items():
            if not units:
                continue
            for i, root in enumerate(units):
                self._unit_of_root[root] = offset + i
            members = [spaces[p][1] for p in range(len(spaces)) if space_root(p) == s]
            self._group_offsets[members[0]] = offset
            self.groups.append(CouplingGroup(members[0], len(units), tuple(members), ()))
            offset += len(units)
        self.num_units = offset
        self._unit_group = np.repeat(
            np.arange(len(self.groups)), [g.size for g in self.groups]
        ).astype(int)
        touching = {g.name: [] for g in self.groups}
        for node in self.nodes:
            units = np.concatenate(
                [self.unit_indices(t) for t in node.inputs + node.outputs + node.hidden]
                or [[]]
            )
            for gi in np.unique(self._unit_group[units[units >= 0].astype(int)]):
                touching[self.groups[gi].name].append(node.path)
        self.groups = [
            dataclasses.replace(g, layers=tuple(dict.fromkeys(touching[g.name])))
            for g in self.groups
        ]

    # Queries ---------------------------------------------------------------

    def group(self, name: str) -> CouplingGroup:
        """Returns the `CouplingGroup` called `name`."""
        for g in self.groups:
            if g.name == name:
                return g
        raise ValueError(
            f"No coupling group named {name!r}. "
            f"Groups: {[g.name for g in self.groups]}"
        )

    def group_offset(self, name: str) -> int:
        """Index of the group's first unit in the flat vector of all units."""
        self.group(name)
        return self._group_offsets[name]

    def unit_indices(self, tensor: int) -> np.ndarray:
        """Per channel of a traced tensor, its flat unit index, or -1 if fixed."""
        if tensor not in self._unit_indices:
            self._unit_indices[tensor] = np.array(
                [
                    -1 if self._tracer.is_fixed(label)
                    else self._unit_of_root[self._tracer.find(label)]
                    for label in self._labels[tensor]
                ],
                dtype=int,
            )
        return self._unit_indices[tensor]

    def kept_channels(self, tensor: int, kept_units: np.ndarray) -> np.ndarray:
        """Indices of the channels of a traced tensor that `kept_units` keeps.

        Args:
            tensor: a traced tensor id (`node.inputs`, `node.outputs`).
            kept_units: a boolean `(num_units,)` mask; fixed channels are
                always kept.
        """
        units = self.unit_indices(tensor)
        kept = units < 0
        kept[~kept] = kept_units[units[~kept]]
        return np.flatnonzero(kept)

    def any_prunable(self, tensors):
        """Whether a channel of one of the traced tensors (or hidden axes) is a unit."""
        return any((self.unit_indices(t) >= 0).any() for t in tensors)

    def kept(self, node, kept_units):
        """`(in_keep, out_keep)` of a traced node for `resized` and the handlers.

        Per input tensor, then per output tensor and hidden axis, the indices
        of the channels (units) that `kept_units` (as in `kept_channels`)
        keeps.
        """
        return (
            [self.kept_channels(t, kept_units) for t in node.inputs],
            [self.kept_channels(t, kept_units) for t in node.outputs + node.hidden],
        )

    def values_per_sample(self) -> int | None:
        """Values one sample makes in the traced calls' activations (`None` if unknown).

        The size of a forward pass's activations per example: what a
        gradient pass holds in memory, up to a small factor. Each call's
        handler counts them (`LayerHandler.activation_values`): its outputs,
        and an attention's scores. `None` if a dimension other than the
        batch is not fixed.
        """
        values = [node.handler.activation_values(node.layer, node.call) for node in self.nodes]
        return None if None in values else int(sum(values))

    def layer_nodes(self) -> list:
        """The first traced call of every layer: a shared layer counts once."""
        first = {}
        for node in self.nodes:
            first.setdefault(id(node.layer), node)
        return list(first.values())

    def consumers(self, tensor: int) -> list:
        """The traced nodes that read a tensor."""
        return [n for n in self.nodes if tensor in n.inputs]

    def barrier_causes(self) -> dict:
        """The barriers grouped by cause: `{(class name, reason): [paths]}`."""
        causes = {}
        for node in self.nodes:
            if node.path in self.barriers:
                paths = causes.setdefault((type(node.layer).__name__, node.handler.reason), [])
                if node.path not in paths:
                    paths.append(node.path)
        return causes

    def _macs(self):
        return {node: node.handler.macs(node.layer, node.call) for node in self.nodes}

    def _prunable_nodes(self):
        return [n for n in self.nodes if self.any_prunable(n.inputs + n.outputs + n.hidden)]

    def prunable_flops_share(self) -> float:
        """The fraction of the model's FLOPs in layer calls with a prunable channel.

        Those are the FLOPs that pruning can reduce (as in `summary()`);
        layers that are not costed count 0.

        Returns:
            A float in [0, 1].
        """
        macs = self._macs()
        return sum(macs[n] for n in self._prunable_nodes()) / max(sum(macs.values()), 1)

    def summary(self) -> str:
        """A short text: the share of the FLOPs that pruning can reach, and why not the rest.

        A layer call's FLOPs are prunable when one of its input or output
        channels belongs to a coupling group. The others are in barriers
        (grouped by cause), or read and write only fixed channels (the model's
        inputs and outputs, `ignored_layers`, the neighbours of barriers).
        Layers without a handler are not costed, and listed.

        Returns:
            A multi-line string.

        Example:

        ```python
        print(singe_keras.trace(model).summary())
        ```
        """
        macs = self._macs()
        total = sum(macs.values())

        def share(nodes):
            return f"{100 * sum(macs[n] for n in nodes) / max(total, 1):5.1f}%"

        prunable = self._prunable_nodes()
        lines = [
            f"Model {self.model.name!r}: {2 * total:,} FLOPs; {len(self.groups)} coupling "
            f"groups of {self.num_units:,} prunable units.",
            f"{share(prunable)} of the FLOPs are in layers with prunable channels.",
        ]
        uncosted = {}
        for (class_name, reason), paths in self.barrier_causes().items():
            nodes = [n for n in self.nodes if n.path in paths]
            if not nodes[0].handler.costed:
                uncosted[class_name] = paths
            lines.append(
                f"{share(nodes)} in barriers: {describe_layers(class_name, paths)}: {reason}."
            )
        fixed = [
            n for n in self.nodes
            if macs[n] and n not in prunable and n.path not in self.barriers
        ]
        if fixed:
            fixed.sort(key=lambda n: -macs[n])
            listed = ", ".join(n.path for n in fixed[:3]) + (", ..." if len(fixed) > 3 else "")
            lines.append(
                f"{share(fixed)} in {len(fixed)} layer call(s) that read and write only "
                f"fixed channels (model inputs/outputs, ignored layers, next to "
                f"barriers): {listed}."
            )
        for class_name, paths in uncosted.items():
            lines.append(
                f"Not costed (counted as 0 FLOPs): {describe_layers(class_name, paths)}."
            )
        return "\n".join(lines)

    def __repr__(self):
        return (
            f"<CouplingGraph model={self.model.name!r} groups={len(self.groups)} "
            f"units={self.num_units} barriers={len(self.barriers)}>"
        )


def describe_layers(class_name, paths, shown=3):
    """`"40 layers of class X (x, x_1, x_2, ...)"`, for warnings that group layers."""
    listed = ", ".join(paths[:shown]) + (", ..." if len(paths) > shown else "")
    count = "1 layer" if len(paths) == 1 else f"{len(paths)} layers"
    return f"{count} of class {class_name} ({listed})"


def trace(model: keras.Model, ignored_layers: list | None = None) -> CouplingGraph:
    """Finds the coupling groups of a Keras model.

    Channels that must disappear together (the producers of a residual `Add`,
    a BatchNormalization after a conv, the two sides of a squeeze-excitation
    `Multiply`, ...) form one unit of a coupling group. Model outputs and the
    outputs of `ignored_layers` are never pruned. Keras operations on
    symbolic tensors (`x + 3.0`, `keras.ops.pad`) are nodes with handlers too.
    A custom layer without a handler is traced through when its `call` is
    made of Keras layers and operations (its sublayers become nodes, named
    `"block/conv"`; the rebuilt model holds it as a nested functional model).
    Other layers without a handler are barriers: one warning per cause names
    them and says why. `graph.summary()` shows how much of the FLOPs can be
    pruned.

    Args:
        model: a functional or Sequential `keras.Model`; nested models (a
            `keras.applications` backbone used as a layer) are traced through.
        ignored_layers: names (or layer objects) whose output channels are
            never pruned; a custom layer named here is kept whole (not
            traced through). Defaults to `None`.

    Returns:
        A `CouplingGraph`.

    Raises:
        TypeError: if `model` is not a functional or Sequential model.
        ValueError: if `ignored_layers` names a layer not in the model.

    Example:

    ```python
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(16, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(x))
    graph = singe_keras.trace(keras.Model(inputs, outputs))
    graph.groups  # [CouplingGroup(name='conv', size=16, ...)]
    ```
    """
    return CouplingGraph(model, ignored_layers)
