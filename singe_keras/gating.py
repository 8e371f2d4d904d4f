"""The gated model: a traced model with one gate value per unit.

Each coupling group G has a gate vector m_G that scales the group's channels
after every layer that can make a channel non-zero on its own (a conv with its
bias, a BatchNormalization, `sigmoid`): docs/method.md, "Units, coupling groups,
gates". Hidden units (attention heads) are gated inside their layer, by its
handler's `gated_call`. With every gate at 1 the gated model is the original
model; with the gates of some units at 0 it is the model with those units
removed, which is what `singe_keras.rebuild` builds physically.
"""

import keras
from keras import ops


class GatedModel(keras.Model):
    """Runs a traced model with a gate value per prunable unit.

    The gates are one non-trainable variable, `gates`, of shape
    `(graph.num_units,)` laid out group by group (`graph.group_offset`).
    Changing its value never retraces a `tf.function`. A gate tensor can also
    be passed to `call`, with shape `(num_units,)` or, one row per sample,
    `(batch, num_units)`: that is how gradients with respect to the gates are
    taken (watch the tensor), and per-sample gates give per-sample gradients.

    The gated model calls the traced model's own layers: it shares their
    weights, so training it trains them. Trace a copy
    (`keras.models.clone_model`) to keep the original untouched.

    Args:
        graph: a `CouplingGraph` from `singe_keras.trace`.

    Example:

    ```python
    graph = singe_keras.trace(model)
    gated = singe_keras.GatedModel(graph)
    gated.set_plan(plan)           # units removed by `plan` gated to 0
    y = gated(x)                   # == singe_keras.rebuild(graph, plan)(x)
    ```
    """

    def __init__(self, graph, name: str | None = None) -> None:
        super().__init__(name=name or f"{graph.model.name}_gated")
        self.graph = graph
        self.traced_layers = [n.layer for n in graph.layer_nodes()]
        self.gates = self.add_weight(
            shape=(graph.num_units,),
            initializer="ones",
            trainable=False,
            name="gates",
        )
        # Per gated tensor: indices into [1, *gates] (0 = a fixed channel).
        self._gate_index = {}
        for node in graph.nodes:
            if not node.handler.is_source(node.layer, node.call):
                continue
            for t in node.outputs:
                units = graph.unit_indices(t)
                if (units < 0).all() or self._gated_downstream(t):
                    continue
                self._gate_index[t] = units + 1
        # Per node with prunable hidden units: their indices, per hidden axis.
        self._hidden_index = {
            node: [graph.unit_indices(t) + 1 for t in node.hidden]
            for node in graph.nodes
            if graph.any_prunable(node.hidden)
        }

    def _gated_downstream(self, tensor):
        """Whether every reader is a gated per-channel op (conv -> BN: gate the BN)."""
        readers = self.graph.consumers(tensor)
        return bool(readers) and all(
            n.handler.is_source(n.layer, n.call)
            and n.handler.passes_channels(n.layer, n.call)
            for n in readers
        )

    def set_plan(self, plan) -> None:
        """Sets the gates of the units `plan` removes to 0 and all others to 1."""
        self.gates.assign(plan.mask(self.graph))

    def call(self, inputs, gates=None):
        gates = self.gates if gates is None else ops.convert_to_tensor(gates)
        table = ops.concatenate([ops.ones_like(gates[..., :1]), gates], axis=-1)
        scope = self.graph.scope
        values = dict(zip(scope.inputs, keras.tree.flatten(inputs)))
        for node in self.graph.nodes:
            hidden = self._hidden_index.get(node)
            if hidden is None:
                outputs = node(values)
            else:
                outputs = node(values, hidden_gates=[ops.take(table, i, axis=-1) for i in hidden])
            for t, y in zip(node.outputs, outputs):
                index = self._gate_index.get(t)
                if index is not None:
                    y = y * self._broadcast(ops.take(table, index, axis=-1), y)
                values[t] = y
        return keras.tree.map_structure(lambda t: values[t], scope.output_structure)

    @staticmethod
    def _broadcast(gate, y):
        gate = ops.cast(gate, y.dtype)
        if len(gate.shape) == 1:
            return gate
        rank = len(y.shape)
        return ops.reshape(gate, (-1,) + (1,) * (rank - 2) + (gate.shape[-1],))
