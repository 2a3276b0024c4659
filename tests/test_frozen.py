"""``@frozen`` (keystrap.wire.frozen): a frozen dataclass in all but how its
``__init__`` stores the fields."""

from __future__ import annotations

import dataclasses

import pytest

from keystrap.protocol import Reply, Status
from keystrap.protocol.repository import TransactionRecord, TransactionStatus
from keystrap.wire import Flight3
from keystrap.wire.frozen import frozen


@frozen
class Point:
    x: int
    y: int = 7
    label: str = "p"


def test_fields_defaults_and_keywords_are_stored_as_given() -> None:
    assert Point(1) == Point(x=1, y=7, label="p")
    assert Point(1, 2, label="q") == Point(1, 2, "q")
    point = Point(3, label="r")
    assert (point.x, point.y, point.label) == (3, 7, "r")
    assert vars(point) == {"x": 3, "y": 7, "label": "r"}
    # stored straight into __dict__, not through object.__setattr__ per field
    assert "__setattr__" not in Point.__init__.__code__.co_names


def test_it_is_still_a_frozen_dataclass() -> None:
    point = Point(1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.x = 5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del point.y
    assert hash(point) == hash(Point(1, 2)) and point != Point(1, 3)
    assert dataclasses.replace(point, y=9) == Point(1, 9)
    assert repr(point) == "Point(x=1, y=2, label='p')"
    assert Point.__init__.__qualname__ == "Point.__init__"


def test_wrong_arguments_are_refused_as_by_the_standard_init() -> None:
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'x'"):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point(1, 2, "a", "b")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        Point(1, z=3)  # type: ignore[call-arg]


def test_a_class_with_post_init_or_a_factory_keeps_the_standard_init() -> None:
    @frozen
    class Checked:
        n: int

        def __post_init__(self) -> None:
            if self.n < 0:
                raise ValueError("negative")

    @frozen
    class Listed:
        items: list[int] = dataclasses.field(default_factory=list)

    with pytest.raises(ValueError, match="negative"):
        Checked(-1)
    assert Listed().items == [] and Listed().items is not Listed().items
    for standard in (Checked, Listed):
        assert "__setattr__" in standard.__init__.__code__.co_names


def test_the_protocols_records_built_this_way_compare_as_before() -> None:
    record = TransactionRecord(b"c" * 8, 5, b"n" * 8, b"r", None, b"x" * 16, None,
                               TransactionStatus.PENDING, 0)  # fmt: skip
    assert dataclasses.replace(record, tid=6).tid == 6
    assert Reply(Status.OK, b"a") == Reply(Status.OK, payload=b"a", reason="")
    flight = Flight3(b"c" * 8, 5, b"n" * 8, b"k" * 16, 99)
    sealed = flight.seal(b"s" * 16)
    opened = Flight3.open(sealed, b"s" * 16, controller_id=b"c" * 8, tid=5, node_id=b"n" * 8)
    assert opened == flight
