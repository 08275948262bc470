"""Read PM2-style JavaScript ecosystem files (``ecosystem.config.js``/``.cjs``/``.mjs``).

Most real ecosystem files are one object literal assigned to ``module.exports``.
Those are read by a small hand-written tokenizer and recursive-descent parser,
without Node.js. The parser understands:

* ``//`` and ``/* */`` comments, a ``#!`` first line;
* strings in single quotes, double quotes and backticks, with JavaScript escapes;
  ``${...}`` in backtick strings when the expression inside is itself supported
  (``__dirname``, a variable bound to a literal, ``path.join(...)``, ...);
* numbers (``12``, ``-1``, ``1.5``, ``1e3``, ``0x10``, ``0o17``, ``0b11``, ``1_000``);
* ``true``, ``false``, ``null`` and ``undefined`` (an ``undefined`` property is dropped,
  an ``undefined`` array item becomes ``null``, as ``JSON.stringify`` does);
* object literals with unquoted, quoted and numeric keys, ``name`` shorthand for a
  bound variable, trailing commas; array literals, holes included;
* ``+`` between strings (and a string with an integer, boolean or null);
* ``__dirname``, ``__filename``, ``path.join``, ``path.resolve``, ``path.normalize``
  with ``path`` from ``require('path')``, ``require('node:path')`` or ``import``;
* the statements ``'use strict'``, ``const``/``let``/``var`` bound to supported values
  or to ``require(...)``, ``import ... from '...'``, ``module.exports = ...``,
  ``module.exports.name = ...``, ``exports.name = ...``, ``export default ...`` and
  ``export const ...``.

Anything else is valid JavaScript this parser does not evaluate (``process.env``,
arithmetic, function calls, spread, ...): the parser raises :class:`NeedsNode`, and
:func:`load_js_file` hands the file to ``node`` when it is installed.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, NoReturn

from corral.core.errors import ConfigError

__all__ = ["JSSyntaxError", "NeedsNode", "load_js_file", "parse_js_literal"]


# ---------------------------------------------------------------------------
# Errors


class NeedsNode(Exception):
    """Valid JavaScript that only Node.js can evaluate (``construct`` at ``line``)."""

    def __init__(self, construct: str, line: int) -> None:
        self.construct = construct
        self.line = line
        super().__init__(self.describe())

    def describe(self) -> str:
        return (
            f"line {self.line}: '{self.construct}' needs Node.js to evaluate; "
            "install node or write the value literally"
        )


class JSSyntaxError(ConfigError):
    """The file is not valid JavaScript (as far as the literal parser can tell)."""

    def __init__(self, reason: str, *, line: int, column: int, file: str | None = None) -> None:
        self.reason = reason
        self.line = line
        self.column = column
        super().__init__(f"line {line}, column {column}: {reason}", file=file)


class _Unsupported(Exception):
    """Raised deep inside the parser; the enclosing value turns it into NeedsNode."""


class _LexError(Exception):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


# ---------------------------------------------------------------------------
# Values the parser uses internally besides plain data


class _Undefined:
    def __repr__(self) -> str:
        return "undefined"


_UNDEFINED = _Undefined()


class _BigInt:
    def __repr__(self) -> str:
        return "<bigint>"


_BIGINT = _BigInt()


@dataclass(frozen=True)
class _Module:
    """What ``require('name')`` or ``import x from 'name'`` gave."""

    name: str

    @property
    def is_path(self) -> bool:
        return self.name in _PATH_MODULES


@dataclass(frozen=True)
class _Opaque:
    """A name imported from a module the parser does not model (``os.cpus``, ...)."""

    name: str


@dataclass(frozen=True)
class _PathFunc:
    name: str


class _Require:
    pass


_REQUIRE = _Require()
_MARKERS = (_Module, _Opaque, _PathFunc, _Require)
_PATH_MODULES = frozenset({"path", "node:path", "path/posix", "node:path/posix"})
_PATH_FUNCS = frozenset({"join", "resolve", "normalize"})


# ---------------------------------------------------------------------------
# Tokenizer

TokenKind = Literal["name", "punct", "string", "template", "number", "error", "eof"]


@dataclass(frozen=True)
class _Template:
    strings: tuple[str, ...]  # cooked text chunks; one more than exprs
    exprs: tuple[tuple[_Token, ...], ...]  # tokens of each ${...}, ending with an eof token


@dataclass(frozen=True)
class _Token:
    kind: TokenKind
    text: str  # source text; the message for "error"; "" or "}" for "eof"
    value: Any  # str (string), int/float/_BIGINT (number), _Template (template)
    start: int
    end: int
    line: int
    column: int
    newline_before: bool


_MAX_DEPTH = 100  # nesting of values and templates, well within Python's recursion limit
_LINE_BREAKS = "\n\r\u2028\u2029"
_LINE_BREAK_RE = re.compile("\r\n|[\n\r\u2028\u2029]")
_PUNCTUATORS = (  # longest first, so that the first match is the right one
    ">>>=",
    "...", "===", "!==", "**=", "<<=", ">>=", ">>>", "&&=", "||=", "??=",
    "=>", "==", "!=", "<=", ">=", "&&", "||", "??", "?.", "**", "++", "--",
    "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<<", ">>",
    "{", "}", "(", ")", "[", "]", ";", ",", "<", ">", "+", "-", "*", "/",
    "%", "&", "|", "^", "!", "~", "?", ":", "=", ".", "@", "#",
)  # fmt: skip
_NUMBER_RE = re.compile(
    r"""
    0[xX](?P<hex>[0-9a-fA-F_]+)
    | 0[oO](?P<oct>[0-7_]+)
    | 0[bB](?P<bin>[01_]+)
    | (?P<dec>(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][+-]?[0-9][0-9_]*)?)
    """,
    re.VERBOSE,
)
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v"}
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


# Words that cannot name a variable (nor be a `{ name }` shorthand).
_RESERVED = frozenset((
    "await", "break", "case", "catch", "class", "const", "continue", "debugger",
    "default", "delete", "do", "else", "enum", "export", "extends", "false", "finally",
    "for", "function", "if", "implements", "import", "in", "instanceof", "interface",
    "let", "new", "null", "package", "private", "protected", "public", "return",
    "static", "super", "switch", "this", "throw", "true", "try", "typeof", "var",
    "void", "while", "with", "yield",
))  # fmt: skip


def _is_id_start(ch: str) -> bool:
    return ch.isalpha() or ch in "$_"


def _is_id_part(ch: str) -> bool:
    return ch.isalnum() or ch in "$_\u200c\u200d"


def _js_number(value: int | float) -> int | float | None:
    """The value JSON.stringify would give back: integral numbers as int, no inf/nan."""
    if isinstance(value, int):
        if abs(value) <= 2**53:
            return value
        value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        return None
    if value.is_integer() and abs(value) < 1e21:
        # JavaScript writes the shortest digits that read back as the same double
        # (2**60 is 1152921504606847000), and so does Python's repr.
        return int(Decimal(repr(value)))
    return value


def _join_surrogates(text: str) -> str:
    if not any("\ud800" <= ch <= "\udfff" for ch in text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.template_depth = 0
        self.line_starts = [0] + [m.end() for m in _LINE_BREAK_RE.finditer(text)]

    def position(self, offset: int) -> tuple[int, int]:
        index = bisect.bisect_right(self.line_starts, offset) - 1
        return index + 1, offset - self.line_starts[index] + 1

    def line_end(self, offset: int) -> int:
        for index in range(offset, len(self.text)):
            if self.text[index] in _LINE_BREAKS:
                return index
        return len(self.text)

    def tokenize(self) -> list[_Token]:
        tokens: list[_Token] = []
        if self.text.startswith("#!"):
            self.pos = self.line_end(0)
        try:
            self._scan(tokens, in_template=False)
        except _LexError as e:
            # Keep the tokens read so far: the parser may stop on an unsupported
            # construct before it reaches the error.
            end = max(self.line_end(e.offset), e.offset)
            tokens.append(self._token("error", e.message, None, e.offset, end, False))
            tokens.append(self._token("eof", "", None, len(self.text), len(self.text), True))
        return tokens

    def _token(
        self, kind: TokenKind, text: str, value: Any, start: int, end: int, newline: bool
    ) -> _Token:
        line, column = self.position(start)
        return _Token(kind, text, value, start, end, line, column, newline)

    def _scan(self, tokens: list[_Token], *, in_template: bool) -> None:
        """Read tokens to the end of the text, or to the '}' closing a '${'."""
        depth = 0
        while True:
            newline = self._skip_trivia()
            start = self.pos
            if start >= len(self.text):
                if in_template:
                    raise _LexError("unterminated template literal: missing '}' after '${'", start)
                tokens.append(self._token("eof", "", None, start, start, True))
                return
            if in_template and depth == 0 and self.text[start] == "}":
                self.pos += 1
                tokens.append(self._token("eof", "}", None, start, start + 1, newline))
                return
            token = self._read_token(newline)
            if token.kind == "punct" and token.text == "{":
                depth += 1
            elif token.kind == "punct" and token.text == "}":
                depth -= 1
            tokens.append(token)

    def _skip_trivia(self) -> bool:
        text = self.text
        newline = False
        while self.pos < len(text):
            ch = text[self.pos]
            if ch in _LINE_BREAKS:
                newline = True
                self.pos += 1
            elif ch.isspace() or ch == "\ufeff":
                self.pos += 1
            elif text.startswith("//", self.pos):
                self.pos = self.line_end(self.pos)
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end == -1:
                    raise _LexError("unterminated /* comment", self.pos)
                if any(c in _LINE_BREAKS for c in text[self.pos : end]):
                    newline = True
                self.pos = end + 2
            else:
                break
        return newline

    def _read_token(self, newline: bool) -> _Token:
        text = self.text
        start = self.pos
        ch = text[start]
        if ch in "'\"":
            value = self._read_string(ch)
            return self._token("string", text[start : self.pos], value, start, self.pos, newline)
        if ch == "`":
            template = self._read_template()
            return self._token(
                "template", text[start : self.pos], template, start, self.pos, newline
            )
        if ch in "0123456789" or (ch == "." and text[start + 1 : start + 2].isdigit()):
            number = self._read_number()
            return self._token("number", text[start : self.pos], number, start, self.pos, newline)
        if _is_id_start(ch):
            end = start + 1
            while end < len(text) and _is_id_part(text[end]):
                end += 1
            self.pos = end
            return self._token("name", text[start:end], None, start, end, newline)
        for punct in _PUNCTUATORS:
            if text.startswith(punct, start):
                self.pos = start + len(punct)
                return self._token("punct", punct, None, start, self.pos, newline)
        raise _LexError(f"unexpected character {ch!r}", start)

    def _read_number(self) -> int | float | None | _BigInt:
        start = self.pos
        match = _NUMBER_RE.match(self.text, start)
        assert match is not None  # the caller saw a digit
        end = match.end()
        bigint = self.text[end : end + 1] == "n"
        if bigint:
            end += 1
        if end < len(self.text) and _is_id_part(self.text[end]):
            raise _LexError("invalid number: a letter follows it", end)
        self.pos = end
        digits = next(g for g in match.groups() if g is not None)
        decimal = match.group("dec") is not None
        bad_separator = "__" in digits or digits.startswith("_") or digits.endswith("_")
        if decimal:
            bad_separator = bad_separator or re.search(r"_[.eE]|[.eE+-]_", digits) is not None
        if bad_separator:
            raise _LexError("invalid '_' separator in number", start)
        digits = digits.replace("_", "")
        if decimal and len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
            raise _LexError("legacy octal number (a leading zero) is not supported", start)
        if bigint:
            if decimal and any(c in digits for c in ".eE"):
                raise _LexError("invalid BigInt literal", start)
            return _BIGINT
        if match.group("hex") is not None:
            return _js_number(int(digits, 16))
        if match.group("oct") is not None:
            return _js_number(int(digits, 8))
        if match.group("bin") is not None:
            return _js_number(int(digits, 2))
        if any(c in digits for c in ".eE"):
            return _js_number(float(digits))
        return _js_number(int(digits))

    def _read_string(self, quote: str) -> str:
        text = self.text
        start = self.pos
        self.pos += 1
        out: list[str] = []
        while True:
            if self.pos >= len(text):
                raise _LexError("unterminated string", start)
            ch = text[self.pos]
            if ch == quote:
                self.pos += 1
                return _join_surrogates("".join(out))
            if ch in "\n\r":
                raise _LexError("unterminated string (line break inside the quotes)", start)
            if ch == "\\":
                out.append(self._read_escape())
            else:
                out.append(ch)
                self.pos += 1

    def _read_template(self) -> _Template:
        text = self.text
        start = self.pos
        self.pos += 1
        strings: list[str] = []
        exprs: list[tuple[_Token, ...]] = []
        out: list[str] = []
        while True:
            if self.pos >= len(text):
                raise _LexError("unterminated template literal (missing '`')", start)
            ch = text[self.pos]
            if ch == "`":
                self.pos += 1
                strings.append(_join_surrogates("".join(out)))
                return _Template(tuple(strings), tuple(exprs))
            if ch == "\\":
                out.append(self._read_escape())
            elif text.startswith("${", self.pos):
                if self.template_depth >= _MAX_DEPTH:
                    raise _LexError("template literals nested too deeply", self.pos)
                self.template_depth += 1
                self.pos += 2
                strings.append(_join_surrogates("".join(out)))
                out = []
                inner: list[_Token] = []
                self._scan(inner, in_template=True)
                self.template_depth -= 1
                exprs.append(tuple(inner))
            elif ch == "\r":  # template literals normalise CR and CRLF to LF
                self.pos += 2 if text.startswith("\r\n", self.pos) else 1
                out.append("\n")
            else:
                out.append(ch)
                self.pos += 1

    def _read_escape(self) -> str:
        text = self.text
        start = self.pos
        self.pos += 1
        if self.pos >= len(text):
            raise _LexError("unterminated string", start)
        ch = text[self.pos]
        self.pos += 1
        if ch in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[ch]
        if ch == "\r":
            if text.startswith("\n", self.pos):
                self.pos += 1
            return ""
        if ch in "\n\u2028\u2029":
            return ""
        if ch == "0" and not text[self.pos : self.pos + 1].isdigit():
            return "\0"
        if ch.isdigit():
            raise _LexError(f"legacy octal escape '\\{ch}' is not supported", start)
        if ch == "x":
            return chr(self._hex_digits(2, start))
        if ch == "u":
            if text.startswith("{", self.pos):
                close = text.find("}", self.pos)
                digits = text[self.pos + 1 : close] if close != -1 else ""
                if not digits or any(c not in _HEX_DIGITS for c in digits):
                    raise _LexError("invalid \\u{...} escape", start)
                code = int(digits, 16)
                if code > 0x10FFFF:
                    raise _LexError("\\u{...} escape is beyond U+10FFFF", start)
                self.pos = close + 1
                return chr(code)
            return chr(self._hex_digits(4, start))
        return ch

    def _hex_digits(self, count: int, escape_start: int) -> int:
        digits = self.text[self.pos : self.pos + count]
        if len(digits) != count or any(c not in _HEX_DIGITS for c in digits):
            raise _LexError(f"invalid escape: expected {count} hex digits", escape_start)
        self.pos += count
        return int(digits, 16)


# ---------------------------------------------------------------------------
# Node's path functions (POSIX flavour), for path.join / path.resolve


def _path_normalize(path: str) -> str:
    if not path:
        return "."
    absolute = path.startswith("/")
    trailing = path.endswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not absolute:
                parts.append("..")
            continue
        parts.append(part)
    body = "/".join(parts)
    if not body:
        if absolute:
            return "/"
        return "./" if trailing else "."
    if trailing:
        body += "/"
    return "/" + body if absolute else body


def _path_join(parts: list[str]) -> str:
    joined = "/".join(part for part in parts if part)
    return _path_normalize(joined) if joined else "."


def _path_resolve(cwd: str, parts: list[str]) -> str:
    resolved = ""
    for part in reversed([cwd, *parts]):
        if not part:
            continue
        resolved = f"{part}/{resolved}" if resolved else part
        if part.startswith("/"):
            break
    normalized = _path_normalize(resolved)
    return normalized.rstrip("/") or "/"


# ---------------------------------------------------------------------------
# Helpers on values


def _is_array_index(key: str) -> bool:
    return (
        key.isascii()
        and key.isdigit()
        and (key == "0" or not key.startswith("0"))
        and int(key) < 2**32 - 1
    )


def _finish_object(obj: dict[str, Any]) -> dict[str, Any]:
    """Drop undefined properties; put integer-like keys first, as JavaScript orders them."""
    index_keys = sorted((key for key in obj if _is_array_index(key)), key=int)
    out = {key: obj[key] for key in index_keys if obj[key] is not _UNDEFINED}
    for key, value in obj.items():
        if value is not _UNDEFINED and not _is_array_index(key):
            out[key] = value
    return out


def _tree_copy(value: Any) -> Any:
    """A copy with no shared parts, as a JSON round trip gives (deepcopy keeps sharing)."""
    if isinstance(value, dict):
        return {key: _tree_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_tree_copy(item) for item in value]
    return value


def _to_js_string(value: Any) -> str:
    """String(value) for the primitive values whose JavaScript spelling is certain."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if value is None:
        return "null"
    if value is _UNDEFINED:
        return "undefined"
    raise _Unsupported


