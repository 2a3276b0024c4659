"""The controller's persistent map: every snapshot keeps its contents whatever is
done to the maps made from it, across growth to more chunks."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from keystrap.protocol.persistent import PersistentMap

# (key, value) to set, or (key, None) to remove the key if present.
STEPS = st.lists(
    st.tuples(st.integers(-(2**40), 2**40) | st.integers(0, 600), st.integers(0, 9) | st.none()),
    max_size=1500,
)


@settings(max_examples=30, deadline=None)
@given(STEPS)
def test_each_snapshot_keeps_what_it_held(steps: list[tuple[int, int | None]]) -> None:
    current: PersistentMap[int, int] = PersistentMap()
    expected: dict[int, int] = {}
    snapshots: list[tuple[PersistentMap[int, int], dict[int, int]]] = []
    for key, value in steps:
        if value is not None:
            current, expected[key] = current.set(key, value), value
        elif key in expected:
            current = current.without([key])
            del expected[key]
        snapshots.append((current, dict(expected)))
    for snapshot, held in snapshots:
        assert snapshot == held and len(snapshot) == len(held)
        assert all(snapshot.get(key) == value and key in snapshot for key, value in held.items())
    assert current.get(2**41) is None and 2**41 not in current


def test_growing_to_more_chunks_leaves_the_old_snapshots_alone() -> None:
    current: PersistentMap[int, int] = PersistentMap()
    snapshots = []
    for tid in range(5000):  # past 256, 1024 and 4096 entries: three times more chunks
        current = current.set(tid, tid)
        snapshots.append(current)
    for size in (256, 257, 1024, 1025, 4096, 4097, 5000):
        assert snapshots[size - 1] == {tid: tid for tid in range(size)}


def test_built_from_a_mapping_and_pruned_in_one_step() -> None:
    held = PersistentMap({tid: f"tx{tid}" for tid in range(1000)})
    pruned = held.without(range(0, 1000, 2))
    assert sorted(pruned) == list(range(1, 1000, 2)) and len(held) == 1000
    assert pruned[999] == "tx999" and held[998] == "tx998"
