"""Every metric the gateway exports is in the README's metrics table, and no
gauge has label values that overlap (``sum()`` over any label never double-counts)."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from gateway import metrics

README = Path(__file__).resolve().parents[2] / "README.md"


def _exported() -> set[str]:
    names = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                names.add(family.name)
    return names


def _documented() -> set[str]:
    text = README.read_text()
    section = text.split("### Metrics", 1)[1].split("\n### ", 1)[0]
    names = set()
    for written in re.findall(r"`((?:artifact_gateway|…)_[a-z_]+)`", section):
        names.add(written.replace("…", metrics.PREFIX).removesuffix("_total"))
    return names


def test_every_metric_is_in_the_readme() -> None:
    exported = _exported()
    assert exported, "no metric found"
    assert exported - _documented() == set()


def test_the_pool_gauge_states_add_up() -> None:
    """``idle`` and ``in_use`` partition the open connections: no ``size`` beside them."""

    class Pool:
        def get_size(self) -> int:
            return 7

        def get_idle_size(self) -> int:
            return 3

    metrics.update_pool(Pool())
    samples = {
        s.labels["state"]: s.value for family in metrics.DB_POOL.collect() for s in family.samples
    }
    assert samples == {"idle": 3, "in_use": 4}
