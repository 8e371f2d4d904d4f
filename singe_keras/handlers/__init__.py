"""Per-layer knowledge: how channels flow through a layer and how to slice it.

- `base`: the `LayerHandler` protocol, `BarrierHandler` and the registry
  (`register_handler`, `get_handler`);
- `layers`: Keras's built-in layers;
- `operations`: Keras operations on symbolic tensors (`x + 3.0`, `keras.ops.pad`);
- `attention`: `MultiHeadAttention`, whose heads are hidden units;
- `third_party`: custom layers of `keras.applications` and keras-hub models.

Importing this package registers every built-in handler.
"""

from singe_keras.handlers import attention, layers, operations, third_party  # noqa: F401
from singe_keras.handlers.base import (
    BarrierHandler,
    LayerCall,
    LayerHandler,
    UnsupportedLayerError,
    WeightShape,
    channel_count,
    get_handler,
    has_handler,
    register_handler,
    unsupported,
)
from singe_keras.handlers.operations import OperationInput, fill_arguments

__all__ = [
    "BarrierHandler",
    "LayerCall",
    "LayerHandler",
    "OperationInput",
    "UnsupportedLayerError",
    "WeightShape",
    "channel_count",
    "fill_arguments",
    "get_handler",
    "has_handler",
    "register_handler",
    "unsupported",
]
