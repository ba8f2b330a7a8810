"""Named columns of a state table: each column declared once, with its meaning, and its index
derived from the order of declaration (no hand-numbered `... = range(N)` layouts).

    REPLICA = Table("S", "int64", "per-replica integer state: S[r, column]")
    ST = REPLICA.col("what the replica is doing: IDLE, STEP or WAKE")
    NDEC = REPLICA.col("sequences decoding")
    REPLICA.seal(globals())          # names the columns; the module's names become plain ints

A column is a plain int once sealed (numba freezes it as a constant; numpy indexes with it at no
cost), and the table keeps each column's name and meaning for docs and checks
(`Table.describe`)."""

from __future__ import annotations

from typing import Any


class Col(int):
    """A column index with its meaning, until its table is sealed."""

    meaning: str
    table: "Table"
    source: str | None

    def __new__(cls, index: int, table: "Table", meaning: str, source: str | None = None) -> "Col":
        c = super().__new__(cls, index)
        c.meaning, c.table, c.source = meaning, table, source
        return c


class Table:
    """The columns of one state array, in declaration order."""

    def __init__(self, array: str, dtype: str, meaning: str) -> None:
        self.array, self.dtype, self.meaning = array, dtype, meaning
        self._cols: list[Col] = []
        self.names: list[str] = []
        self.meanings: list[str] = []

    def col(self, meaning: str, source: str | None = None) -> int:
        """The next column (its index), meaning what `meaning` says; `source`: the attribute path
        (e.g. "scheduler.max_batched_tokens") of the object each row's value is read from when
        the arrays are built (sim/engine/arrays.py fills such columns itself)."""
        if self.names:
            raise RuntimeError(f"table {self.array} is sealed: declare its columns before seal()")
        c = Col(len(self._cols), self, meaning, source)
        self._cols.append(c)
        return c

    @property
    def sources(self) -> list[tuple[int, str]]:
        """(column, attribute path) of the columns filled from an object's attribute."""
        return [(int(c), c.source) for c in self._cols if c.source is not None]

    @property
    def n(self) -> int:
        """How many columns."""
        return len(self._cols)

    def seal(self, namespace: dict[str, Any]) -> None:
        """Name the columns after the module names bound to them, and make those names plain ints.
        Every column must be bound to exactly one name."""
        found: dict[int, str] = {}
        for name, v in list(namespace.items()):
            if isinstance(v, Col) and v.table is self:
                if id(v) in found:
                    raise RuntimeError(f"column {v} of {self.array} is bound to {found[id(v)]} and {name}")
                found[id(v)] = name
                namespace[name] = int(v)
        missing = [int(c) for c in self._cols if id(c) not in found]
        if missing:
            raise RuntimeError(f"columns {missing} of {self.array} are bound to no name")
        self.names = [found[id(c)] for c in self._cols]
        self.meanings = [c.meaning for c in self._cols]

    def index(self, name: str) -> int:
        return self.names.index(name)

    def describe(self) -> str:
        """The table as Markdown: column, name, meaning."""
        rows = [f"`{self.array}` ({self.dtype}): {self.meaning}", "", "| col | name | meaning |", "|---|---|---|"]
        rows += [f"| {i} | `{n}` | {m} |" for i, (n, m) in enumerate(zip(self.names, self.meanings, strict=True))]
        return "\n".join(rows)
