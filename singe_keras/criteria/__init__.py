"""Relevance criteria: how the units of a traced model are scored.

`"singe"` is the integrated-gradient relevance of SInGE (Yvinec et al.,
NeurIPS 2022; docs/method.md, "The SInGE relevance"). The baselines share its
interface: `"taylor"` (first-order Taylor, Molchanov et al. 2017/2019; the
K = 1, left-point case of the same integral), `"fisher"` (squared gate
gradients, Theis et al. 2018), `"l1"` and `"l2"` (norm of the unit's producer
kernels, Li et al. 2017), `"group_l1"` and `"group_l2"` (norms of every
parameter slice coupled with the unit, Torch-Pruning's group magnitude, Fang
et al. 2023), `"bn_scale"` (|gamma| of the unit's
BatchNormalization, Liu et al. 2017) and `"random"`.

Look criteria up with `get`, like Keras's own `keras.initializers.get`:

```python
singe_keras.criteria.get("singe")                        # defaults
singe_keras.criteria.get({"class_name": "singe", "config": {"steps": 16}})
singe_keras.criteria.get(singe_keras.criteria.IntegratedGradients(steps=4))
```
"""

from singe_keras.criteria.base import (
    Criterion,
    data_free,
    get,
    register_criterion,
    resolve_loss,
    serialize,
)
from singe_keras.criteria.gradients import (
    Fisher,
    IntegratedGradients,
    Taylor,
    pass_rows,
)
from singe_keras.criteria.magnitude import (
    BatchNormScale,
    GroupL1Norm,
    GroupL2Norm,
    L1Norm,
    L2Norm,
    Random,
)

__all__ = [
    "BatchNormScale",
    "Criterion",
    "Fisher",
    "GroupL1Norm",
    "GroupL2Norm",
    "IntegratedGradients",
    "L1Norm",
    "L2Norm",
    "Random",
    "Taylor",
    "data_free",
    "get",
    "pass_rows",
    "register_criterion",
    "resolve_loss",
    "serialize",
]
