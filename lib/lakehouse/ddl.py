"""A small parser for Spark DDL column lists, so config is checked before Spark starts.

It accepts what ``StructType.fromDDL`` accepts for the types this project uses: primitive types,
``decimal(p,s)``, ``varchar(n)``/``char(n)``, ``array<T>``, ``map<K,V>``, ``struct<a: T, b T>``,
back-quoted names and ``NOT NULL``/``COMMENT '...'`` after a column.

Example::

    parse_ddl("id bigint, amount decimal(18,2), tags array<string>")
    # [('id', 'bigint'), ('amount', 'decimal(18,2)'), ('tags', 'array<string>')]
"""

from __future__ import annotations

import re

PRIMITIVES = {
    "string",
    "boolean",
    "tinyint",
    "byte",
    "smallint",
    "short",
    "int",
    "integer",
    "bigint",
    "long",
    "float",
    "real",
    "double",
    "date",
    "timestamp",
    "timestamp_ntz",
    "timestamp_ltz",
    "binary",
    "void",
    "variant",
}
_TOKEN = re.compile(r"\s*(`(?:[^`]|``)+`|[A-Za-z_][A-Za-z0-9_]*|\d+|'(?:[^'\\]|\\.)*'|[<>(),:])")


class DDLError(ValueError):
    """The DDL does not parse; the message names the position and what was expected."""


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, int]] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if not m:
                raise DDLError(f"unexpected character {text[pos:].strip()[:1]!r} at position {pos}")
            self.tokens.append((m.group(1), m.start(1)))
            pos = m.end()
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else None

    def where(self) -> str:
        return f"position {self.tokens[self.i][1]}" if self.i < len(self.tokens) else "end of text"

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok.lower() != expected):
            want = repr(expected) if expected else "more text"
            raise DDLError(f"expected {want} at {self.where()}, found {tok!r}")
        self.i += 1
        return tok

    def name(self) -> str:
        tok = self.take()
        if tok.startswith("`"):
            return tok[1:-1].replace("``", "`")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", tok):
            raise DDLError(f"expected a column name at {self.where()}, found {tok!r}")
        return tok

    def type_(self) -> str:
        tok = self.take().lower()
        if tok in PRIMITIVES:
            return tok
        if tok in ("decimal", "dec", "numeric"):
            if self.peek() == "(":
                self.take("(")
                p = self.int_()
                s = 0
                if self.peek() == ",":
                    self.take(",")
                    s = self.int_()
                self.take(")")
                if not 0 < p <= 38 or s > p:
                    raise DDLError(f"decimal({p},{s}) is out of range")
                return f"decimal({p},{s})"
            return "decimal(10,0)"
        if tok in ("varchar", "char"):
            self.take("(")
            n = self.int_()
            self.take(")")
            return f"{tok}({n})"
        if tok == "array":
            self.take("<")
            inner = self.type_()
            self.take(">")
            return f"array<{inner}>"
        if tok == "map":
            self.take("<")
            k = self.type_()
            self.take(",")
            v = self.type_()
            self.take(">")
            return f"map<{k},{v}>"
        if tok == "struct":
            self.take("<")
            fields = []
            while self.peek() != ">":
                n = self.name()
                if self.peek() == ":":
                    self.take(":")
                fields.append(f"{n}:{self.type_()}")
                self.modifiers()
                if self.peek() == ",":
                    self.take(",")
                elif self.peek() != ">":
                    raise DDLError(f"expected ',' or '>' at {self.where()}")
            self.take(">")
            return f"struct<{','.join(fields)}>"
        raise DDLError(f"unknown type {tok!r} before {self.where()}")

    def int_(self) -> int:
        tok = self.take()
        if not tok.isdigit():
            raise DDLError(f"expected a number at {self.where()}, found {tok!r}")
        return int(tok)

    def modifiers(self) -> None:
        while self.peek() is not None and self.peek().lower() in ("not", "comment"):
            if self.take().lower() == "not":
                self.take("null")
            else:
                tok = self.take()
                if not tok.startswith("'"):
                    raise DDLError(f"expected a quoted comment at {self.where()}")


def parse_ddl(text: str) -> list[tuple[str, str]]:
    """Parse ``"name type, ..."`` into ``[(name, normalized_type), ...]``.

    Raises:
        DDLError: on any syntax error, an unknown type, or a repeated column name.
    """
    if not isinstance(text, str) or not text.strip():
        raise DDLError("the schema is empty")
    p = _Parser(text)
    cols: list[tuple[str, str]] = []
    while True:
        n = p.name()
        if p.peek() == ":":
            p.take(":")
        t = p.type_()
        p.modifiers()
        if n.lower() in {c.lower() for c, _ in cols}:
            raise DDLError(f"column {n!r} appears twice")
        cols.append((n, t))
        if p.peek() is None:
            return cols
        p.take(",")
