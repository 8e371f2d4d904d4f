"""The private APIs of Keras and LiteRT that singe_keras reads, in one room.

singe_keras traces a functional model's nodes, gates attention heads inside
`MultiHeadAttention` and registers handlers for Keras's operation classes:
Keras has no public API for these. Everything that reads `keras.src` or a
private attribute goes through this module, so that a Keras release that
moves one breaks here, with an error that names the supported range
(`SUPPORTED_KERAS`, the same range as in `pyproject.toml`), rather than
somewhere inside the tracer.
"""

import functools
import importlib

import keras

#: The Keras versions these internals were tested with (pyproject.toml).
SUPPORTED_KERAS = ">=3.10,<3.16"


def _missing(what, error):
    return RuntimeError(
        f"singe_keras reads Keras's internal `{what}`, which Keras {keras.__version__} "
        f"does not have ({type(error).__name__}: {error}). singe_keras supports Keras "
        f"{SUPPORTED_KERAS}: install a Keras version in that range, e.g. "
        f"`pip install \"keras{SUPPORTED_KERAS}\"`."
    )


def _attribute(owner, name):
    try:
        return getattr(owner, name)
    except AttributeError as error:
        raise _missing(f"{type(owner).__name__}.{name}", error) from error


def _module(path):
    try:
        return importlib.import_module(path)
    except ImportError as error:
        raise _missing(path, error) from error


# Functional graphs ---------------------------------------------------------


def is_functional(model):
    """Whether `model` is a `Functional` (it has Keras's node table)."""
    return isinstance(model, keras.Model) and hasattr(model, "_nodes_by_depth")


def sequential_function(model):
    """The `Functional` a built `keras.Sequential` runs."""
    return _attribute(model, "_functional")


def nodes_in_order(function):
    """The nodes of a `Functional` in Keras's own execution order (`_run_through_graph`)."""
    by_depth = _attribute(function, "_nodes_by_depth")
    for depth in sorted(by_depth, reverse=True):
        yield from by_depth[depth]


def producing_operation(tensor):
    """The operation (an `InputLayer` for an input) that made a symbolic tensor."""
    return _attribute(tensor, "_keras_history").operation


def input_structure(function):
    """The nested structure of a `Functional`'s inputs, as it was called."""
    return _attribute(function, "_inputs_struct")


def output_structure(function):
    """The nested structure of a `Functional`'s outputs."""
    return _attribute(function, "_outputs_struct")


def sublayer_weights(layer):
    """The weights of every layer nested in `layer` (not `layer`'s own)."""
    flatten = _attribute(layer, "_flatten_layers")
    return [w for sub in flatten(include_self=False) for w in sub.weights]


def symbolic_build(model, data_spec):
    """What `fit` builds before its first step: the compiled loss, metrics and optimizer."""
    _attribute(model, "_symbolic_build")(data_batch=data_spec)


# MultiHeadAttention ----------------------------------------------------------


def keras_mask(tensor):
    """The Keras mask a tensor carries (`mask_zero` embeddings), or `None`."""
    return _module("keras.src.backend").get_keras_mask(tensor)


def set_keras_mask(tensor, mask):
    _module("keras.src.backend").set_keras_mask(tensor, mask)


def attention_mask(layer, *args, **kwargs):
    """`MultiHeadAttention._compute_attention_mask`: the masks combined as `call` does."""
    return _attribute(layer, "_compute_attention_mask")(*args, **kwargs)


def attention(layer, *args, **kwargs):
    """`MultiHeadAttention._compute_attention`: `(heads' outputs, scores)`."""
    return _attribute(layer, "_compute_attention")(*args, **kwargs)


# Classes that handlers are registered for --------------------------------------


@functools.cache
def operation_modules():
    """The modules of Keras's operation classes: `(core, image, math, nn, numpy)`."""
    return tuple(_module(f"keras.src.ops.{name}")
                 for name in ("core", "image", "math", "nn", "numpy"))


def application_layers():
    """The custom layers of `keras.applications`: `(LayerScale, CustomScaleLayer)`."""
    convnext = _module("keras.src.applications.convnext")
    inception_resnet_v2 = _module("keras.src.applications.inception_resnet_v2")
    return (_attribute(convnext, "LayerScale"),
            _attribute(inception_resnet_v2, "CustomScaleLayer"))


# LiteRT ----------------------------------------------------------------------


def litert_op_names(interpreter):
    """The sorted names of the ops a LiteRT interpreter runs (`[]` if it cannot tell)."""
    details = getattr(interpreter, "_get_ops_details", None)
    return sorted({op["op_name"] for op in details()}) if details else []
