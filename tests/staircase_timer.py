"""Fake latency timers (a known staircase, no LiteRT) and a model for the latency tests."""

import math

import keras

OVERHEAD_MS = 0.005
MS_PER_BLOCK = 1e-3


def up(count, step):
    return math.ceil(count / step) * step


class StaircaseTimer:
    """Latency of a model as a sum of staircases over its layers with kernels.

    A convolution or Dense layer costs `MS_PER_BLOCK * up(in) * up(out)`
    (a depthwise one `MS_PER_BLOCK * up(channels)`), counts rounded up to a
    multiple of `step`, plus `OVERHEAD_MS` per model: probes and whole models
    are timed by the same rule, so a latency model built with it can be
    checked exactly.
    """

    def __init__(self, step=8, runtime=None):
        self.step = step
        self.runtime = runtime or {"runtime": f"staircase {step}"}
        self.calls = 0

    def layer_ms(self, layer):
        channels_in, channels_out = layer.input.shape[-1], layer.output.shape[-1]
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            return MS_PER_BLOCK * up(channels_in, self.step)
        return MS_PER_BLOCK * up(channels_in, self.step) * up(channels_out, self.step)

    def __call__(self, model):
        self.calls += 1
        return OVERHEAD_MS + sum(
            self.layer_ms(layer) for layer in model.layers if hasattr(layer, "kernel")
        )


class WholeModelsDiffer(StaircaseTimer):
    """Whole models (2+ layers with kernels) take `0.1 + share * layers ** power` ms.

    `layers` is the sum of their layers' staircase times; single-layer
    probes are timed as the staircase says. Tables alone then mispredict
    what pruning saves on whole models.
    """

    def __init__(self, share, power=1, step=8):
        super().__init__(step)
        self.share, self.power = share, power

    def __call__(self, model):
        layers = [layer for layer in model.layers if hasattr(layer, "kernel")]
        if len(layers) == 1:
            return super().__call__(model)
        self.calls += 1
        return 0.1 + self.share * sum(self.layer_ms(layer) for layer in layers) ** self.power


def staircase_model(wide=32):
    """Conv 3->wide, depthwise, conv wide->24, Dense: 1D, tied and 2D tables."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(wide, 3, padding="same", name="a")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    x = keras.layers.Conv2D(24, 1, name="c")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))
