"""A persistent map: each change returns a new map and leaves the old one valid.

The controller's state is an immutable snapshot that may hold a day of
finished transactions (docs/performance.md, "A day of finished transactions,
held"). Copying the whole table on every step made a bootstrap cost in
proportion to what is held; keeping one mutable dict would let a later step
change a snapshot the store or a crash test still holds. This map shares
structure instead: its entries are spread by hash over about sqrt(n) chunks,
each a plain dict, and a change copies only the list of chunks and the one
chunk it touches -- O(sqrt n) pointer copies, done in C by ``dict()`` and
``list()``, and a lookup is two dict lookups. In pure Python that is cheaper
than a hash array mapped trie's O(log n) steps of interpreted bit arithmetic
for the sizes a controller holds (tens of thousands), and it needs only the
standard library, which the protocol layer may use and nothing else.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping
from typing import TypeVar, overload

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")

_MIN_BITS = 4
_new = object.__new__


class PersistentMap(Mapping[K, V]):
    __slots__ = ("_chunks", "_limit", "_mask", "_size")

    _chunks: list[dict[K, V]]
    _mask: int  # the chunk of a key: hash(key) & _mask
    _limit: int  # the size beyond which the map takes more chunks
    _size: int

    def __init__(self, entries: Mapping[K, V] | Iterable[tuple[K, V]] = ()) -> None:
        items = dict(entries)
        self._size = len(items)
        bits = max(_MIN_BITS, (self._size.bit_length() + 1) // 2)
        self._mask, self._limit = (1 << bits) - 1, 1 << 2 * bits
        self._chunks = [{} for _ in range(self._mask + 1)]
        for key, value in items.items():
            self._chunks[hash(key) & self._mask][key] = value

    def _of(self, chunks: list[dict[K, V]], size: int) -> PersistentMap[K, V]:
        """A map of these chunks, spread as this one's."""
        new: PersistentMap[K, V] = _new(PersistentMap)
        new._chunks, new._mask, new._limit, new._size = chunks, self._mask, self._limit, size
        return new

    # -- reading: what Mapping needs, and a faster get ----------------------------

    def __getitem__(self, key: K) -> V:
        return self._chunks[hash(key) & self._mask][key]

    def __contains__(self, key: object) -> bool:
        return key in self._chunks[hash(key) & self._mask]

    def __iter__(self) -> Iterator[K]:
        for chunk in self._chunks:
            yield from chunk

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return f"PersistentMap({dict(self.items())!r})"

    @overload
    def get(self, key: K, /) -> V | None: ...

    @overload
    def get(self, key: K, /, default: V | T) -> V | T: ...

    def get(self, key: K, /, default: object = None) -> object:
        return self._chunks[hash(key) & self._mask].get(key, default)

    # -- changing: each returns a new map ----------------------------------------

    def set(self, key: K, value: V) -> PersistentMap[K, V]:
        """This map with ``key`` bound to ``value``."""
        chunks = self._chunks.copy()
        index = hash(key) & self._mask
        old = chunks[index]
        size = self._size if key in old else self._size + 1
        chunk = chunks[index] = old.copy()
        chunk[key] = value
        if size > self._limit:  # grown fourfold: twice the chunks
            return PersistentMap(item for c in chunks for item in c.items())
        return self._of(chunks, size)

    def without(self, keys: Iterable[K]) -> PersistentMap[K, V]:
        """This map without ``keys`` (each must be in it); each chunk they touch
        is copied once."""
        chunks = list(self._chunks)
        copied: set[int] = set()
        size = self._size
        for key in keys:
            index = hash(key) & self._mask
            if index not in copied:
                chunks[index] = dict(chunks[index])
                copied.add(index)
            del chunks[index][key]
            size -= 1
        return self._of(chunks, size)
