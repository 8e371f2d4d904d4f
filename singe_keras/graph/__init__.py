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
