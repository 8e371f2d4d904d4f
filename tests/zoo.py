"""Tiny models, one per supported layer kind and pattern, with random weights.

Every factory returns a built model whose weights (BatchNormalization
statistics included) are random, so that a wrongly sliced weight or a
channel that is not really zero shows up in the outputs.
"""

import keras
import numpy as np

L = keras.layers


def randomize(model, seed=0):
    """Random weights everywhere; variances positive."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        shape = tuple(weight.shape)
        if "variance" in weight.name:
            value = rng.uniform(0.5, 1.5, shape)
        elif weight.name == "count":
            continue
        else:
            value = rng.normal(0.0, 0.5, shape)
        weight.assign(value.astype(weight.dtype))
    return model


def randomize_statistics(model, seed=0):
    """Random biases and normalization statistics, kernels as initialized.

    For deep models (keras.applications), where random kernels at the zoo's
    scale overflow: removed channels must still be non-zero constants after
    a bias or a BatchNormalization, or a missing gate would go unnoticed.
    """
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        shape, name = tuple(weight.shape), weight.name
        if name in ("gamma", "moving_variance"):
            value = rng.uniform(0.5, 1.5, shape)
        elif name in ("beta", "bias", "moving_mean"):
            value = rng.normal(0.0, 0.2, shape)
        else:
            continue
        weight.assign(value.astype(weight.dtype))
    return model


def conv_bn(x, filters, name, kernel=3, activation="relu"):
    x = L.Conv2D(filters, kernel, padding="same", name=f"{name}_conv")(x)
    x = L.BatchNormalization(name=f"{name}_bn")(x)
    return L.Activation(activation, name=f"{name}_act")(x) if activation else x


def head(x, classes=3):
    x = L.GlobalAveragePooling2D(name="pool")(x)
    return L.Dense(classes, name="logits")(x)


def chain():
    inputs = keras.Input((8, 8, 3))
    x = conv_bn(inputs, 6, "a")
    x = conv_bn(x, 5, "b")
    return keras.Model(inputs, head(x), name="chain")


def sequential():
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            L.Conv2D(6, 3, activation="relu", name="c1"),
            L.Conv2D(4, 3, name="c2"),
            L.Flatten(name="flatten"),
            L.Dense(3, name="logits"),
        ],
        name="sequential",
    )


def conv1d():
    inputs = keras.Input((12, 3))
    x = L.Conv1D(6, 3, padding="same", activation="relu", name="c1")(inputs)
    x = L.Conv1DTranspose(5, 3, strides=2, name="t1")(x)
    x = L.MaxPooling1D(name="mp")(x)
    x = L.ZeroPadding1D(1, name="pad")(x)
    x = L.Cropping1D(1, name="crop")(x)
    x = L.UpSampling1D(name="up")(x)
    x = L.DepthwiseConv1D(3, name="dw")(x)
    x = L.SeparableConv1D(4, 3, name="sep")(x)
    x = L.GlobalMaxPooling1D(name="pool")(x)
    return keras.Model(inputs, L.Dense(3, name="logits")(x), name="conv1d")


def conv3d():
    inputs = keras.Input((6, 6, 6, 2))
    x = L.Conv3D(5, 3, padding="same", name="c1")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = L.Conv3DTranspose(4, 2, strides=2, name="t1")(x)
    x = L.AveragePooling3D(2, name="avg")(x)
    x = L.GlobalAveragePooling3D(name="pool")(x)
    return keras.Model(inputs, L.Dense(3, name="logits")(x), name="conv3d")


def transpose_and_resampling():
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2DTranspose(6, 3, strides=2, padding="same", name="t1")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ZeroPadding2D(1, name="pad")(x)
    x = L.Cropping2D(2, name="crop")(x)
    x = L.MaxPooling2D(name="mp")(x)
    x = L.UpSampling2D(name="up")(x)
    x = L.AveragePooling2D(2, name="avg")(x)
    x = L.Conv2D(5, 3, name="c2")(x)
    x = L.GlobalMaxPooling2D(name="pool")(x)
    return keras.Model(inputs, L.Dense(3, name="logits")(x), name="transpose")


def depthwise_separable():
    inputs = keras.Input((10, 10, 3))
    x = conv_bn(inputs, 6, "stem")
    x = L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(x)
    x = L.BatchNormalization(name="dw_bn")(x)
    x = L.ReLU(6.0, name="dw_relu")(x)
    x = L.SeparableConv2D(7, 3, depth_multiplier=2, name="sep")(x)
    x = L.DepthwiseConv2D(3, name="dw2")(x)
    return keras.Model(inputs, head(x), name="depthwise")


def dense_on_sequence():
    inputs = keras.Input((5, 4))
    x = L.Dense(8, activation="gelu", name="d1")(inputs)
    x = L.LayerNormalization(name="ln")(x)
    x = L.Dense(6, name="d2")(x)
    x = L.Flatten(name="flatten")(x)
    return keras.Model(inputs, L.Dense(3, name="logits")(x), name="dense_seq")


def residual():
    inputs = keras.Input((8, 8, 3))
    x = conv_bn(inputs, 6, "stem")
    y = conv_bn(x, 6, "b1a")
    y = conv_bn(y, 6, "b1b", activation=None)
    x = L.ReLU(name="b1_out")(L.Add(name="b1_add")([x, y]))
    shortcut = L.BatchNormalization(name="proj_bn")(L.Conv2D(8, 1, name="proj")(x))
    y = conv_bn(x, 8, "b2a")
    y = conv_bn(y, 8, "b2b", activation=None)
    x = L.ReLU(name="b2_out")(L.Add(name="b2_add")([shortcut, y]))
    return keras.Model(inputs, head(x), name="residual")


def preactivation():
    """ResNetV2/DenseNet style: BN -> ReLU -> conv reading an added tensor."""
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", name="stem")(inputs)
    y = L.BatchNormalization(name="pre_bn")(x)
    y = L.ReLU(name="pre_relu")(y)
    y = L.Conv2D(6, 3, padding="same", name="b_conv")(y)
    x = L.Add(name="add")([x, y])
    x = L.BatchNormalization(name="post_bn")(x)
    x = L.ReLU(name="post_relu")(x)
    return keras.Model(inputs, head(x), name="preactivation")


def concat():
    inputs = keras.Input((8, 8, 3))
    a = conv_bn(inputs, 4, "a")
    b = conv_bn(inputs, 5, "b")
    x = L.Concatenate(name="cat")([a, b])
    c = conv_bn(x, 3, "c")
    x = L.Concatenate(name="cat2")([x, c])  # DenseNet-style growth
    x = L.BatchNormalization(name="cat_bn")(x)
    x = conv_bn(x, 4, "d")
    return keras.Model(inputs, head(x), name="concat")


def squeeze_excitation():
    inputs = keras.Input((8, 8, 3))
    x = conv_bn(inputs, 8, "stem")
    s = L.GlobalAveragePooling2D(name="se_pool")(x)
    s = L.Dense(3, activation="relu", name="se_reduce")(s)
    s = L.Dense(8, activation="sigmoid", name="se_expand")(s)
    s = L.Reshape((1, 1, 8), name="se_reshape")(s)
    x = L.Multiply(name="se_scale")([x, s])
    x = conv_bn(x, 5, "out")
    return keras.Model(inputs, head(x), name="se")


def flatten_dense():
    inputs = keras.Input((6, 6, 2))
    x = L.Conv2D(4, 3, activation="relu", name="c1")(inputs)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(7, activation="tanh", name="fc")(x)
    x = L.Dropout(0.5, name="drop")(x)
    return keras.Model(inputs, L.Dense(3, name="logits")(x), name="flatten_dense")


def reshape_channels_last():
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(6, 1, name="c1")(inputs)
    x = L.Reshape((16, 6), name="tokens")(x)
    x = L.Dense(5, name="d1")(x)
    x = L.Reshape((80,), name="flat")(x)
    return keras.Model(inputs, L.Dense(3, name="logits")(x), name="reshape")


def activations_and_merges():
    inputs = keras.Input((8, 8, 3))
    x = L.Rescaling(1 / 255.0, offset=-0.5, name="rescale")(inputs)
    x = L.Normalization(mean=[0.1, 0.2, 0.3], variance=[1.0, 2.0, 3.0], name="norm")(x)
    a = L.Conv2D(6, 3, padding="same", name="a")(x)
    b = L.Conv2D(6, 3, padding="same", name="b")(x)
    a1 = L.Activation("sigmoid", name="sig")(a)
    b1 = L.LeakyReLU(0.2, name="leaky")(b)
    b2 = L.PReLU(name="prelu")(b)
    b3 = L.ELU(name="elu")(b)
    x = L.Subtract(name="sub")([a1, b1])
    x = L.Multiply(name="mul")([x, b2])
    x = L.Average(name="avg")([x, b3])
    x = L.Maximum(name="max")([x, a])
    x = L.Minimum(name="min")([x, b])
    x = L.SpatialDropout2D(0.3, name="sdrop")(x)
    x = L.Identity(name="identity")(x)
    x = L.GroupNormalization(groups=-1, name="gn")(x)
    x = L.Activation("tanh", name="tanh")(x)
    x = L.Conv2D(4, 1, name="c_out")(x)
    x = L.Softmax(axis=1, name="spatial_softmax")(x)
    x = L.Conv2D(4, 1, name="c_last")(x)
    return keras.Model(inputs, head(x), name="activations")


def nonzero_at_zero():
    """Activations with f(0) != 0 make removed channels non-zero: gated after."""
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", use_bias=False, name="c1")(inputs)
    x = L.Activation("sigmoid", name="sig")(x)
    x = L.Conv2D(5, 3, padding="same", use_bias=False, name="c2")(x)
    x = L.ReLU(threshold=0.5, negative_slope=0.1, name="shifted_relu")(x)
    x = L.Conv2D(4, 3, padding="same", name="c3")(x)
    return keras.Model(inputs, head(x), name="nonzero_at_zero")


def channel_statistics():
    """Per-channel statistics inside the network, sliced with their channel."""
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", name="c1")(inputs)
    x = L.Normalization(
        mean=[0.1, -0.2, 0.3, 0.0, 0.5, -0.1], variance=[1.0, 2.0, 0.5, 1.5, 1.0, 3.0],
        name="stats",
    )(x)
    x = L.Rescaling(scale=[1.0, 2.0, 0.5, -1.0, 1.5, 0.25], offset=0.1, name="scale")(x)
    x = L.Conv2D(4, 3, padding="same", name="c2")(x)
    return keras.Model(inputs, head(x), name="channel_statistics")


def spatial_attention():
    """A one-channel map broadcast over all channels (not coupled)."""
    inputs = keras.Input((8, 8, 3))
    x = conv_bn(inputs, 6, "feat")
    attention = L.Conv2D(1, 1, activation="sigmoid", name="att")(x)
    x = L.Multiply(name="apply")([x, attention])
    x = L.Add(name="shift")([x, attention])  # 0 + a != 0: gated after the Add
    x = conv_bn(x, 5, "after")
    return keras.Model(inputs, head(x), name="spatial_attention")


def shared_layer():
    inputs = keras.Input((8, 8, 3))
    shared = L.Conv2D(5, 3, padding="same", name="shared")
    a = shared(L.Conv2D(4, 1, name="pa")(inputs))
    b = shared(L.Conv2D(4, 1, name="pb")(inputs))
    x = L.Concatenate(name="cat")([a, b])
    return keras.Model(inputs, head(x), name="shared")


def nested():
    inner_in = keras.Input((8, 8, 6))
    y = conv_bn(inner_in, 6, "inner", activation=None)
    y = L.Add(name="inner_add")([inner_in, y])
    backbone = keras.Model(inner_in, conv_bn(y, 5, "inner_out"), name="backbone")
    inputs = keras.Input((8, 8, 3))
    x = conv_bn(inputs, 6, "stem")
    x = backbone(x)
    block = keras.Sequential(
        [keras.Input((8, 8, 5)), L.Conv2D(4, 3, name="seq_conv"), L.ReLU(name="seq_relu")],
        name="block",
    )
    x = block(x)
    return keras.Model(inputs, head(x), name="nested")


def operations():
    """Keras operations on symbolic tensors (`x + 3.0`, `ops.pad`, ...) as graph nodes."""
    ops = keras.ops
    inputs = keras.Input((8, 8, 3))
    x = conv_bn(inputs, 6, "a", activation=None)
    x = x * ops.relu6(x + 3.0) / 6.0  # hard swish: `x + 3.0` is a gate source
    x = ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    x = L.Conv2D(6, 3, name="b")(x)
    y = x * np.linspace(0.5, 1.5, 6).astype("float32") - 0.25  # per-channel constant
    s = ops.sigmoid(ops.mean(y, axis=(1, 2), keepdims=True))  # squeeze-excitation
    y = y * s + x  # coupled with x
    y = ops.softmax(ops.transpose(y, (0, 2, 1, 3)), axis=1)
    y = y[:, 1:-1]
    y = ops.concatenate(ops.split(y, 2, axis=1)[::-1], axis=1)
    y = ops.concatenate([y, L.Conv2D(4, 1, name="c")(y)], axis=-1)
    y = L.Dense(5, name="d")(ops.reshape(y, (-1, 48, 10)))
    return keras.Model(inputs, L.Dense(3, name="logits")(ops.max(y, axis=1)), name="operations")


def applications_layers():
    """ConvNeXt's grouped-conv depthwise and LayerScale, InceptionResNet's scaled sum."""
    from keras.src.applications import convnext, inception_resnet_v2

    inputs = keras.Input((8, 8, 3))
    x = conv_bn(inputs, 6, "stem")
    y = L.Conv2D(6, 3, padding="same", groups=6, name="dw")(x)
    y = convnext.LayerScale(0.5, 6, name="layer_scale")(y)
    x = inception_resnet_v2.CustomScaleLayer(0.3, name="scaled_sum")([x, y])
    x = conv_bn(x, 5, "out")
    return keras.Model(inputs, head(x), name="applications_layers")


class ResidualBlock(L.Layer):
    """A user's block made of Keras layers and an operation: traced through."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(filters, 3, padding="same", name="conv")
        self.bn = L.BatchNormalization(name="bn")
        self.relu = L.ReLU(name="relu")

    def call(self, x):
        return self.relu(x + self.bn(self.conv(x)))


