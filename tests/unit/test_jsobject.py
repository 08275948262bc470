"""Tests for corral.config.jsobject: PM2 ecosystem files read with and without Node."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from corral.config.jsobject import (
    JSSyntaxError,
    NeedsNode,
    _evaluate_with_node,
    load_js_file,
    parse_js_literal,
)
from corral.core.errors import ConfigError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pm2"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")


def export(literal: str) -> str:
    return f"module.exports = {literal};\n"


# ---------------------------------------------------------------------------
# Values

VALUE_CASES: list[tuple[str, str, Any]] = [
    ("single-quoted", "'hello'", "hello"),
    ("double-quoted", '"hello"', "hello"),
    ("backtick", "`hello`", "hello"),
    ("empty string", "''", ""),
    ("quote inside other quotes", '"it\'s"', "it's"),
    ("escaped quote", r"'it\'s'", "it's"),
    ("simple escapes", r"'a\nb\tc\\d\re\bf\fg\vh'", "a\nb\tc\\d\re\bf\fg\vh"),
    ("nul escape", r"'a\0b'", "a\0b"),
    ("hex escape", r"'\x41\x7a'", "Az"),
    ("unicode escape", r"'caf\u00e9'", "café"),
    ("unicode brace escape", r"'\u{1F600}'", "\U0001f600"),
    ("surrogate pair escape", r"'\uD83D\uDE00'", "\U0001f600"),
    ("unknown escape is the char", r"'\d\.'", "d."),
    ("line continuation", "'a\\\nb'", "ab"),
    ("raw unicode", "'日本語 ✓'", "日本語 ✓"),
    ("multi-line backtick", "`a\nb`", "a\nb"),
    ("backtick escapes", r"`tab\there \` \${x}`", "tab\there ` ${x}"),
    ("int", "42", 42),
    ("zero", "0", 0),
    ("negative int", "-1", -1),
    ("unary plus", "+7", 7),
    ("double minus", "- -3", 3),
    ("float", "1.5", 1.5),
    ("leading dot float", ".5", 0.5),
    ("trailing dot float", "5.", 5),
    ("negative float", "-0.25", -0.25),
    ("integral float is int", "2.0", 2),
    ("exponent", "1e3", 1000),
    ("negative exponent", "25e-1", 2.5),
    ("hex", "0x10", 16),
    ("hex upper", "0XfF", 255),
    ("octal", "0o17", 15),
    ("binary", "0b101", 5),
    ("separators", "1_000_000", 1000000),
    ("huge exponent stays float", "1e21", 1e21),
    ("big integer reads like JavaScript", "1152921504606846976", 1152921504606847000),
    ("negative zero", "-0", 0),
    ("true", "true", True),
    ("false", "false", False),
    ("null", "null", None),
    ("empty object", "{}", {}),
    ("empty array", "[]", []),
    ("unquoted keys", "{a: 1, b_c: 2, $d: 3}", {"a": 1, "b_c": 2, "$d": 3}),
    ("quoted keys", "{'a-b': 1, \"c d\": 2}", {"a-b": 1, "c d": 2}),
    (
        "reserved words as keys",
        "{default: 1, class: 2, new: 3}",
        {"default": 1, "class": 2, "new": 3},
    ),
    ("numeric keys", "{1: 'a', 0x2: 'b', 1e1: 'c'}", {"1": "a", "2": "b", "10": "c"}),
    ("integer keys come first", "{b: 1, 2: 2, a: 3, 1: 4}", {"1": 4, "2": 2, "b": 1, "a": 3}),
    ("duplicate key keeps place", "{a: 1, b: 2, a: 3}", {"a": 3, "b": 2}),
    ("trailing comma object", "{a: 1,}", {"a": 1}),
    ("trailing comma array", "[1, 2,]", [1, 2]),
    ("array hole", "[1, , 2]", [1, None, 2]),
    ("array only hole", "[,]", [None]),
    ("nested", "{a: {b: [1, {c: [true]}]}}", {"a": {"b": [1, {"c": [True]}]}}),
    ("undefined property dropped", "{a: undefined, b: 1}", {"b": 1}),
    ("undefined in array is null", "[undefined, 1]", [None, 1]),
    ("__proto__ property is not data", "{__proto__: {x: 1}, a: 1}", {"a": 1}),
    ("parenthesised value", "{a: ('x')}", {"a": "x"}),
    ("string concatenation", "'a' + \"b\" + `c`", "abc"),
    ("string plus int", "'port-' + 3000", "port-3000"),
    ("int plus string", "3000 + '/tcp'", "3000/tcp"),
    ("string plus bool and null", "'x' + true + null", "xtruenull"),
    ("multi-line concatenation", "'a' +\n  'b'", "ab"),
]


@pytest.mark.parametrize(
    ("source", "expected"),
    [pytest.param(src, exp, id=name) for name, src, exp in VALUE_CASES],
)
def test_values(source: str, expected: Any) -> None:
    result = parse_js_literal(export(f"{{ v: {source} }}"))
    assert result == {"v": expected}
    assert type(result["v"]) is type(expected)


# ---------------------------------------------------------------------------
# Shapes of a file

APPS = {"apps": [{"name": "api", "script": "server.js"}]}
APPS_LITERAL = "{ apps: [{ name: 'api', script: 'server.js' }] }"

SHAPE_CASES: list[tuple[str, str, Any]] = [
    ("module.exports object", f"module.exports = {APPS_LITERAL};", APPS),
    ("no semicolon", f"module.exports = {APPS_LITERAL}", APPS),
    (
        "module.exports array",
        "module.exports = [{ name: 'a' }, { name: 'b' }]",
        [{"name": "a"}, {"name": "b"}],
    ),
    ("export default", f"export default {APPS_LITERAL};", APPS),
    ("exports.apps", "exports.apps = [{ name: 'api', script: 'server.js' }];", APPS),
    ("exports['apps']", "exports['apps'] = [{ name: 'api', script: 'server.js' }]", APPS),
    ("module.exports.apps", "module.exports.apps = [{ name: 'api', script: 'server.js' }]", APPS),
    (
        "exports.apps and exports.deploy",
        "exports.apps = [];\nexports.deploy = { production: { user: 'me' } };",
        {"apps": [], "deploy": {"production": {"user": "me"}}},
    ),
    ("use strict", f"'use strict';\nmodule.exports = {APPS_LITERAL};", APPS),
    ("use strict no semicolon", f'"use strict"\nmodule.exports = {APPS_LITERAL}', APPS),
    (
        "require lines",
        f"const path = require('path');\nconst os = require('os');\nlet fs = require('node:fs')\nmodule.exports = {APPS_LITERAL};",
        APPS,
    ),
    (
        "destructured require",
        f"const {{ join, resolve: r }} = require('path');\nconst {{ cpus }} = require('os');\nmodule.exports = {APPS_LITERAL};",
        APPS,
    ),
    (
        "import lines",
        f"import path from 'path';\nimport * as os from 'node:os';\nimport {{ readFileSync as read }} from 'fs';\nexport default {APPS_LITERAL};",
        APPS,
    ),
    ("const indirection", f"const config = {APPS_LITERAL};\nmodule.exports = config;", APPS),
    ("export default indirection", f"const config = {APPS_LITERAL}\nexport default config", APPS),
    (
        "export const then default",
        f"export const config = {APPS_LITERAL};\nexport default config;",
        APPS,
    ),
    (
        "variables inside literal",
        "const name = 'api'; var script = 'server.js'\nlet apps = [{ name: name, script }]\nmodule.exports = { apps }",
        APPS,
    ),
    (
        "several declarators",
        "const a = 'api', b = 'server.js';\nmodule.exports = { apps: [{ name: a, script: b }] };",
        APPS,
    ),
    (
        "destructure a bound object",
        f"const {{ apps }} = {APPS_LITERAL};\nmodule.exports = {{ apps }};",
        APPS,
    ),
    ("empty statements", f";;module.exports = {APPS_LITERAL};;", APPS),
    ("nothing exported", "const x = 1;", {}),
    (
        "module.exports after exports",
        "exports.a = 1;\nmodule.exports = { b: 2 };\nexports.c = 3;",
        {"b": 2},
    ),
    ("rebinding exports does nothing", "exports = { a: 1 };", {}),
    (
        "module.exports then property",
        "module.exports = { a: 1 };\nmodule.exports.b = 2;",
        {"a": 1, "b": 2},
    ),
    ("export default undefined", "export default undefined", None),
    ("hashbang", f"#!/usr/bin/env node\nmodule.exports = {APPS_LITERAL}", APPS),
    ("byte order mark tolerated", f"\ufeffmodule.exports = {APPS_LITERAL}", APPS),
]


@pytest.mark.parametrize(
    ("source", "expected"),
    [pytest.param(src, exp, id=name) for name, src, exp in SHAPE_CASES],
)
def test_shapes(source: str, expected: Any) -> None:
    assert parse_js_literal(source) == expected


def test_shared_object_is_copied() -> None:
    source = "const env = { A: '1' };\nmodule.exports = { apps: [{ env }, { env }] };"
    result = parse_js_literal(source)
    result["apps"][0]["env"]["A"] = "changed"
    assert result["apps"][1]["env"] == {"A": "1"}


# ---------------------------------------------------------------------------
# __dirname, __filename and path

DIRNAME_CASES: list[tuple[str, str, Any]] = [
    ("__dirname", "__dirname", "/srv/app"),
    ("__filename", "__filename", "/srv/app/ecosystem.config.js"),
    ("concatenation", "__dirname + '/server.js'", "/srv/app/server.js"),
    ("template", "`${__dirname}/logs/out.log`", "/srv/app/logs/out.log"),
    ("template with variable", "`${base}/x-${port}`", "/srv/base/x-8080"),
    ("path.join", "path.join(__dirname, 'dist', 'server.js')", "/srv/app/dist/server.js"),
    ("path.join dot-dot", "path.join(__dirname, '..', 'shared', './x.js')", "/srv/shared/x.js"),
    ("path.join keeps trailing slash", "path.join('a', 'b/')", "a/b/"),
    ("path.join skips empty parts", "path.join('', 'a', '', 'b')", "a/b"),
    ("path.join of nothing", "path.join()", "."),
    ("path.join relative up", "path.join('a', '../../b')", "../b"),
    ("path.resolve absolute part wins", "path.resolve('x', '/etc', 'pm2')", "/etc/pm2"),
    ("path.resolve relative uses dirname", "path.resolve('logs')", "/srv/app/logs"),
    ("path.resolve drops trailing slash", "path.resolve(__dirname, 'a/')", "/srv/app/a"),
    ("path.resolve to root", "path.resolve('/a', '../..')", "/"),
    ("path.normalize", "path.normalize('/a//b/../c/.')", "/a/c"),
    ("path.sep", "'a' + path.sep + 'b'", "a/b"),
    ("destructured join", "join(__dirname, 'x')", "/srv/app/x"),
    ("inline require('path')", "require('path').join(__dirname, 'y')", "/srv/app/y"),
    ("node:path", "np.resolve(__dirname, 'z')", "/srv/app/z"),
]

DIRNAME_PRELUDE = """\
const path = require('path');
const np = require('node:path');
const { join } = require('path');
const base = '/srv/base';
const port = 8080;
"""


@pytest.mark.parametrize(
    ("source", "expected"),
    [pytest.param(src, exp, id=name) for name, src, exp in DIRNAME_CASES],
)
def test_dirname_and_path(source: str, expected: Any) -> None:
    result = parse_js_literal(
        DIRNAME_PRELUDE + export(f"{{ v: {source} }}"),
        filename="/srv/app/ecosystem.config.js",
        dirname="/srv/app",
    )
    assert result == {"v": expected}


@pytest.mark.parametrize(
    "prelude",
    [
        "import path from 'path';",
        "import path from 'node:path';",
        "import * as path from 'path';",
        "import path, { join } from 'path';",
    ],
)
def test_path_imported_with_import(prelude: str) -> None:
    source = f"{prelude}\nexport default {{ cwd: path.join(__dirname, 'web') }};"
    assert parse_js_literal(source, dirname="/srv/app") == {"cwd": "/srv/app/web"}


def test_load_js_file_resolves_dirname(tmp_path: Path) -> None:
    file = tmp_path / "ecosystem.config.js"
    file.write_text(
        "const path = require('path')\n"
        "module.exports = { apps: [{ name: 'a', cwd: __dirname, script: path.join(__dirname, 'a.js'), me: __filename }] }\n"
    )
    app = load_js_file(file, node=None)["apps"][0]
    root = tmp_path.resolve()
    assert app == {
        "name": "a",
        "cwd": str(root),
        "script": str(root / "a.js"),
        "me": str(file.resolve()),
    }


# ---------------------------------------------------------------------------
# Comments in odd places

COMMENT_CASES: list[tuple[str, str]] = [
    (
        "line comments",
        "// head\nmodule.exports = { // after brace\n  a: 1, // after value\n  // alone\n  b: [2] // last\n} // tail",
    ),
    (
        "block comments",
        "/* head */ module.exports /* a */ = /* b */ { /* c */ a /* d */ : /* e */ 1 /* f */, b: [ /* g */ 2 /* h */ ] /* i */ } /* j */ ;",
    ),
    (
        "multi-line block",
        "/**\n * Ecosystem.\n * @type {import('pm2').StartOptions}\n */\nmodule.exports = {\n  a: 1, /*\n  b: 'commented out',\n  */ b: [2],\n}",
    ),
    (
        "comment markers inside strings",
        "module.exports = { a: 1, b: [2], c: '// not a comment', d: \"/* nor this */\" }",
    ),
    ("comment before trailing comma", "module.exports = { a: 1 /* x */ , b: [2 // y\n , ] , }"),
    ("comment ends file without newline", "module.exports = { a: 1, b: [2] } // end"),
]


@pytest.mark.parametrize("source", [pytest.param(src, id=name) for name, src in COMMENT_CASES])
def test_comments(source: str) -> None:
    result = parse_js_literal(source)
    assert result["a"] == 1
    assert result["b"] == [2]


# ---------------------------------------------------------------------------
# Syntax errors: line and column

SYNTAX_ERROR_CASES: list[tuple[str, str, int, int, str]] = [
    (
        "missing comma",
        "module.exports = {\n  a: 1\n  b: 2\n}",
        3,
        3,
        "expected ',' or '}' but found 'b'",
    ),
    ("missing value", "module.exports = {\n  a: ,\n}", 2, 6, "expected a value but found ','"),
    ("unclosed object", "module.exports = {\n  a: 1,\n", 3, 1, "end of the file"),
    ("unclosed array", "module.exports = [1, 2", 1, 23, "expected ',' or ']'"),
    ("unterminated string", "module.exports = {\n  name: 'api\n}", 2, 9, "unterminated string"),
    ("unterminated template", "module.exports = {\n  a: `abc\n}", 2, 6, "unterminated template"),
    ("unterminated comment", "module.exports = {}\n/* oops", 2, 1, "unterminated /* comment"),
    ("bad escape", "module.exports = { a: '\\x4' }", 1, 24, "hex digits"),
    ("octal escape", "module.exports = { a: '\\1' }", 1, 24, "octal escape"),
    ("bad number", "module.exports = { a: 12abc }", 1, 25, "invalid number"),
    ("bad separator", "module.exports = { a: 1__0 }", 1, 23, "separator"),
    ("legacy octal number", "module.exports = { a: 0755 }", 1, 23, "leading zero"),
    ("stray character", "module.exports = { a: 1 }\n\\", 2, 1, "unexpected character"),
    ("missing colon", "module.exports = {\n  a 1 }", 2, 5, "expected ':'"),
    ("bad property name", "module.exports = { ,a: 1 }", 1, 20, "expected a property name"),
    ("reserved word shorthand", "module.exports = { true }", 1, 25, "expected ':'"),
    ("reserved word as variable", "const null = 1", 1, 7, "expected a variable name"),
    ("two values on a line", "module.exports = {} {}", 1, 21, "expected ';' or a line break"),
    (
        "empty template expression",
        "module.exports = { a: `${}` }",
        1,
        26,
        "expected a value but found '}'",
    ),
    (
        "bad member name",
        "const path = require('path')\nmodule.exports = { a: path.'x' }",
        2,
        28,
        "property name",
    ),
]


@pytest.mark.parametrize(
    ("source", "line", "column", "fragment"),
    [pytest.param(src, ln, col, frag, id=name) for name, src, ln, col, frag in SYNTAX_ERROR_CASES],
)
def test_syntax_errors(source: str, line: int, column: int, fragment: str) -> None:
    with pytest.raises(JSSyntaxError) as info:
        parse_js_literal(source, filename="eco.js")
    error = info.value
    assert isinstance(error, ConfigError)
    assert (error.line, error.column) == (line, column)
    assert fragment in str(error)
    assert str(error).startswith(f"eco.js: line {line}, column {column}: ")


def test_syntax_error_without_node(tmp_path: Path) -> None:
    file = tmp_path / "ecosystem.config.js"
    file.write_text("module.exports = {\n  apps: [\n    { name: 'a' script: 'b' },\n  ],\n}\n")
    with pytest.raises(ConfigError) as info:
        load_js_file(file, node=None)
    assert info.value.file == str(file)
    assert "line 3, column 17" in str(info.value)


# ---------------------------------------------------------------------------
# Valid JavaScript that needs Node

NEEDS_NODE_CASES: list[tuple[str, str, str, int]] = [
    (
        "os cpus",
        "const os = require('os');\nmodule.exports = {\n  instances: require('os').cpus().length,\n}",
        "require('os').cpus().length",
        3,
    ),
    (
        "os through a variable",
        "const os = require('os')\nmodule.exports = { instances: os.cpus().length }",
        "os.cpus().length",
        2,
    ),
    (
        "destructured os function",
        "const { cpus } = require('os')\nmodule.exports = { instances: cpus().length }",
        "cpus().length",
        2,
    ),
    (
        "imported os",
        "import os from 'os'\nexport default { n: os.cpus().length }",
        "os.cpus().length",
        2,
    ),
    (
        "nullish default",
        "module.exports = {\n  env: {\n    X: process.env.X ?? '1',\n  },\n}",
        "process.env.X ?? '1'",
        3,
    ),
    (
        "or default",
        "module.exports = { port: process.env.PORT || 3000 }",
        "process.env.PORT || 3000",
        1,
    ),
    ("process.env alone", "module.exports = { env: process.env }", "process.env", 1),
    (
        "dotenv config",
        "require('dotenv').config();\nmodule.exports = {}",
        "require('dotenv').config()",
        1,
    ),
    (
        "side-effect import",
        "import 'dotenv/config'\nexport default {}",
        "import 'dotenv/config'",
        1,
    ),
    ("multiplication", "module.exports = { max: 2 * 1024 }", "2 * 1024", 1),
    ("number addition", "module.exports = { n: 1 + 2 }", "1 + 2", 1),
    ("subtraction", "module.exports = { n: 10 - 2 }", "10 - 2", 1),
    ("string plus float", "module.exports = { n: 'x' + 1.5 }", "'x' + 1.5", 1),
    ("function call", "module.exports = { n: getPort() }", "getPort()", 1),
    ("undeclared name", "module.exports = { script: entry }", "entry", 1),
    ("shorthand of undeclared name", "module.exports = { apps }", "apps", 1),
    (
        "object spread",
        "const base = {}\nmodule.exports = { apps: [{ ...base, name: 'a' }] }",
        "...base",
        2,
    ),
    ("array spread", "const more = []\nmodule.exports = { apps: [...more] }", "...more", 2),
    (
        "template expression",
        "module.exports = { cwd: `${process.env.HOME}/app` }",
        "`${process.env.HOME}/app`",
        1,
    ),
    ("arrow function", "module.exports = { f: () => 1 }", "() => 1", 1),
    (
        "function expression",
        "module.exports = { f: function () { return 1 } }",
        "function () { return 1 }",
        1,
    ),
    ("method", "module.exports = { f() { return 1 } }", "f() { return 1 }", 1),
    ("computed key", "const k = 'a'\nmodule.exports = { [k]: 1 }", "[k]: 1", 2),
    (
        "array method",
        "module.exports = { apps: ['a', 'b'].map(n => ({ name: n })) }",
        "['a', 'b'].map(n => ({ name: n }))",
        1,
    ),
    ("member of object", "const c = { a: 1 }\nmodule.exports = { a: c.a }", "c.a", 2),
    ("ternary", "module.exports = { watch: true ? 1 : 2 }", "true ? 1 : 2", 1),
    ("regex", "module.exports = { ignored: /node_modules/ }", "/node_modules/", 1),
    ("regex with escapes", "module.exports = { ignored: /\\.git/ }", "/\\.git/", 1),
    ("bigint", "module.exports = { n: 10n }", "10n", 1),
    ("new", "module.exports = { d: new Date() }", "new Date()", 1),
    ("Math", "module.exports = { n: Math.max(1, 2) }", "Math.max(1, 2)", 1),
    (
        "function declaration",
        "function make() {\n  return {}\n}\nmodule.exports = make()",
        "function make() { return {} }",
        1,
    ),
    ("if statement", "if (true) {\n}\nmodule.exports = {}", "if (true) { }", 1),
    ("console.log", "console.log('hi')\nmodule.exports = {}", "console.log('hi')", 1),
    ("assignment to variable", "const c = {}\nc.apps = []\nmodule.exports = c", "c.apps = []", 2),
    (
        "push onto exports",
        "module.exports = { apps: [] }\nmodule.exports.apps.push({})",
        "module.exports.apps.push({})",
        2,
    ),
    (
        "Object.assign",
        "module.exports = Object.assign({}, { a: 1 })",
        "Object.assign({}, { a: 1 })",
        1,
    ),
    (
        "path.join of a number",
        "const path = require('path')\nmodule.exports = { p: path.join('a', 1) }",
        "path.join('a', 1)",
        2,
    ),
    (
        "unknown path function",
        "const path = require('path')\nmodule.exports = { p: path.basename(__dirname) }",
        "path.basename(__dirname)",
        2,
    ),
    (
        "path module as a value",
        "const path = require('path')\nmodule.exports = { p: path }",
        "path",
        2,
    ),
    (
        "json module import",
        "import apps from './apps.json' with { type: 'json' }\nexport default { apps }",
        "import apps from './apps.json' with { type: 'json' }",
        1,
    ),
    ("import.meta", "const here = import.meta.url\nexport default {}", "import.meta.url", 1),
    ("export list", "const a = {}\nexport { a as default }", "export { a as default }", 2),
    ("optional chaining", "const c = {}\nmodule.exports = { a: c?.a }", "c?.a", 2),
    ("tagged template", "module.exports = { a: String.raw`x` }", "String.raw`x`", 1),
]


@pytest.mark.parametrize(
    ("source", "construct", "line"),
    [pytest.param(src, con, ln, id=name) for name, src, con, ln in NEEDS_NODE_CASES],
)
def test_needs_node(source: str, construct: str, line: int) -> None:
    with pytest.raises(NeedsNode) as info:
        parse_js_literal(source)
    assert (info.value.construct, info.value.line) == (construct, line)


@pytest.mark.parametrize(
    "value",
    [
        "[" * 500 + "]" * 500,
        "{a:" * 500 + "1" + "}" * 500,
        "(" * 500 + "1" + ")" * 500,
        "-" * 500 + "1",
        "`${" * 500 + "1" + "}`" * 500,
    ],
    ids=["arrays", "objects", "parentheses", "minus signs", "templates"],
)
def test_deep_nesting_is_an_error_not_a_crash(value: str) -> None:
    with pytest.raises((NeedsNode, JSSyntaxError)):
        parse_js_literal(export(value))


def test_moderate_nesting_is_fine() -> None:
    expected: list[Any] = []
    for _ in range(59):
        expected = [expected]
    assert parse_js_literal(export("[" * 60 + "]" * 60)) == expected


def test_needs_node_construct_is_shortened() -> None:
    long_call = "f(" + ", ".join(f"'argument-{i}'" for i in range(20)) + ")"
    with pytest.raises(NeedsNode) as info:
        parse_js_literal(export(f"{{ a: {long_call} }}"))
    assert len(info.value.construct) <= 80
    assert info.value.construct.startswith("f('argument-0'")
    assert info.value.construct.endswith("...")


def test_needs_node_without_node_names_the_construct(tmp_path: Path) -> None:
    file = tmp_path / "ecosystem.config.js"
    file.write_text(
        "const os = require('os');\n\nmodule.exports = {\n  apps: [{ name: 'a', instances: require('os').cpus().length }],\n};\n"
    )
    with pytest.raises(ConfigError) as info:
        load_js_file(file, node=None)
    assert info.value.file == str(file)
    assert info.value.message == (
        "line 4: 'require('os').cpus().length' needs Node.js to evaluate; "
        "install node or write the value literally"
    )


def test_node_auto_without_node_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "ecosystem.config.js"
    file.write_text("module.exports = { apps: [{ name: 'a', port: process.env.PORT || 3000 }] }\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match=r"line 1: 'process\.env\.PORT \|\| 3000' needs Node\.js"):
        load_js_file(file)


def test_literal_file_never_runs_node(tmp_path: Path) -> None:
    file = tmp_path / "ecosystem.config.js"
    file.write_text(export(APPS_LITERAL))
    # A node that does not exist would fail if it were run.
    assert load_js_file(file, node=str(tmp_path / "no-such-node")) == APPS


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_js_file(Path("/nonexistent/ecosystem.config.js"), node=None)


def test_not_utf8(tmp_path: Path) -> None:
    file = tmp_path / "ecosystem.config.js"
    file.write_bytes(b"module.exports = { name: '\xff' }")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_js_file(file, node=None)


def test_unrunnable_node(tmp_path: Path) -> None:
    file = tmp_path / "ecosystem.config.js"
    file.write_text("module.exports = { n: 1 + 1 }\n")
    with pytest.raises(ConfigError, match="cannot run node"):
        load_js_file(file, node=str(tmp_path / "no-such-node"))


# ---------------------------------------------------------------------------
# Evaluation with Node


def write(tmp_path: Path, name: str, text: str) -> Path:
    file = tmp_path / name
    file.write_text(text)
    return file


@needs_node
def test_node_evaluates_os_cpus(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "ecosystem.config.js",
        "module.exports = { apps: [{ name: 'a', instances: require('os').cpus().length }] }\n",
    )
    instances = load_js_file(file)["apps"][0]["instances"]
    assert isinstance(instances, int)
    assert instances >= 1


@needs_node
@pytest.mark.parametrize(("env_value", "expected"), [(None, "1"), ("7", "7")])
def test_node_evaluates_nullish_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env_value: str | None, expected: str
) -> None:
    if env_value is None:
        monkeypatch.delenv("CORRAL_TEST_X", raising=False)
    else:
        monkeypatch.setenv("CORRAL_TEST_X", env_value)
    file = write(
        tmp_path,
        "ecosystem.config.js",
        "module.exports = { x: process.env.CORRAL_TEST_X ?? '1' }\n",
    )
    assert load_js_file(file) == {"x": expected}


@needs_node
def test_node_evaluates_arithmetic(tmp_path: Path) -> None:
    file = write(
        tmp_path, "ecosystem.config.js", "module.exports = { max: 2 * 1024, half: 3 / 2 }\n"
    )
    assert load_js_file(file) == {"max": 2048, "half": 1.5}


@needs_node
def test_node_runs_in_the_file_folder(tmp_path: Path) -> None:
    file = write(tmp_path, "ecosystem.config.js", "module.exports = { cwd: process.cwd() }\n")
    assert load_js_file(file) == {"cwd": str(tmp_path.resolve())}


@needs_node
def test_node_evaluates_mjs_export_default(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "ecosystem.config.mjs",
        "import os from 'node:os';\nexport default { apps: [{ name: 'm', n: os.cpus().length > 0 }] };\n",
    )
    assert load_js_file(file) == {"apps": [{"name": "m", "n": True}]}


@needs_node
def test_node_evaluates_js_with_export_default(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "ecosystem.config.js",
        "const n = 6 * 7;\nexport default { apps: [{ name: 'j', n }] };\n",
    )
    assert load_js_file(file) == {"apps": [{"name": "j", "n": 42}]}


@needs_node
def test_node_evaluates_cjs(tmp_path: Path) -> None:
    file = write(tmp_path, "ecosystem.config.cjs", "exports.apps = [{ name: 'c', n: 2 ** 10 }];\n")
    assert load_js_file(file) == {"apps": [{"name": "c", "n": 1024}]}


@needs_node
def test_node_output_ignores_console_log(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "ecosystem.config.js",
        "console.log('{\"not\": \"the config\"}');\nconsole.error('warning');\n"
        "process.stdout.write('partial');\nmodule.exports = { apps: [{ name: 'quiet' }] };\n"
        "console.log('after');\n",
    )
    assert load_js_file(file) == {"apps": [{"name": "quiet"}]}


@needs_node
def test_node_does_not_wait_for_timers(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "ecosystem.config.js",
        "setInterval(() => {}, 1000);\nmodule.exports = { apps: [{ name: 't' }].map((a) => a) };\n",
    )
    assert load_js_file(file, timeout=5) == {"apps": [{"name": "t"}]}


@needs_node
def test_node_timeout(tmp_path: Path) -> None:
    file = write(tmp_path, "ecosystem.config.js", "while (true) {}\nmodule.exports = {};\n")
    with pytest.raises(ConfigError) as info:
        load_js_file(file, timeout=0.5)
    assert info.value.file == str(file)
    assert "within 0.5s" in info.value.message


@needs_node
def test_node_error_shows_stderr(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "ecosystem.config.js",
        "const x = 1;\nmodule.exports = { apps: [{ name: missingName() }] };\n",
    )
    with pytest.raises(ConfigError) as info:
        load_js_file(file)
    message = info.value.message
    assert "exit code 1" in message
    assert "ReferenceError: missingName is not defined" in message
    assert f"{file.resolve()}:2" in message


@needs_node
def test_node_reports_syntax_errors(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "ecosystem.config.js",
        "module.exports = {\n  apps: [\n    { name: 'a' script: 'b' },\n  ],\n}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_js_file(file)
    assert "SyntaxError" in info.value.message


@needs_node
def test_node_require_of_missing_module(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "ecosystem.config.js",
        "require('corral-no-such-module').config();\nmodule.exports = {};\n",
    )
    with pytest.raises(ConfigError, match="Cannot find module 'corral-no-such-module'"):
        load_js_file(file)


@needs_node
def test_node_process_exit_before_export(tmp_path: Path) -> None:
    file = write(tmp_path, "ecosystem.config.js", "process.exit(0);\n")
    with pytest.raises(ConfigError, match="process.exit"):
        load_js_file(file)


@needs_node
def test_node_export_of_a_function_is_null(tmp_path: Path) -> None:
    file = write(tmp_path, "ecosystem.config.js", "module.exports = () => ({});\n")
    assert load_js_file(file) is None


@needs_node
def test_node_awaits_a_promise_export(tmp_path: Path) -> None:
    file = write(
        tmp_path, "ecosystem.config.js", "module.exports = Promise.resolve({ apps: [] });\n"
    )
    assert load_js_file(file) == {"apps": []}


# The pure parser and Node must agree on everything the parser accepts.
AGREEMENT_CASES = (
    [pytest.param(export(f"{{ v: {src} }}"), id=f"value-{name}") for name, src, _ in VALUE_CASES]
    + [pytest.param(src, id=f"shape-{name}") for name, src, _ in SHAPE_CASES]
    + [
        pytest.param(DIRNAME_PRELUDE + export(f"{{ v: {src} }}"), id=f"path-{name}")
        for name, src, _ in DIRNAME_CASES
    ]
)


@needs_node
@pytest.mark.parametrize("source", AGREEMENT_CASES)
def test_parser_agrees_with_node(tmp_path: Path, source: str) -> None:
    esm = "export " in source or "import " in source
    file = write(tmp_path, "ecosystem.config.mjs" if esm else "ecosystem.config.js", source)
    assert NODE is not None
    from_node = _evaluate_with_node(NODE, file.resolve(), str(file), esm=esm, timeout=10)
    assert load_js_file(file, node=None) == from_node


# ---------------------------------------------------------------------------
# The corpus of real-world ecosystem files

FIXTURE_FILES = sorted(FIXTURES.glob("*.*js"))
FIXTURES_NEEDING_NODE = {
    "dotenv-defaults.config.js",
    "logs-console.config.js",
    "needs-node-cpus.config.js",
    "spread-shared.config.js",
}


def apps_of(data: Any) -> list[Any]:
    if isinstance(data, list):
        return data
    assert isinstance(data, dict)
    apps = data["apps"]
    return [apps] if isinstance(apps, dict) else apps


def test_fixture_corpus_is_complete() -> None:
    names = {file.name for file in FIXTURE_FILES}
    assert len(names) >= 12
    assert names >= FIXTURES_NEEDING_NODE
    assert {".js", ".cjs", ".mjs"} <= {file.suffix for file in FIXTURE_FILES}


@pytest.mark.parametrize("file", FIXTURE_FILES, ids=lambda file: file.name)
def test_fixture_without_node(file: Path) -> None:
    if file.name in FIXTURES_NEEDING_NODE:
        with pytest.raises(ConfigError, match="needs Node.js to evaluate"):
            load_js_file(file, node=None)
        return
    apps = apps_of(load_js_file(file, node=None))
    assert apps
    for app in apps:
        assert isinstance(app, dict)
        assert "script" in app or "name" in app


@pytest.mark.parametrize("file", FIXTURE_FILES, ids=lambda file: file.name)
def test_fixture_with_node_when_needed(file: Path) -> None:
    if file.name in FIXTURES_NEEDING_NODE and NODE is None:
        pytest.skip("node is not installed")
    apps = apps_of(load_js_file(file))
    assert apps
    for app in apps:
        assert isinstance(app, dict)
        assert "script" in app or "name" in app


@needs_node
@pytest.mark.parametrize(
    "file",
    [file for file in FIXTURE_FILES if file.name not in FIXTURES_NEEDING_NODE],
    ids=lambda file: file.name,
)
def test_fixture_parser_agrees_with_node(file: Path) -> None:
    assert NODE is not None
    esm = file.suffix == ".mjs"
    from_node = _evaluate_with_node(NODE, file.resolve(), str(file), esm=esm, timeout=10)
    assert load_js_file(file, node=None) == from_node


def test_fixture_details() -> None:
    eco = load_js_file(FIXTURES / "ecosystem.config.js", node=None)
    assert eco["apps"][0]["env_production"] == {"NODE_ENV": "production", "PORT": 8080}

    nextjs = load_js_file(FIXTURES / "nextjs.config.js", node=None)["apps"][0]
    assert nextjs["node_args"] == "--max-old-space-size=4096 --enable-source-maps"
    assert nextjs["cwd"] == str(FIXTURES / "apps" / "web")

    cluster = load_js_file(FIXTURES / "cluster.config.js", node=None)["apps"][0]
    assert (cluster["exec_mode"], cluster["instances"]) == ("cluster", "max")

    python = load_js_file(FIXTURES / "python-app.config.js", node=None)["apps"][1]
    assert python["interpreter"] == str(FIXTURES / ".venv" / "bin" / "python")

    deploy = load_js_file(FIXTURES / "deploy.config.js", node=None)["deploy"]
    assert deploy["production"]["host"] == ["212.83.163.1", "212.83.163.2"]
    assert deploy["production"]["pre-setup"] == "echo 'setting up'"

    single = load_js_file(FIXTURES / "single-app.config.js", node=None)
    assert single["apps"]["name"] == "bot"

    esm = load_js_file(FIXTURES / "esm.config.mjs", node=None)["apps"][0]
    assert esm["cwd"] == str(FIXTURES / "services" / "esm")

    indirection = load_js_file(FIXTURES / "indirection.config.js", node=None)["apps"]
    assert indirection[0]["error_file"] == str(FIXTURES / "logs" / "gateway.err")
    assert indirection[1]["env"] == {"PORT": 8080, "RATIO": 0.25, "BIG": 1000000}

    monorepo = load_js_file(FIXTURES / "monorepo.config.js", node=None)["apps"]
    assert monorepo[0]["cwd"] == str(FIXTURES.parent)
    assert monorepo[1]["ignore_watch"] == ["node_modules", "\\.git", "*.log"]
    assert monorepo[1]["watch_delay"] == 1000
