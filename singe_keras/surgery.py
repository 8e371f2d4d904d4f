"""Surgery: the physically smaller model of a plan.

`rebuild(graph, plan)` builds a new functional model in which every removed
unit is gone from its producers' outputs and its consumers' inputs. Nested
models stay nested, layers keep their names, and the traced model is never
modified. The result equals the `GatedModel` with the removed gates at 0, to
float32 round-off (except through layers in `graph.inexact_layers`).
"""

import copy

import keras

from singe_keras.graph import Scope, weight_names


def rebuild(graph, plan) -> keras.Model:
    """Builds the model that keeps only the units of `plan`.

    Args:
        graph: the `CouplingGraph` of the model, from `singe_keras.trace`.
        plan: a `Plan` for that graph.

    Returns:
        A new functional `keras.Model` with the same inputs, outputs and layer
        names, fewer filters/units, and weights sliced from the original.

    Raises:
        ValueError: if `plan` does not match the graph's coupling groups.

    Example:

    ```python
    graph = singe_keras.trace(model)
    plan = singe_keras.Plan.full(graph).with_kept("conv", [0, 1, 2])
    smaller = singe_keras.rebuild(graph, plan)
    ```
    """
    return _Surgeon(graph, plan.mask(graph).astype(bool)).model(graph.scope)


class _Surgeon:
    def __init__(self, graph, kept_units):
        self.graph = graph
        self.kept_units = kept_units
        self.models = {}  # id(original nested model) -> rebuilt model
        self.layers = {}  # id(original layer) -> rebuilt layer

    def keep(self, tensor):
        return self.graph.kept_channels(tensor, self.kept_units)

    def model(self, scope):
        if id(scope.model) in self.models:
            return self.models[id(scope.model)]
        inputs = [
            keras.Input(
                shape=shape[1:-1] + (len(self.keep(t)),), dtype=dtype, name=name
            )
            for (name, shape, dtype), t in zip(scope.input_specs, scope.inputs)
        ]
        values = dict(zip(scope.inputs, inputs))
        for item in scope.items:
            if isinstance(item, Scope):
                outputs = item(values, layer=self.model(item))
            else:
                outputs = self.call_layer(item, values)
            values.update(zip(item.outputs, outputs))
        model = keras.Model(
            inputs=keras.tree.map_structure(lambda t: values[t], scope.input_structure),
            outputs=keras.tree.map_structure(lambda t: values[t], scope.output_structure),
            name=scope.model.name,
        )
        self.models[id(scope.model)] = model
        return model

    def call_layer(self, node, values):
        layer = node.layer
        if not isinstance(layer, keras.layers.Layer):
            return self.call_operation(node, values)
        if id(layer) in self.layers:
            return node(values, layer=self.layers[id(layer)])
        in_keep, out_keep = self.graph.kept(node, self.kept_units)
        config = node.handler.rebuild_config(
            layer, node.call, copy.deepcopy(layer.get_config()), in_keep, out_keep
        )
        new = layer_from_config(layer, config)
        if set(new.get_config()) != set(config):
            _save_as_built(new, config)
        outputs = node(values, layer=new)  # builds the new layer
        sliced = node.sliced_weights(in_keep, out_keep)
        if sliced is None:
            new.set_weights(layer.get_weights())
        else:
            # In the original's order: unnamed weights get new names.
            new.set_weights([sliced[name] for name in weight_names(layer)])
        self.layers[id(layer)] = new
        return outputs

    def call_operation(self, node, values):
        """A stateless Keras operation (`x + 3.0`), with the kept channels.

        The rebuilt model gets its own operation, made from the config (with
        a reshape's new target) so that the traced model's operations gain no
        call; per-channel constants are sliced.
        """
        op = node.layer
        in_keep, out_keep = self.graph.kept(node, self.kept_units)
        try:
            config = op.get_config()
        except NotImplementedError:
            config = None  # not serializable: call the (stateless) original
        if config is not None:
            config = node.handler.rebuild_config(op, node.call, config, in_keep, out_keep)
            op = type(op).from_config(config)
        arguments = node.handler.rebuild_arguments(op, node.call, in_keep, out_keep)
        return node(values, layer=op, arguments=arguments)


def layer_from_config(layer, config):
    """A new, unbuilt layer of `layer`'s class with `config`.

    Goes through Keras's own deserialization (registered custom layers
    resolve as when loading a model), without safe mode: the config comes
    from an object already in memory, so a `Lambda`'s function is the user's
    own code, not untrusted input.
    """
    serialized = keras.saving.serialize_keras_object(layer)
    serialized["config"] = config
    serialized.pop("build_config", None)
    return keras.saving.deserialize_keras_object(serialized, safe_mode=False)


def _save_as_built(layer, built_from):
    """Makes `layer`'s config hold the keys it was built from, at their current values.

    For a class whose `get_config` does not give back its constructor's
    arguments, so that a saved model would not load: keras-hub 0.32's
    `ViTPatchingAndEmbedding` adds `num_patches` and `num_positions`, which
    its constructor refuses, and omits `use_patch_bias` and `data_format`
    (its handler repairs the config the layer is rebuilt from). Only this
    instance changes, not the class.
    """
    own = layer.get_config

    def get_config():
        current = own()
        return {key: current.get(key, value) for key, value in built_from.items()}

    layer.get_config = get_config