class SqueezeExcite(L.Layer):
    """Sublayers made in `build`, reading the input's width."""

    def __init__(self, reduced, **kwargs):
        super().__init__(**kwargs)
        self.reduced = reduced

    def build(self, input_shape):
        self.reduce = L.Dense(self.reduced, activation="relu", name="reduce")
        self.expand = L.Dense(input_shape[-1], activation="sigmoid", name="expand")

    def call(self, x):
        s = keras.ops.mean(x, axis=(1, 2), keepdims=True)
        return x * self.expand(self.reduce(s))


def custom_blocks():
    inputs = keras.Input((8, 8, 3))
    x = conv_bn(inputs, 6, "stem")
    x = ResidualBlock(6, name="block")(x)
    x = SqueezeExcite(3, name="se")(x)
    x = conv_bn(x, 5, "out")
    return keras.Model(inputs, head(x), name="custom_blocks")


def transformer():
    """A pre-norm transformer: self- and cross-attention heads, an EinsumDense MLP.

    The cross-attention reads its value and key from other tensors, without
    biases and with an `output_shape`; the residual width is fixed.
    """
    inputs = keras.Input((6, 16))
    x = L.Dense(16, name="embed")(inputs)
    y = L.LayerNormalization(name="ln1")(x)
    x = L.Add(name="add1")([x, L.MultiHeadAttention(4, 4, name="self")(y, y)])
    value = L.Dense(8, name="value_source")(inputs)
    key = L.Dense(5, name="key_source")(inputs)
    y = L.MultiHeadAttention(
        3, 2, value_dim=5, use_bias=False, output_shape=16, name="cross"
    )(L.LayerNormalization(name="ln2")(x), value, key=key)
    x = L.Add(name="add2")([x, y])
    y = L.EinsumDense("abc,cd->abd", (6, 32), bias_axes="d", activation="gelu", name="mlp1")(
        L.LayerNormalization(name="ln3")(x)
    )
    x = L.Add(name="add3")([x, L.Dense(16, name="mlp2")(y)])
    x = L.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(inputs, L.Dense(3, name="logits")(x), name="transformer")


