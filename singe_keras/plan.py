"""Plans: which units each coupling group keeps.

A `Plan` is a plain record that deciding produces and surgery consumes. It
can be saved as JSON, compared, replayed on the same model, and tested.
"""

import dataclasses

import numpy as np

from singe_keras.files import JsonRecord


@dataclasses.dataclass(frozen=True)
class Plan(JsonRecord):
    """The kept units of every coupling group of a traced model.

    Attributes:
        keep: `{group name: sorted tuple of kept unit indices}`.
        sizes: `{group name: number of units before pruning}`.

    Example:

    ```python
    graph = singe_keras.trace(model)
    plan = singe_keras.Plan.full(graph).with_kept("conv", [0, 2, 5])
    small = singe_keras.rebuild(graph, plan)
    ```
    """

    keep: dict
    sizes: dict

    def __post_init__(self):
        if set(self.keep) != set(self.sizes):
            raise ValueError(
                "`keep` and `sizes` must name the same groups. Received: "
                f"keep groups={sorted(self.keep)}, sizes groups={sorted(self.sizes)}"
            )
        keep = {}
        for name, units in self.keep.items():
            units = tuple(sorted(int(u) for u in units))
            size = self.sizes[name]
            if not units:
                raise ValueError(
                    f"Group {name!r} must keep at least one unit. Received: keep=()"
                )
            if len(set(units)) != len(units) or units[0] < 0 or units[-1] >= size:
                raise ValueError(
                    f"Group {name!r} has {size} units: kept indices must be unique "
                    f"and in [0, {size}). Received: keep={list(units)}"
                )
            keep[name] = units
        object.__setattr__(self, "keep", keep)
        object.__setattr__(self, "sizes", {k: int(v) for k, v in self.sizes.items()})

    @classmethod
    def full(cls, graph) -> "Plan":
        """The plan that keeps every unit of `graph` (a `CouplingGraph`)."""
        return cls(
            keep={g.name: range(g.size) for g in graph.groups},
            sizes={g.name: g.size for g in graph.groups},
        )

    @classmethod
    def from_mask(cls, graph, kept_units: np.ndarray) -> "Plan":
        """The plan keeping the units where `kept_units` (flat, as `mask`) is true."""
        kept_units = np.asarray(kept_units, bool)
        return cls(
            keep={
                g.name: np.flatnonzero(kept_units[graph.group_offset(g.name) :][: g.size])
                for g in graph.groups
            },
            sizes={g.name: g.size for g in graph.groups},
        )

    def with_kept(self, group: str, units) -> "Plan":
        """A copy of this plan where `group` keeps exactly `units`."""
        if group not in self.keep:
            raise ValueError(
                f"No group named {group!r} in this plan. Groups: {sorted(self.keep)}"
            )
        return Plan({**self.keep, group: units}, self.sizes)

    def check(self, graph) -> None:
        """Raises `ValueError` if this plan was not made for `graph`'s groups."""
        sizes = {g.name: g.size for g in graph.groups}
        if sizes != self.sizes:
            raise ValueError(
                "This plan does not match the traced model's coupling groups. "
                f"Plan groups: {self.sizes}. Model groups: {sizes}. Make the plan "
                "from `singe_keras.trace(model)` of the same model and "
                "`ignored_layers`."
            )

    def mask(self, graph) -> np.ndarray:
        """Per unit of `graph` (flat, group by group), 1.0 if kept else 0.0."""
        self.check(graph)
        mask = np.zeros(graph.num_units, dtype="float32")
        for group in graph.groups:
            offset = graph.group_offset(group.name)
            mask[offset + np.asarray(self.keep[group.name], dtype=int)] = 1.0
        return mask

    @property
    def num_kept(self) -> int:
        """Total number of kept units."""
        return sum(len(units) for units in self.keep.values())

    def to_dict(self) -> dict:
        return {
            "keep": {k: list(v) for k, v in self.keep.items()},
            "sizes": dict(self.sizes),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Plan":
        return cls(keep=data["keep"], sizes=data["sizes"])