def _concat(left: Any, right: Any) -> str:
    if isinstance(left, str) or isinstance(right, str):
        return _to_js_string(left) + _to_js_string(right)
    raise _Unsupported  # arithmetic


# ---------------------------------------------------------------------------
# Parser

_LITERAL_NAMES: dict[str, Any] = {
    "true": True,
    "false": False,
    "null": None,
    "undefined": _UNDEFINED,
}
_CLOSERS = frozenset({",", ";", ")", "]", "}", ":"})
# Punctuators that, after a complete value, continue the expression in a way the
# parser does not evaluate ("{", "@", "#" after a value are plain syntax errors).
_OPERATORS = frozenset(_PUNCTUATORS) - _CLOSERS - {"{", "@", "#"}
# Punctuators that can start a value the parser does not evaluate.
_UNSUPPORTED_VALUE_START = frozenset({"/", "/=", "!", "~", "...", "++", "--", "<", "#", "@"})


class _Parser:
    def __init__(
        self,
        tokens: list[_Token],
        source: str,
        *,
        filename: str,
        dirname: str,
        scope: dict[str, Any] | None = None,
        depth: int = 0,
    ) -> None:
        self.tokens = tokens
        self.i = 0
        self.source = source
        self.filename = filename
        self.dirname = dirname
        self.scope: dict[str, Any] = scope if scope is not None else {}
        self.depth = depth  # nesting of values, to stop before Python's recursion limit
        exports: dict[str, Any] = {}
        self.module_exports: Any = exports  # module.exports
        self.exports_ref: Any = exports  # the `exports` variable
        self.default_export: Any = _UNDEFINED
        # `export const apps = ...`: with no default export, the module's named exports.
        self.named_exports: list[str] = []
        self.esm = False

    # -- token helpers -------------------------------------------------------

    def _peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def _advance(self) -> _Token:
        token = self._peek()
        if token.kind != "eof":
            self.i += 1
        return token

    @staticmethod
    def _is(token: _Token, *puncts: str) -> bool:
        return token.kind == "punct" and token.text in puncts

    @staticmethod
    def _is_name(token: _Token, *names: str) -> bool:
        return token.kind == "name" and (not names or token.text in names)

    def _accept(self, punct: str) -> bool:
        if self._is(self._peek(), punct):
            self.i += 1
            return True
        return False

    def _expect(self, *puncts: str) -> _Token:
        token = self._peek()
        if self._is(token, *puncts):
            self.i += 1
            return token
        wanted = " or ".join(f"'{p}'" for p in puncts)
        self._syntax_error(f"expected {wanted} but found {self._describe(token)}", token)

    @staticmethod
    def _describe(token: _Token) -> str:
        if token.kind == "eof":
            return "'}'" if token.text == "}" else "the end of the file"
        if token.kind == "string":
            return f"the string {token.text}"
        if token.kind == "template":
            return "a template string"
        return f"'{token.text}'"

    def _syntax_error(self, reason: str, token: _Token) -> NoReturn:
        if token.kind == "error":
            reason = token.text
        raise JSSyntaxError(reason, line=token.line, column=token.column, file=self.filename)

    def _needs_node(self, start: int) -> NeedsNode:
        """NeedsNode naming the source text of the value (or statement) at token `start`."""
        first = self.tokens[start]
        last = first
        depth = 0
        for index in range(start, len(self.tokens)):
            token = self.tokens[index]
            if token.kind == "eof":
                break
            if index > start and depth == 0 and self._line_break_ends(last, token):
                break
            if self._is(token, "(", "[", "{"):
                depth += 1
            elif self._is(token, ")", "]", "}"):
                if depth == 0:
                    break
                depth -= 1
            elif self._is(token, ",", ";") and depth == 0:
                break
            last = token
        text = " ".join(self.source[first.start : last.end].split())
        if last.kind == "error":  # the rest of the line: drop what closes the value
            text = text.rstrip(" ,;)]}")
        text = text or first.text
        if len(text) > 80:
            text = text[:77] + "..."
        return NeedsNode(text, first.line)

    @staticmethod
    def _line_break_ends(before: _Token, after: _Token) -> bool:
        """Whether a line break between the tokens ends the statement (a rough ASI)."""
        value_kinds = ("name", "string", "number", "template")
        return (
            after.newline_before
            and (before.kind in value_kinds or _Parser._is(before, ")", "]", "}"))
            and (after.kind in value_kinds or _Parser._is(after, "{"))
        )

    # -- program and statements ---------------------------------------------

    def parse_program(self) -> Any:
        while self._peek().kind != "eof":
            self._statement()
        value = self.default_export if self.esm else self.module_exports
        if self.esm and value is _UNDEFINED and self.named_exports:
            value = {n: self.scope[n] for n in self.named_exports if self.scope[n] is not _UNDEFINED}
        if value is _UNDEFINED:
            return None
        if isinstance(value, dict):
            value = _finish_object(value)
        return _tree_copy(value)

    def _statement(self) -> None:
        start = self.i
        if self._accept(";"):
            return
        try:
            self._statement_body()
        except _Unsupported:
            raise self._needs_node(start) from None
        token = self._peek()
        if self._accept(";") or token.kind == "eof" or token.newline_before:
            return
        self._syntax_error(f"expected ';' or a line break but found {self._describe(token)}", token)

    def _statement_body(self) -> None:
        token = self._peek()
        after = self._peek(1)
        if token.kind == "string" and (
            after.kind == "eof" or after.newline_before or self._is(after, ";")
        ):
            self._advance()  # a directive such as 'use strict'
        elif self._is_name(token, "const", "let", "var"):
            self._declaration()
        elif self._is_name(token, "import") and not self._is(after, "(", "."):
            self._import()
        elif self._is_name(token, "export"):
            self._export()
        elif self._is_name(token, "module") and self._is(after, "."):
            self._advance()
            self._advance()
            if not self._is_name(self._advance(), "exports"):
                raise _Unsupported
            self.module_exports = self._export_assignment(self.module_exports)
        elif self._is_name(token, "exports") and self._is(after, ".", "[", "="):
            self._advance()
            # Rebinding `exports` itself leaves module.exports alone, as in Node.
            self.exports_ref = self._export_assignment(self.exports_ref)
        else:
            raise _Unsupported

    def _export_assignment(self, target: Any) -> Any:
        """`= value` or `.key = value` after module.exports or exports: the new target."""
        key = self._member_key()
        if not self._accept("="):
            raise _Unsupported  # a call, a deeper member, a compound assignment...
        value = self._element()
        if key is None:
            return value
        if not isinstance(target, dict):
            raise _Unsupported
        target[key] = value
        return target

    def _member_key(self) -> str | None:
        """`.name` or `['name']` after module.exports / exports, or None."""
        if self._accept("."):
            token = self._advance()
            if token.kind != "name":
                self._syntax_error(
                    f"expected a property name but found {self._describe(token)}", token
                )
            return token.text
        if (
            self._is(self._peek(), "[")
            and self._peek(1).kind == "string"
            and self._is(self._peek(2), "]")
        ):
            key: str = self._peek(1).value
            self.i += 3
            return key
        return None

    def _declaration(self) -> None:
        self._advance()  # const / let / var
        while True:
            target = self._peek()
            pattern: list[tuple[str, str]] | None = None
            if target.kind == "name" and target.text not in _RESERVED:
                self._advance()
            elif self._is(target, "{"):
                self._advance()
                pattern = self._object_pattern()
            elif self._is(target, "["):
                raise _Unsupported
            else:
                self._syntax_error(
                    f"expected a variable name but found {self._describe(target)}", target
                )
            value: Any = _UNDEFINED
            if self._accept("="):
                value = self._element(allow_marker=True)
            elif pattern is not None:
                self._syntax_error("a destructuring declaration needs a value", self._peek())
            if pattern is None:
                self.scope[target.text] = value
            else:
                for key, local in pattern:
                    self.scope[local] = self._member_of(value, key)
            if not self._accept(","):
                return

    def _object_pattern(self) -> list[tuple[str, str]]:
        """`{ a, b: c }` after the '{': pairs of (property, local name)."""
        pairs: list[tuple[str, str]] = []
        while not self._accept("}"):
            key = self._advance()
            if key.kind != "name":
                raise _Unsupported
            local = key.text
            if self._accept(":"):
                local_token = self._advance()
                if local_token.kind != "name":
                    raise _Unsupported
                local = local_token.text
            if self._is(self._peek(), "="):
                raise _Unsupported  # default values
            pairs.append((key.text, local))
            if not self._accept(","):
                self._expect("}")
                break
        return pairs

    def _member_of(self, value: Any, key: str) -> Any:
        """`value.key` for a destructuring pattern."""
        if isinstance(value, _Module):
            if not value.is_path:
                return _Opaque(f"{value.name}.{key}")
            return self._path_member(key)
        if isinstance(value, dict):
            return value[key] if key in value else _Opaque(key)
        raise _Unsupported

    def _path_member(self, key: str) -> Any:
        if key in _PATH_FUNCS:
            return _PathFunc(key)
        if key == "sep":
            return "/"
        if key == "delimiter":
            return ":"
        if key == "posix":
            return _Module("path")
        raise _Unsupported

    def _import(self) -> None:
        self._advance()  # import
        self.esm = True
        bindings: list[tuple[str, str | None]] = []  # (local name, imported name or None=module)
        token = self._peek()
        if token.kind == "string":
            raise _Unsupported  # import 'x' runs the module for its side effects
        more = True
        if token.kind == "name":  # the default import
            bindings.append((self._advance().text, "default"))
            more = self._accept(",")
        if more and self._accept("*"):
            if not self._is_name(self._advance(), "as"):
                self._syntax_error("expected 'as' after 'import *'", self.tokens[self.i - 1])
            bindings.append((self._name("a module name"), None))
        elif more and self._accept("{"):
            while not self._accept("}"):
                imported = self._advance()
                if imported.kind not in ("name", "string"):
                    self._syntax_error(
                        f"expected a name but found {self._describe(imported)}", imported
                    )
                name = imported.text if imported.kind == "name" else str(imported.value)
                local = name
                if self._is_name(self._peek(), "as"):
                    self._advance()
                    local = self._name("a local name")
                bindings.append((local, name))
                if not self._accept(","):
                    self._expect("}")
                    break
        if not self._is_name(self._advance(), "from"):
            self._syntax_error("expected 'from' in the import", self.tokens[self.i - 1])
        source = self._advance()
        if source.kind != "string":
            self._syntax_error(
                f"expected a module name string but found {self._describe(source)}", source
            )
        if self._is_name(self._peek(), "with", "assert") and not self._peek().newline_before:
            raise _Unsupported  # import attributes (JSON modules)
        module = _Module(str(source.value))
        for local, imported_name in bindings:
            if imported_name is None or (imported_name == "default" and module.is_path):
                self.scope[local] = module
            else:
                self.scope[local] = self._member_of(module, imported_name)

    def _name(self, what: str) -> str:
        token = self._advance()
        if token.kind != "name":
            self._syntax_error(f"expected {what} but found {self._describe(token)}", token)
        return token.text

    def _export(self) -> None:
        self._advance()  # export
        self.esm = True
        token = self._peek()
        if self._is_name(token, "default"):
            self._advance()
            self.default_export = self._element()
        elif self._is_name(token, "const", "let", "var"):
            before = set(self.scope)
            self._declaration()
            self.named_exports.extend(n for n in self.scope if n not in before)
        else:
            raise _Unsupported

    # -- expressions ----------------------------------------------------------

    def _element(self, *, allow_marker: bool = False) -> Any:
        """A whole value (property value, array item, initializer); names it if unsupported."""
        start = self.i
        try:
            return self._expression(allow_marker=allow_marker)
        except _Unsupported:
            raise self._needs_node(start) from None

    def _expression(self, *, allow_marker: bool = False) -> Any:
        value = self._unary()
        while self._accept("+"):
            value = _concat(value, self._unary())
        token = self._peek()
        if token.kind == "punct" and token.text in _OPERATORS:
            raise _Unsupported
        if self._is_name(token, "in", "instanceof"):
            raise _Unsupported
        if isinstance(value, _MARKERS) and not allow_marker:
            raise _Unsupported
        return value

    def _unary(self) -> Any:
        if self.depth >= _MAX_DEPTH:
            raise _Unsupported  # nested too deeply for this parser; Node copes
        self.depth += 1
        try:
            token = self._peek()
            if self._is(token, "-", "+"):
                self._advance()
                operand = self._unary()
                if isinstance(operand, bool) or not isinstance(operand, int | float):
                    raise _Unsupported
                return _js_number(-operand) if token.text == "-" else operand
            return self._postfix()
        finally:
            self.depth -= 1

    def _postfix(self) -> Any:
        value = self._primary()
        while True:
            token = self._peek()
            if self._accept("."):
                name = self._advance()
                if name.kind != "name":
                    self._syntax_error(
                        f"expected a property name but found {self._describe(name)}", name
                    )
                value = self._member(value, name.text)
            elif self._is(token, "("):
                self._advance()
                value = self._call(value, self._arguments())
            elif self._is(token, "?.", "[") or token.kind == "template":
                raise _Unsupported  # optional chaining, computed member, tagged template
            else:
                return value

    def _member(self, value: Any, name: str) -> Any:
        if isinstance(value, _Module) and value.is_path:
            return self._path_member(name)
        raise _Unsupported

    def _arguments(self) -> list[Any]:
        args: list[Any] = []
        while not self._accept(")"):
            if self._is(self._peek(), "..."):
                raise _Unsupported
            args.append(self._expression(allow_marker=True))
            if not self._accept(","):
                self._expect(")")
                break
        return args

    def _call(self, callee: Any, args: list[Any]) -> Any:
        if isinstance(callee, _Require):
            if len(args) == 1 and isinstance(args[0], str):
                return _Module(args[0])
            raise _Unsupported
        if isinstance(callee, _PathFunc):
            if not all(isinstance(arg, str) for arg in args):
                raise _Unsupported  # Node throws a TypeError; let it say so
            if callee.name == "join":
                return _path_join(args)
            if callee.name == "resolve":
                return _path_resolve(os.path.abspath(self.dirname), args)
            if callee.name == "normalize" and len(args) == 1:
                return _path_normalize(args[0])
        raise _Unsupported

    def _primary(self) -> Any:
        token = self._advance()
        if token.kind == "string":
            return token.value
        if token.kind == "number":
            if token.value is _BIGINT:
                raise _Unsupported  # JSON.stringify cannot write a BigInt
            return token.value
        if token.kind == "template":
            return self._template(token.value)
        if token.kind == "name":
            return self._identifier(token.text)
        if self._is(token, "{"):
            return self._object()
        if self._is(token, "["):
            return self._array()
        if self._is(token, "("):
            if self._is(self._peek(), ")"):
                raise _Unsupported  # () => ...
            value = self._expression(allow_marker=True)
            if self._is(self._peek(), ","):
                raise _Unsupported  # the comma operator, or arrow function parameters
            self._expect(")")
            if self._is(self._peek(), "=>"):
                raise _Unsupported
            return value
        if token.kind == "punct" and token.text in _UNSUPPORTED_VALUE_START:
            raise _Unsupported
        self._syntax_error(f"expected a value but found {self._describe(token)}", token)

    def _identifier(self, name: str) -> Any:
        if name in _LITERAL_NAMES:
            return _LITERAL_NAMES[name]
        if name in self.scope:
            value = self.scope[name]
            if isinstance(value, _Opaque):
                raise _Unsupported
            return value
        if name == "require":
            return _REQUIRE
        if name == "__dirname":
            return self.dirname
        if name == "__filename":
            return self.filename
        raise _Unsupported  # process, os, Math, a function, an undeclared name...

    def _template(self, template: _Template) -> str:
        parts = [template.strings[0]]
        for tokens, text in zip(template.exprs, template.strings[1:], strict=True):
            inner = _Parser(
                list(tokens),
                self.source,
                filename=self.filename,
                dirname=self.dirname,
                scope=self.scope,
                depth=self.depth,
            )
            value = inner._expression()
            end = inner._peek()
            if end.kind != "eof":
                inner._syntax_error(f"expected '}}' but found {inner._describe(end)}", end)
            parts.append(_to_js_string(value))
            parts.append(text)
        return "".join(parts)

    def _object(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        while not self._accept("}"):
            start = self.i
            token = self._advance()
            if self._is(token, "...", "[", "*"):
                raise self._needs_node(start)  # spread, computed key, generator method
            if token.kind == "name":
                key = token.text
            elif token.kind == "string":
                key = token.value
            elif token.kind == "number" and isinstance(token.value, int):
                key = str(token.value)
            elif token.kind == "number":
                raise self._needs_node(start)
            else:
                self._syntax_error(
                    f"expected a property name but found {self._describe(token)}", token
                )
            after = self._peek()
            if self._accept(":"):
                value = self._element()
                if key != "__proto__":  # `__proto__: x` sets the prototype, not a property
                    result[key] = value
            elif token.kind == "name" and token.text not in _RESERVED and self._is(after, ",", "}"):
                self.i = start  # shorthand `{ name }`: read the name as a value
                result[key] = self._element()
            elif self._is(after, "(") or (
                token.kind == "name"
                and token.text in ("get", "set", "async")
                and (after.kind in ("name", "string", "number") or self._is(after, "[", "*"))
            ):
                raise self._needs_node(start)  # a method, getter or setter
            else:
                self._syntax_error(
                    f"expected ':' after the property name but found {self._describe(after)}",
                    after,
                )
            if not self._accept(","):
                self._expect(",", "}")
                break
        return _finish_object(result)

    def _array(self) -> list[Any]:
        items: list[Any] = []
        while not self._accept("]"):
            if self._accept(","):
                items.append(None)  # a hole: JSON.stringify writes null
                continue
            if self._is(self._peek(), "..."):
                raise self._needs_node(self.i)
            value = self._element()
            items.append(None if value is _UNDEFINED else value)
            if not self._accept(","):
                self._expect(",", "]")
                break
        return items


# ---------------------------------------------------------------------------
# Public API


def parse_js_literal(text: str, *, filename: str = "<string>", dirname: str = ".") -> Any:
    """Evaluate the export of an ecosystem file's source without running any JavaScript.

    Raises NeedsNode for valid JavaScript outside the supported subset and
    JSSyntaxError (a ConfigError) for text that is not valid JavaScript.
    """
    tokens = _Lexer(text).tokenize()
    return _Parser(tokens, text, filename=filename, dirname=dirname).parse_program()


NO_NODE_ENV = "CORRAL_NO_NODE"


def node_refused(env: Mapping[str, str] | None = None) -> bool:
    """Whether ``CORRAL_NO_NODE`` forbids running node to read a file."""
    value = (os.environ if env is None else env).get(NO_NODE_ENV, "")
    return value.strip().lower() not in ("", "0", "false", "no", "off")


def announce_on_stderr(path: Path, reason: str) -> None:
    """The default notice: a file is about to be evaluated by node."""
    sys.stderr.write(
        f"corral: note: {path} is evaluated with node ({reason}); "
        f"--no-node or {NO_NODE_ENV}=1 refuses to run it\n"
    )


def load_js_file(
    path: Path,
    *,
    node: str | None | Literal["auto"] = "auto",
    timeout: float = 10.0,
    announce: Callable[[Path, str], None] | None = announce_on_stderr,
    refused_by: str | None = None,
) -> Any:
    """The value a JavaScript ecosystem file exports, as plain Python data.

    The file is parsed in Python when it is a plain literal; otherwise it is
    evaluated with Node.js (``node="auto"`` looks for ``node`` on PATH, ``None``
    means Node is not available). ``announce(path, reason)`` is called before node
    runs (by default: a note on stderr); ``refused_by`` (e.g. ``"--no-node"``) means
    node must not run, and names why in the error. Raises ConfigError.
    """
    label = str(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise ConfigError("file not found", file=label)
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", file=label)
    except UnicodeDecodeError as e:
        raise ConfigError(f"not valid UTF-8 (byte {e.start})", file=label)
    absolute = path.resolve()
    reason: NeedsNode | JSSyntaxError
    try:
        return parse_js_literal(text, filename=str(absolute), dirname=str(absolute.parent))
    except NeedsNode as e:
        reason = e
    except JSSyntaxError as e:
        reason = e
    if refused_by is not None:
        what = reason.describe() if isinstance(reason, NeedsNode) else f"line {reason.line}: {reason.reason}"
        raise ConfigError(
            f"{what.split('; install node')[0]}; node is not run because of {refused_by}", file=label
        ) from None
    node_exe = shutil.which("node") if node == "auto" else node
    if node_exe is None:
        if isinstance(reason, NeedsNode):
            raise ConfigError(reason.describe(), file=label) from None
        raise JSSyntaxError(
            reason.reason, line=reason.line, column=reason.column, file=label
        ) from None
    if announce is not None:
        announce(
            absolute,
            f"line {reason.line}: '{reason.construct}'"
            if isinstance(reason, NeedsNode)
            else "the literal reader cannot parse it",
        )
    esm = path.suffix.lower() == ".mjs" or (
        path.suffix.lower() != ".cjs" and _uses_esm_syntax(_Lexer(text).tokenize())
    )
    return _evaluate_with_node(node_exe, absolute, label, esm=esm, timeout=timeout)


def _uses_esm_syntax(tokens: list[_Token]) -> bool:
    """Whether a statement starts with `import` or `export` (not `import(` / `import.meta`)."""
    previous: _Token | None = None
    for index, token in enumerate(tokens):
        if token.kind == "name" and token.text in ("import", "export"):
            at_start = (
                previous is None
                or token.newline_before
                or (previous.kind == "punct" and previous.text in (";", "}"))
            )
            following = tokens[min(index + 1, len(tokens) - 1)]
            if at_start and not _Parser._is(following, "(", ".", ":"):
                return True
        previous = token
    return False


# The runner writes the JSON to a file named on its command line, so whatever the
# ecosystem file prints cannot mix with it; it exits at once so that timers or
# servers started by the file do not keep Node alive.
_NODE_RUNNER = r"""
const fs = require('fs');
const { pathToFileURL } = require('url');
const [file, out, mode] = process.argv.slice(1);
const load = async () => {
  if (mode === 'import') {
    const ns = await import(pathToFileURL(file).href);
    // `export const apps = [...]` and no default export: the named exports.
    return 'default' in ns ? ns.default : { ...ns };
  }
  let value;
  try {
    value = require(file);
  } catch (err) {
    if (err && (err.code === 'ERR_REQUIRE_ESM' || err.code === 'ERR_REQUIRE_ASYNC_MODULE')) {
      const ns = await import(pathToFileURL(file).href);
      return 'default' in ns ? ns.default : { ...ns };
    }
    throw err;
  }
  if (value && value[Symbol.toStringTag] === 'Module') {
    value = 'default' in value ? value.default : { ...value };
  }
  return value;
};
load().then(
  async (value) => {
    const json = JSON.stringify(await value);
    fs.writeFileSync(out, json === undefined ? 'null' : json);
    process.exit(0);
  },
).catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + '\n');
  process.exit(1);
});
"""


def _stderr_tail(stderr: str, path: Path, lines: int = 12) -> str:
    """The useful end of Node's error output: no stack frames but those in the file."""
    kept: list[str] = []
    for line in stderr.splitlines():
        stripped = line.strip()
        if not stripped or line.startswith("Node.js v"):
            continue
        if stripped.startswith("at ") and str(path) not in stripped:
            continue
        kept.append(line.rstrip())
    return "\n".join(kept[-lines:])


def _evaluate_with_node(node_exe: str, path: Path, label: str, *, esm: bool, timeout: float) -> Any:
    with tempfile.TemporaryDirectory(prefix="corral-js-") as tmp:
        out = Path(tmp) / "export.json"
        argv = [
            node_exe,
            "--no-warnings",
            "-e",
            _NODE_RUNNER,
            "--",
            str(path),
            str(out),
            "import" if esm else "require",
        ]
        try:
            proc = subprocess.Popen(
                argv,
                cwd=path.parent,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as e:
            raise ConfigError(f"cannot run node ({node_exe}): {e.strerror or e}", file=label)
        try:
            _, err_bytes = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            raise ConfigError(
                f"node did not finish evaluating the file within {timeout:g}s "
                "(does it loop, wait for input or start a server?)",
                file=label,
            )
        stderr = err_bytes.decode("utf-8", "replace")
        if proc.returncode != 0:
            tail = _stderr_tail(stderr, path)
            detail = f":\n{tail}" if tail else ""
            raise ConfigError(
                f"node failed to evaluate the file (exit code {proc.returncode}){detail}",
                file=label,
            )
        try:
            raw = out.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(
                "node exited before the file finished loading (does it call process.exit?)",
                file=label,
            )
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"node returned output that is not JSON: {e}", file=label)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, AttributeError):
        proc.kill()