def vit():
    """A tiny ViT: 4x4 patches of an 8x8 image, one transformer block."""
    inputs = keras.Input((8, 8, 3))
    x = L.Reshape((4, 16), name="tokens")(L.Conv2D(16, 4, strides=4, name="patches")(inputs))
    y = L.LayerNormalization(name="ln1")(x)
    x = L.Add(name="add1")([x, L.MultiHeadAttention(4, 4, name="attention")(y, y)])
    y = L.Dense(32, activation="gelu", name="mlp1")(L.LayerNormalization(name="ln2")(x))
    x = L.Add(name="add2")([x, L.Dense(16, name="mlp2")(y)])
    x = L.GlobalAveragePooling1D(name="pool")(L.LayerNormalization(name="ln")(x))
    return keras.Model(inputs, L.Dense(3, name="logits")(x), name="vit")


ZOO = {
    f.__name__: f
    for f in (
        chain,
        sequential,
        conv1d,
        conv3d,
        transpose_and_resampling,
        depthwise_separable,
        dense_on_sequence,
        residual,
        preactivation,
        concat,
        squeeze_excitation,
        flatten_dense,
        reshape_channels_last,
        activations_and_merges,
        nonzero_at_zero,
        channel_statistics,
        spatial_attention,
        shared_layer,
        nested,
        operations,
        applications_layers,
        custom_blocks,
        transformer,
        vit,
    )
}


