"""Handlers of the custom layers of `keras.applications` and keras-hub models."""

import math

from singe_keras import internals
from singe_keras.handlers.base import (
    BarrierHandler,
    register_handler,
    register_handler_by_path,
)
from singe_keras.handlers.layers import ChannelwiseHandler, MergeHandler


class LayerScaleHandler(ChannelwiseHandler):
    """ConvNeXt's `LayerScale`: a per-channel scale of `projection_dim` entries."""

    def rebuild_config(self, layer, call, config, in_keep, out_keep):
        config["projection_dim"] = len(out_keep[0])
        return config


def _register_applications():
    """The custom layers of `keras.applications` models."""
    layer_scale, custom_scale = internals.application_layers()
    register_handler(layer_scale, LayerScaleHandler())
    # `inputs[0] + inputs[1] * scale`: the two inputs are coupled, 0 stays 0.
    register_handler(custom_scale, MergeHandler())


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


_register_applications()
register_handler_by_path(
    "keras_hub.src.models.vit.vit_layers.ViTPatchingAndEmbedding", ViTPatchingHandler())
