"""The handler of `keras.layers.MultiHeadAttention`: its heads are its units."""

import math

import keras
import numpy as np

from singe_keras import internals
from singe_keras.handlers.base import (
    LayerHandler,
    UnsupportedLayerError,
    _spatial_size,
    channel_count,
    register_handler,
)
from singe_keras.handlers.operations import fill_arguments


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
        key = value if key is None else key
        query_mask = internals.keras_mask(query)
        value_mask = internals.keras_mask(value) if value_mask is None else value_mask
        key_mask = internals.keras_mask(key) if key_mask is None else key_mask
        for tensor in (query, value, key):
            internals.set_keras_mask(tensor, None)  # read here, not by the projections
        mask = internals.attention_mask(
            layer, query, value, query_mask=query_mask, value_mask=value_mask,
            key_mask=key_mask, attention_mask=attention_mask,
            use_causal_mask=use_causal_mask,
        )
        heads, _ = internals.attention(
            layer, layer.query_dense(query), layer.key_dense(key), layer.value_dense(value),
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
            internals.set_keras_mask(output, query_mask)
        return output

    def hidden_weights(self, layer):
        kernels = [np.moveaxis(keras.ops.convert_to_numpy(getattr(layer, name).kernel), -2, -1)
                   for name in ("query_dense", "key_dense", "value_dense")]
        kernels.append(np.moveaxis(keras.ops.convert_to_numpy(layer.output_dense.kernel), 0, -1))
        return [np.concatenate([k.reshape(-1, layer.num_heads) for k in kernels])]

    def hidden_parameters(self, layer):
        # A head whose values are zero adds zero to the output, whatever its
        # attention weights: masking the value projection removes it exactly.
        return [[("value_dense.kernel", None, -2), ("value_dense.bias", None, -2)]]

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


register_handler(keras.layers.MultiHeadAttention, MultiHeadAttentionHandler())