def build(name, seed=0):
    keras.utils.set_random_seed(seed)
    return randomize(ZOO[name](), seed)


def sample_inputs(model, batch=4, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 1.0, (batch,) + tuple(model.input_shape[1:])).astype("float32")


def random_plan(graph, seed=0):
    """Keeps a random, non-empty subset (about half) of every group."""
    import singe_keras

    rng = np.random.default_rng(seed)
    plan = singe_keras.Plan.full(graph)
    for group in graph.groups:
        count = max(1, group.size // 2)
        plan = plan.with_kept(group.name, rng.choice(group.size, count, replace=False))
    return plan


# keras-hub backbones from constructor arguments (no presets, no network),
# each under a small classifier head. Import keras_hub only when used.

def _keras_hub_resnet(block_type, pre_activation):
    import keras_hub

    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 32], stackwise_num_blocks=[2, 2],
        stackwise_num_strides=[1, 2], block_type=block_type,
        use_pre_activation=pre_activation, image_shape=(32, 32, 3),
    )


def _keras_hub_vgg():
    import keras_hub

    return keras_hub.models.VGGBackbone(
        stackwise_num_repeats=[1, 2], stackwise_num_filters=[8, 16], image_shape=(32, 32, 3)
    )


def _keras_hub_densenet():
    import keras_hub

    return keras_hub.models.DenseNetBackbone(
        stackwise_num_repeats=[2, 2], growth_rate=8, image_shape=(32, 32, 3)
    )


