"""``@frozen``: a frozen dataclass whose ``__init__`` fills the instance's
``__dict__`` directly.

Why: the standard library's frozen ``__init__`` sets each field through
``object.__setattr__``, a call per field. The server builds about 70 fields of
flights, records, replies and events per bootstrap, and those calls were about
5 % of its instructions (docs/performance.md §3). Everything else (``__eq__``,
``__hash__``, ``__repr__``, the refusal to assign, ``dataclasses.replace``) is
the standard library's, unchanged; a class with ``__post_init__``, a default
factory or a field outside ``__init__`` keeps the standard ``__init__`` too.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar, cast, dataclass_transform

C = TypeVar("C", bound=type)


@dataclass_transform(frozen_default=True)
def frozen(cls: C) -> C:
    made: Any = dataclasses.dataclass(frozen=True)(cls)
    fields = dataclasses.fields(made)
    if hasattr(made, "__post_init__") or any(
        not f.init or f.kw_only or f.default_factory is not dataclasses.MISSING for f in fields
    ):
        return cast(C, made)
    defaults = {f"_d_{f.name}": f.default for f in fields if f.default is not dataclasses.MISSING}
    parameters = ", ".join(
        f"{f.name}=_d_{f.name}" if f"_d_{f.name}" in defaults else f.name for f in fields
    )
    body = "".join(f"\n    _fields[{f.name!r}] = {f.name}" for f in fields) or "\n    pass"
    source = f"def __init__(_self, {parameters}):\n    _fields = _self.__dict__{body}"
    namespace: dict[str, Any] = {}
    exec(source, dict(defaults), namespace)  # noqa: S102 (source built from field names)
    init = namespace["__init__"]
    init.__qualname__ = f"{made.__qualname__}.__init__"
    init.__doc__ = made.__init__.__doc__
    made.__init__ = init
    return cast(C, made)
