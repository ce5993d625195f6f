"""Skip programs: any Avro type compiled to a small node graph that the kernel walks to step over a value.

The columnar decoder writes columns only for the shapes of alert schemas (primitives, enums, fixed, nullable
unions of these, records and arrays of records at the top level). Every other field — a map, an array of
primitives, a record inside a nested record, a union of several types, a recursive type — is stepped over byte by
byte (``avro_kernel.skip_value``), so an extra field that another broker added never makes an alert unreadable.

Node kinds and their arguments: primitives have none, ``S_FIXED`` its size, ``S_ARRAY``/``S_MAP`` the node of their
items/values, ``S_RECORD``/``S_UNION`` a range of ``kids`` (fields in order / branches by index). Node 0 is always
a string (the key of every map entry).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nightjar.streams import avro_kernel as k

_PRIMITIVE_NODES = {
    "null": k.S_NULL,
    "boolean": k.S_BOOL,
    "int": k.S_VARINT,
    "long": k.S_VARINT,
    "float": k.S_FLOAT,
    "double": k.S_DOUBLE,
    "string": k.S_BYTES,
    "bytes": k.S_BYTES,
}


class SkipGraph:
    """The skip nodes of one schema; ``add(avro_type)`` returns the node that steps over a value of that type."""

    def __init__(self, names: dict[str, Any]) -> None:
        self.names = names
        self.kind: list[int] = []
        self.arg: list[int] = []
        self.lo: list[int] = []
        self.hi: list[int] = []
        self.kids: list[int] = []
        self._named: dict[str, int] = {}
        self._node(k.S_BYTES)  # node 0: map keys

    def _node(self, kind: int, arg: int = 0) -> int:
        self.kind.append(kind)
        self.arg.append(arg)
        self.lo.append(0)
        self.hi.append(0)
        return len(self.kind) - 1

    def _children(self, node: int, kids: list[int]) -> None:
        self.lo[node] = len(self.kids)
        self.kids.extend(kids)
        self.hi[node] = len(self.kids)

    def add(self, avro_type: Any) -> int:
        """The node of ``avro_type`` (a name, a primitive, a union list or a complex type)."""
        if isinstance(avro_type, list):
            node = self._node(k.S_UNION)
            self._children(node, [self.add(branch) for branch in avro_type])
            return node
        if isinstance(avro_type, str):
            if avro_type in _PRIMITIVE_NODES:
                return self._node(_PRIMITIVE_NODES[avro_type])
            if avro_type in self._named:
                return self._named[avro_type]  # a reference, possibly recursive
            if avro_type not in self.names:
                raise ValueError(f"unknown Avro type {avro_type!r}")
            return self.add(self.names[avro_type])
        kind = avro_type.get("type")
        if isinstance(kind, list | dict):
            return self.add(kind)  # {"type": {...}}
        if kind == "enum":
            return self._named_node(avro_type, self._node(k.S_VARINT))
        if kind == "fixed":
            return self._named_node(avro_type, self._node(k.S_FIXED, int(avro_type["size"])))
        if kind in ("array", "map"):
            node = self._node(k.S_ARRAY if kind == "array" else k.S_MAP)
            self.arg[node] = self.add(avro_type["items" if kind == "array" else "values"])
            return node
        if kind == "record" or kind == "error":
            node = self._named_node(avro_type, self._node(k.S_RECORD))
            self._children(node, [self.add(f["type"]) for f in avro_type["fields"]])
            return node
        if isinstance(kind, str) and kind in _PRIMITIVE_NODES:
            return self._node(_PRIMITIVE_NODES[kind])  # {"type": "long", "logicalType": ...}
        raise ValueError(f"unknown Avro type {avro_type!r}")

    def _named_node(self, avro_type: dict[str, Any], node: int) -> int:
        name = str(avro_type["name"])
        space = avro_type.get("namespace")
        for key in (name, name.rsplit(".", 1)[-1], f"{space}.{name}" if space else name):
            self._named.setdefault(key, node)
        return node

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """kind, arg, lo, hi and kids as int64 arrays for the kernel."""
        kids = self.kids or [0]
        return tuple(np.asarray(a, dtype=np.int64) for a in (self.kind, self.arg, self.lo, self.hi, kids))  # type: ignore[return-value]
