"""The coupling graph of a Keras model: which channels must be removed together.

- `tracing`: the model's nodes in execution order, with their static calls
  and handlers (`TracedNode`, `Scope`, the label union-find);
- `coupling`: `trace(model)` and the `CouplingGraph` it returns, with its
  coupling groups and the queries the rest of singe_keras asks of them.
"""

from singe_keras.graph.coupling import (
    CouplingGraph,
    CouplingGroup,
    describe_layers,
    trace,
)
from singe_keras.graph.tracing import Scope, TracedNode, weight_names

__all__ = [
    "CouplingGraph",
    "CouplingGroup",
    "Scope",
    "TracedNode",
    "describe_layers",
    "trace",
    "weight_names",
]