def _keras_hub_mobilenet():
    """MobileNetV3 blocks: every block is a keras-hub custom layer."""
    import keras_hub

    return keras_hub.models.MobileNetBackbone(
        stackwise_expansion=[[40, 56], [64, 144]], stackwise_num_blocks=[2, 2],
        stackwise_num_filters=[[16, 16], [24, 24]], stackwise_kernel_size=[[3, 3], [5, 5]],
        stackwise_num_strides=[[2, 1], [2, 1]], stackwise_se_ratio=[[None, None], [0.25, 0.25]],
        stackwise_activation=[["relu", "relu"], ["hard_swish", "hard_swish"]],
        stackwise_padding=[[1, 1], [2, 2]], output_num_filters=48, depthwise_filters=8,
        depthwise_stride=2, depthwise_residual=False, last_layer_filter=64,
        squeeze_and_excite=0.5, image_shape=(32, 32, 3),
    )


def _keras_hub_efficientnet():
    import keras_hub

    return keras_hub.models.EfficientNetBackbone(
        stackwise_kernel_sizes=[3, 3, 3], stackwise_num_repeats=[1, 2, 1],
        stackwise_input_filters=[8, 8, 16], stackwise_output_filters=[8, 16, 24],
        stackwise_expansion_ratios=[1, 4, 4], stackwise_squeeze_and_excite_ratios=[0.0, 0.25, 0.25],
        stackwise_strides=[1, 2, 2], stackwise_block_types=["fused", "fused", "unfused"],
        width_coefficient=1.0, depth_coefficient=1.0, input_shape=(32, 32, 3),
    )


def _keras_hub_vit():
    """Patching (a barrier with weights of its own), then traced encoder blocks."""
    import keras_hub

    return keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3), patch_size=4, num_layers=2, num_heads=4, hidden_dim=32,
        mlp_dim=64,
    )


KERAS_HUB = {
    "resnet_v1_basic": lambda: _keras_hub_resnet("basic_block", False),
    "resnet_v1_bottleneck": lambda: _keras_hub_resnet("bottleneck_block", False),
    "resnet_v2_basic": lambda: _keras_hub_resnet("basic_block", True),
    "resnet_v2_bottleneck": lambda: _keras_hub_resnet("bottleneck_block", True),
    "vgg": _keras_hub_vgg,
    "densenet": _keras_hub_densenet,
    "mobilenet_v3": _keras_hub_mobilenet,
    "efficientnet": _keras_hub_efficientnet,
    "vit": _keras_hub_vit,
}


def keras_hub_classifier(name, seed=0):
    """A keras-hub backbone with a small classifier head, random statistics."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3))
    features = KERAS_HUB[name]()(inputs)
    pool = L.GlobalAveragePooling2D if len(features.shape) == 4 else L.GlobalAveragePooling1D
    x = pool(name="pool")(features)
    model = keras.Model(inputs, L.Dense(4, name="head")(x), name=f"keras_hub_{name}")
    return randomize_statistics(model, seed)


class Batches(keras.utils.PyDataset):
    """`(x, y)` in batches of `size` rows: data in the `PyDataset` form."""

    def __init__(self, x, y, size):
        super().__init__()
        self.x, self.y, self.size = x, y, size

    def __len__(self):
        return -(-len(self.x) // self.size)

    def __getitem__(self, index):
        part = slice(index * self.size, (index + 1) * self.size)
        return self.x[part], self.y[part]
