"""Gradient criteria: SInGE's integrated gradients, and Taylor and Fisher as its special cases."""

import keras
import numpy as np

from singe_keras import data as data_lib
from singe_keras import gate_gradients
from singe_keras.criteria.base import (
    Criterion,
    _check_choice,
    register_criterion,
    resolve_loss,
)

#: Samples gradient criteria read (and `path="random"` partitions) at once:
#: at most this many, so that memory does not grow with `samples`, and not
#: tied to the pass size, so that the pass size does not change the scores.
_SAMPLES_AT_ONCE = 256
#: Bytes of activations an automatic pass may hold (`batch_size=None`).
_PASS_MEMORY = 2 * 2**30
#: Estimated bytes a gradient pass holds per float32 activation value
#: (`CouplingGraph.values_per_sample`): the value, a gated copy (layer
#: outputs), and its gradient.
_BYTES_PER_VALUE = 3 * 4


@register_criterion("singe")
class IntegratedGradients(Criterion):
    """SInGE: integrated gradients of the loss along a path of gates.

    The attribution of unit u on sample x is (midpoint rule, uniform path
    mu_k = 1 - k/K):

        A_u(x) = sum_k (mu_{k-1} - mu_k) * dl(x; m)/dm_u  at  m = P(mid_k)

    where the path P scales a *block* of gates that contains u from 1 to 0,
    all other gates staying at 1. The blocks are:

    - `path="group"`: u's whole coupling group (K passes per group);
    - `path="unit"`: u alone (docs/method.md's definition; K passes per unit:
      exact, costly);
    - `path="random"`: for each sample, each group's units are dealt at
      random into `round(1 / block_fraction)` blocks, and each block is
      scaled in turn (K / block_fraction passes per group). A unit's
      attribution is then taken while a random share of its siblings is
      removed with it, as the allocation will remove many units of a group
      at once, rather than while all of them vanish (`"group"`) or none
      (`"unit"`); `draws` such partitions per sample are averaged.
    - `path="across"` (the default): all the units of the model, whatever
      their group, are dealt at random into `round(1 / block_fraction)`
      blocks (8 at the default 1/8), each scaled in turn (K = 1 here by
      default). What makes the ranking is how much of the network one path
      point removes with the unit (benchmarks/README.md, "Scoring time and
      quality"), not the number of points. Each sample evaluates S =
      `blocks_per_sample` of the blocks (2 by default): ceil(blocks / S)
      consecutive samples share one partition and split its blocks, so
      that each unit is evaluated once per such stratum, and a sample
      costs S x K gradients (the default: 2, about twice Taylor's time;
      `blocks_per_sample=8, read="block"`, every block and integrated
      gradients proper, costs 8 and ranked better).

    The relevance is the mean, over the samples (and draws) that evaluated
    the unit, of |A_u(x)| (`reduction="abs"`), A_u(x) (`"signed"`) or
    A_u(x)^2 (`"square"`). By completeness, the signed attributions of a
    block sum to l(x; m=1) - l(x; m_block=0) as K grows (with
    `read="block"`).

    With `read="all"` (the default of `path="across"`), every unit that a
    sample evaluates takes the gradient of each of the sample's points,
    whether its own block moves there or not, and A_u(x) is their mean: with
    the defaults, the mean of u's gate gradient at its block's midpoint and
    at the other block's, two readings of how the loss depends on u while
    an eighth of the network is half removed. This is not integrated
    gradients any more (no completeness), but at two gradients per sample
    it ranked better than `read="block"` did (benchmarks/README.md).

    Reference: E. Yvinec, A. Dapogny, M. Cord, K. Bailly, "SInGE: Sparsity
    via Integrated Gradients Estimation of Neuron Relevance", NeurIPS 2022.

    Args:
        steps: K, the number of quadrature points. Defaults to `None`: 1
            with `path="across"`, 4 with the other paths.
        path: `"group"`, `"unit"`, `"random"` or `"across"`. Defaults to
            `"across"`, as good as `"random"` (the default before it) at a
            fraction of its time (benchmarks/README.md, "Scoring time and quality").
        reduction: `"abs"`, `"signed"` or `"square"`. Defaults to
            `"square"` (better than `"abs"` on both benchmark models).
        samples: how many examples to score on. Defaults to `256`.
        loss: a Keras loss (name or object) or `loss(y_true, y_pred)`
            returning one value per sample; `None` uses the model's compiled
            loss. Defaults to `None`.
        batch_size: rows of one forward/backward pass (samples x path
            points): it bounds the memory of scoring, which holds the
            activations and gradients of this many inputs at once, whatever
            `steps`, `samples` and the data's own batch size. The scores do
            not depend on it (up to float round-off). `None` fits a pass in
            about 2 GiB, estimated from the sizes of the model's layer
            outputs and attention scores (at most 256 rows; 16 if the
            model's shapes are not fixed). Under a `tf.distribute`
            strategy, rows per replica: a pass splits its samples over the
            replicas. Defaults to `None`.
        rule: `"midpoint"`, or `"left"` (the gradient at mu_{k-1}).
            Defaults to `"midpoint"`.
        block_fraction: with `path="random"`, the share of a group that one
            block scales; with `path="across"`, the share of all the units.
            Defaults to `None`: 0.5 with `"random"`, 0.125 with `"across"`.
        draws: with `path="random"` or `"across"`, random partitions per
            sample. Defaults to `1`.
        seed: seed of the random partitions. Defaults to `0`.
        blocks_per_sample: with `path="across"`, how many of its
            partition's blocks a sample evaluates (at most all of them: pass
            the number of blocks, 8 by default, for all). Defaults to
            `None`: 2 with `"across"`.
        read: `"block"` (a point's gradients count for the units of its
            block: integrated gradients), or `"all"` (see above; needs the
            midpoint rule). Defaults to `None`: `"all"` with `"across"`,
            else `"block"`.

    Example:

    ```python
    criterion = singe_keras.criteria.IntegratedGradients(steps=16, samples=512, path="group")
    scores = singe_keras.score(model, (x, y), criterion=criterion)
    ```
    """

    needs_data = True
    needs_loss = True
    shows_progress = True

    def __init__(
        self,
        steps=None,
        path="across",
        reduction="square",
        samples=256,
        loss=None,
        batch_size=None,
        rule="midpoint",
        block_fraction=None,
        draws=1,
        seed=0,
        blocks_per_sample=None,
        read=None,
    ):
        _check_choice("path", path, ("group", "unit", "random", "across"))
        _check_choice("reduction", reduction, ("abs", "signed", "square"))
        _check_choice("rule", rule, ("midpoint", "left"))
        if read is None:  # the path's default
            read = "all" if path == "across" and rule == "midpoint" else "block"
        _check_choice("read", read, ("block", "all"))
        if read == "all" and rule != "midpoint":
            raise ValueError("`read='all'` needs `rule='midpoint'`. "
                             f"Received: rule={rule!r}")
        for argument, value in (("steps", steps), ("samples", samples),
                                ("batch_size", batch_size), ("draws", draws)):
            if argument in ("batch_size", "steps") and value is None:
                continue
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(
                    f"`{argument}` must be a positive integer. "
                    f"Received: {argument}={value!r}"
                )
        if block_fraction is not None and not (
                isinstance(block_fraction, (int, float)) and 0 < block_fraction <= 1):
            raise ValueError(
                "`block_fraction` must be in (0, 1] or None. "
                f"Received: block_fraction={block_fraction!r}"
            )
        if blocks_per_sample is None and path == "across":  # the path's default
            blocks_per_sample = 2
        if blocks_per_sample is not None and not (
                isinstance(blocks_per_sample, (int, np.integer)) and blocks_per_sample >= 1):
            raise ValueError(
                "`blocks_per_sample` must be a positive integer or None. "
                f"Received: blocks_per_sample={blocks_per_sample!r}"
            )
        if steps is None:  # the path's default
            steps = 1 if path == "across" else 4
        self.steps, self.path, self.reduction = int(steps), path, reduction
        self.samples, self.loss = int(samples), loss
        self.batch_size = None if batch_size is None else int(batch_size)
        self.rule = rule
        if block_fraction is None and path in ("random", "across"):  # the path's default
            block_fraction = 0.125 if path == "across" else 0.5
        self.block_fraction = None if block_fraction is None else float(block_fraction)
        self.blocks_per_sample = None if blocks_per_sample is None else int(blocks_per_sample)
        self.draws, self.seed = int(draws), seed
        self.read = read

    def get_config(self):
        return {
            "steps": self.steps,
            "path": self.path,
            "reduction": self.reduction,
            "samples": self.samples,
            "loss": keras.losses.serialize(self.loss) if self.loss is not None else None,
            "batch_size": self.batch_size,
            "rule": self.rule,
            "block_fraction": self.block_fraction,
            "draws": self.draws,
            "seed": self.seed,
            "blocks_per_sample": self.blocks_per_sample,
            "read": self.read,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("loss"), dict):
            config["loss"] = keras.losses.deserialize(config["loss"])
        return cls(**config)

    def block_count(self, graph):
        """How many blocks one partition of `path="random"` or `"across"` has.

        `"random"`: `round(1 / block_fraction)` per group (`block_fraction`
        0.5 if `None`); `"across"`: `round(1 / block_fraction)` for the whole
        model (0.125 if `None`), at most one per unit.
        """
        if self.path == "random":
            return max(1, round(1 / (self.block_fraction or 0.5))) * len(graph.groups)
        return int(np.clip(round(1 / (self.block_fraction or 0.125)), 1, max(graph.num_units, 1)))

    def blocks(self, graph, batch, rng, real=None):
        """Which block of the path each unit belongs to, per sample.

        Args:
            graph: the `CouplingGraph`.
            batch: rows (samples) of the batch.
            rng: the NumPy generator of the random partitions.
            real: how many leading rows are real samples (the others are
                padding: no block); `None` for all of them.

        Returns:
            `(block_of, count)`: a `(batch, num_units)` integer array and the
            number of blocks. `-1` marks a unit that the sample does not
            evaluate (`path="across"` with `blocks_per_sample`, and padding).
        """
        sizes = [g.size for g in graph.groups]
        if self.path == "unit":
            return np.broadcast_to(np.arange(graph.num_units), (batch, graph.num_units)), graph.num_units
        if self.path == "group":
            block = np.repeat(np.arange(len(sizes)), sizes)
            return np.broadcast_to(block, (batch, graph.num_units)), len(sizes)
        if self.path == "across":
            return self._across_blocks(graph.num_units, batch, rng, batch if real is None else real)
        count = max(1, round(1 / (self.block_fraction or 0.5)))
        parts = []
        for index, size in enumerate(sizes):  # deal each group's units, per sample
            dealt = np.arange(size) % count
            parts.append(index * count + rng.permuted(np.broadcast_to(dealt, (batch, size)), axis=1))
        return np.concatenate([np.zeros((batch, 0), int)] + parts, axis=1), count * len(sizes)

    def _across_blocks(self, units, batch, rng, real):
        """`path="across"`: every unit of the model dealt into B blocks.

        Without `blocks_per_sample`, each sample gets its own random
        partition and evaluates all B blocks. With S = `blocks_per_sample`,
        ceil(B / S) consecutive samples (a stratum) share one random
        partition and split its blocks between them, S each, so that every
        unit is evaluated exactly once per stratum (the blocks of a short
        last stratum are evaluated in part, unless the batch is shorter than
        one stratum: then its samples share all the blocks). Blocks are
        relabelled 0, 1, ... per sample in the order it evaluates them.
        """
        count = int(np.clip(round(1 / (self.block_fraction or 0.125)), 1, max(units, 1)))
        per_sample = min(self.blocks_per_sample or count, count)
        stratum = -(-count // per_sample)
        if real < stratum:  # too few samples: they split all the blocks
            stratum, per_sample = real, -(-count // max(real, 1))
        block_of = np.full((batch, units), -1)
        slots = 0
        for start in range(0, real, stratum):
            rows = range(start, min(start + stratum, real))
            dealt = rng.permutation(np.arange(units) % count)
            split = [np.arange(count)[j * per_sample:(j + 1) * per_sample] for j in range(len(rows))]
            for row, chosen in zip(rows, split):
                label = np.full(count, -1)
                label[chosen] = np.arange(len(chosen))
                block_of[row] = label[dealt]
                slots = max(slots, len(chosen))
        return block_of, slots

    def path_points(self, block_of, count):
        """Yields the quadrature points of the paths, one at a time.

        Args:
            block_of, count: from `blocks`.

        Yields:
            `(gates, weight, mask)`: the `(batch, num_units)` gates of the
            point, its quadrature weight mu_{k-1} - mu_k, and the
            `(batch, num_units)` mask of the units whose gradients it
            contributes to. With the left rule the first point of every
            block is m = 1: it is yielded once for all units.
        """
        shift = 0.5 if self.rule == "midpoint" else 1.0
        positions = 1.0 - (np.arange(1, self.steps + 1) - shift) / self.steps
        weight = 1.0 / self.steps
        if positions[0] == 1.0:
            evaluated = (np.asarray(block_of) >= 0).astype("float32")
            yield np.ones(block_of.shape, "float32"), weight, evaluated
            positions = positions[1:]
        for block in range(count):
            inside = block_of == block
            if self.read == "all":  # every unit of a sample that has this block
                mask = np.broadcast_to(inside.any(axis=1, keepdims=True), inside.shape)
                mask = mask.astype("float32")
            else:
                mask = inside.astype("float32")
            for position in positions:
                yield np.where(inside, np.float32(position), np.float32(1.0)), weight, mask

    def point_count(self, count):
        """How many points `path_points` yields for `count` blocks."""
        if self.rule == "midpoint":
            return count * self.steps
        return 1 + count * (self.steps - 1)  # m = 1 once, for all blocks

    def score(self, gated, data=None, verbose=0):
        """See `Criterion.score`; `verbose=1` shows a bar of the model passes."""
        loss_fn = resolve_loss(self.loss, gated.graph.model)
        step = gate_gradients.attribution_step(gated, loss_fn)
        batch = min(_SAMPLES_AT_ONCE, self.samples, data_lib.first_batch_size(data))
        rows = self.batch_size or pass_rows(gated.graph)  # per replica
        per_replica = min(-(-batch // step.replicas), rows)  # samples per pass
        part = per_replica * step.replicas
        per_pass = None  # path points per pass: set by the first partition
        units = gated.graph.num_units
        padding = (np.ones((part, units), "float32"), 0.0, np.zeros((part, units), "float32"))
        rng = np.random.default_rng(self.seed)
        draws = self.draws if self.path in ("random", "across") else 1
        batches = data_lib.fixed_batch_count(data, self.samples, batch)
        bar, done = None, 0
        total, count = np.zeros(units), np.zeros(units)
        for x, y, sample_weight in data_lib.fixed_batches(data, self.samples, batch):
            real = sample_weight > 0
            for _ in range(draws):
                block_of, blocks = self.blocks(gated.graph, batch, rng, real=_leading(real))
                if per_pass is None:
                    per_pass = _pass_points(self.point_count(blocks), rows // per_replica)
                if verbose and bar is None:
                    passes = -(-batch // part) * -(-self.point_count(blocks) // per_pass)
                    bar = keras.utils.Progbar(
                        batches and batches * draws * passes, unit_name="pass")
                attributions = np.zeros((batch, units))
                for index, inside in _row_slices(batch, part):
                    weight = np.where(inside, sample_weight[index], np.float32(0))
                    points = self.path_points(block_of[index], blocks)
                    for chunk in _chunks(points, per_pass, padding):
                        gates, weights, masks = (np.stack(parts) for parts in zip(*chunk))
                        attributions[index[inside]] += step(
                            x[index], y[index], weight, gates, weights.astype("float32"), masks
                        )[inside]
                        if bar is not None:
                            done += 1
                            bar.update(done)
                # The blocks of one partition are disjoint: each unit has at
                # most one attribution per sample and draw. With `read="all"`
                # it has one per block of the sample: their mean is taken.
                if self.read == "all":
                    read = np.maximum(np.asarray(block_of).max(axis=1) + 1, 1)
                    attributions = attributions / read[:, None]
                if self.reduction == "abs":
                    attributions = np.abs(attributions)
                elif self.reduction == "square":
                    attributions = np.square(attributions)
                evaluated = np.asarray(block_of)[real] >= 0
                total += np.where(evaluated, attributions[real], 0.0).sum(axis=0)
                count += evaluated.sum(axis=0)
        if bar is not None and bar.target is None:  # a stream: counted only now
            bar.update(done, finalize=True)
        # Each worker summed its replicas' rows; every worker reads every sample.
        # A unit's relevance is the mean over the samples (and draws) that
        # evaluated it: all of them, except with `blocks_per_sample`.
        return step.sum_over_workers(total) / np.maximum(count, 1)


def _leading(real):
    """Rows up to the last one with a positive weight (`fixed_batches` pads at the end)."""
    return int(len(real) - np.argmax(real[::-1])) if real.any() else 0


def _pass_points(points, most):
    """Path points per pass: at most `most`, in passes as even as possible.

    Passes are never padded up to more points than a partition has (a
    one-point criterion such as Taylor runs one point per pass), and the
    points are spread evenly over the fewest passes that hold them.
    """
    most = max(1, min(most, points))
    passes = -(-points // most)
    return -(-points // passes)


def pass_rows(graph):
    """The rows of a gradient pass that fit in about 2 GiB of activations (1 to 256).

    Estimated from the values one sample makes in the model's layer outputs
    and attention scores (`CouplingGraph.values_per_sample`); 16 if those
    sizes are not fixed.
    """
    values = graph.values_per_sample()
    if values is None:
        return 16
    return int(np.clip(_PASS_MEMORY // max(values * _BYTES_PER_VALUE, 1), 1, 256))


def _row_slices(count, size):
    """`(index, inside)` per `size` rows of `range(count)`.

    `index` holds `size` row indices, the last slice filled up with row 0
    (one shape, one trace); `inside` says which rows are real.
    """
    for start in range(0, count, size):
        index = np.arange(start, start + size)
        inside = index < count
        yield np.where(inside, index, 0), inside


def _chunks(points, size, padding):
    """Lists of `size` points; the last one filled with `padding` (one shape, one trace)."""
    chunk = []
    for point in points:
        chunk.append(point)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk + [padding] * (size - len(chunk))


@register_criterion("taylor")
class Taylor(IntegratedGradients):
    """First-order Taylor relevance |m_u * dl/dm_u| at m = 1, per-sample mean.

    Molchanov et al., "Pruning Convolutional Neural Networks for Resource
    Efficient Inference" (ICLR 2017) and "Importance Estimation for Neural
    Network Pruning" (CVPR 2019). It is exactly `IntegratedGradients` with
    K = 1 and the left point (docs/method.md): one gradient at m = 1.

    Args:
        samples: how many examples to score on. Defaults to `256`.
        loss: see `IntegratedGradients`. Defaults to `None`.
        batch_size: rows of one forward/backward pass (see
            `IntegratedGradients`). Defaults to `None`.
    """

    def __init__(self, samples=256, loss=None, batch_size=None):
        super().__init__(
            steps=1, path="group", reduction="abs", samples=samples, loss=loss,
            batch_size=batch_size, rule="left",
        )

    def get_config(self):
        config = super().get_config()
        return {k: config[k] for k in ("samples", "loss", "batch_size")}


@register_criterion("fisher")
class Fisher(Taylor):
    """Fisher pruning: the mean over samples of (dl/dm_u)^2 at m = 1.

    Theis et al., "Faster gaze prediction with dense networks and Fisher
    pruning" (2018): the loss increase of removing unit u, to second order,
    with the Hessian approximated by the empirical Fisher information of its
    gate. It is `Taylor` with squared instead of absolute per-sample
    gradients (the gate is 1, so the gate's square is the weight factor),
    accumulated over every sample.

    Args:
        samples: how many examples to score on. Defaults to `256`.
        loss: see `IntegratedGradients`. Defaults to `None`.
        batch_size: rows of one forward/backward pass (see
            `IntegratedGradients`). Defaults to `None`.
    """

    def __init__(self, samples=256, loss=None, batch_size=None):
        super().__init__(samples=samples, loss=loss, batch_size=batch_size)
        self.reduction = "square"
