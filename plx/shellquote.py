"""Shell quoting by context for bash_jinja2 templates: how a value is written where a template puts it.

Quoting for a bare word (shlex.quote) is wrong inside quotes the template writes itself:
`echo '{{ v }}'` with v = `a; b` would become `echo ''a; b''`, and `"{{ v }}"` would let `$(..)`
in v run. So, as HTML template engines escape by context, the template's own text is read with a
small bash lexer, and each {{ }} is escaped for where it stands: a bare word, inside '...',
"...", $'...', `...`, $( ), ${ }, arithmetic, a comment, or a here-document.
"""

from __future__ import annotations

import json
import shlex

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any


def scalar_text(value: Any) -> str:
    """A scalar as plx writes it for bash: bools as true/false, None as nothing."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    return str(value)


def _text(value: Any) -> str:
    """A value verbatim (`| raw`): lists as their items joined by spaces, dicts as JSON."""
    if isinstance(value, (list, tuple)):
        return " ".join(_text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return scalar_text(value)


class ShellSafe(str):
    """Text already safe to paste into bash (like markupsafe's Markup for HTML): written as is."""

    __slots__ = ()


def shell_quote(value: Any) -> ShellSafe:
    """A value as one shell word (docs/reference.md); a list becomes its items, each quoted, joined by spaces.

    Text that needs no quotes (`5`, `/abs/path.txt`) stays as it is; a value already quoted (a
    ShellSafe) is never quoted twice; booleans are true/false and None (an absent optional input)
    is nothing."""
    if isinstance(value, ShellSafe):
        return value
    if value is None:
        return ShellSafe("")
    if isinstance(value, (list, tuple)):
        return ShellSafe(" ".join(shell_quote(v) for v in value if v is not None))
    if isinstance(value, bool):
        return ShellSafe(scalar_text(value))
    return ShellSafe(shlex.quote(_text(value)))


NONE, SQ, DQ, ANSI, BT, SUB, BRACE, DQBRACE, COMMENT, HEREDOC, HEREDOC_LITERAL, ARITH, ARITHB = (
    "none sq dq ansi bt sub brace dqbrace comment heredoc heredoc_literal arith arithb".split()
)


_KEYWORDS = {"then", "do", "else", "elif", "if", "while", "until", "!", "{", "}", "time", "exec", "command", "declare", "local", "export", "readonly", "typeset"}


class ShellLexer:
    """Tracks bash's quoting state across the template's literal text, fed in order."""

    def __init__(self) -> None:
        self.stack: list[str] = [NONE]
        self.depth: list[int] = [0]  # open parentheses inside each $( )
        self.pending: list[tuple[str, bool, bool]] = []  # here-documents to start at the next newline
        self.heredoc: tuple[str, bool] | None = None  # (delimiter, strip tabs) of the current one
        self.line = ""  # the current line of a here-document, to find its delimiter
        self.prev = "\n"  # the previous character (`#` starts a comment only at a word's start)
        self.escape = False
        self.line_values: list[Any] = []  # the {{ }} on the current here-document line
        self.on_delimiter_line: list[Any] = []  # {{ }} on a line whose own text is a delimiter
        self.before_backslash = "\n"
        self.word = ""
        self.at_command = True  # the next word stands where a command (or an assignment) may
        self.word_at_command = True

    @property
    def context(self) -> str:
        return self.stack[-1]

    @property
    def value_context(self) -> str:
        """Where a value written now stands: inside quotes that are inside $(( )), $[ ] or name[ ], still
        the arithmetic (bash evaluates what the quotes hold as arithmetic: a number only)."""
        for c in reversed(self.stack):
            if c in (ARITH, ARITHB):
                return c
            if c not in (SQ, DQ, DQBRACE):
                break
        return self.stack[-1]

    def feed(self, text: str) -> None:  # noqa: C901 - above the threshold when it was set (issue 11)
        i = 0
        while i < len(text):
            c = text[i]
            nxt = text[i + 1] if i + 1 < len(text) else ""
            top = self.stack[-1]
            if self.heredoc is not None and c == "\n" and self.escape and top == HEREDOC:
                # backslash-newline in an expanding here-document joins two lines, also for its end
                self.escape = False
                self.line = self.line[:-1]
                self.prev = self.before_backslash
                i += 1
                continue
            if self.heredoc is not None and c == "\n":
                # bash reads a here-document line by line and ends it at its delimiter line before
                # it parses anything inside, so an open quote or $( in it does not matter here.
                delim, strip = self.heredoc
                if (self.line.lstrip("\t") if strip else self.line) == delim:
                    # Its own text is the delimiter: a value on it would make it another line for bash.
                    self.on_delimiter_line.extend(self.line_values)
                    while self.stack.pop() not in (HEREDOC, HEREDOC_LITERAL):
                        pass
                    self.heredoc = None
                    self.escape = False
                    self.line = ""
                    self.line_values = []
                    self.prev = c
                    i += 1
                    if self.pending:  # `cat <<A <<B`: the next one starts right away
                        self._newline()
                    continue
                self.line = ""
                self.line_values = []
            elif self.heredoc is not None:
                self.line += c
            after = c  # what `prev` becomes: a line continuation (backslash, newline) is no character
            if self.escape:
                self.escape = False
                if c == "\n":
                    after = self.before_backslash
            elif BT in self.stack and c in "`\\" and (c == "`" or nxt in "`$\\"):
                # bash finds the end of `...` before parsing what is inside: the first backquote not
                # escaped by a backslash ends it, whatever quotes or here-documents are open inside.
                if c == "\\":
                    self.escape = True
                else:
                    while (gone := self.stack.pop()) != BT:
                        if gone in (HEREDOC, HEREDOC_LITERAL):
                            self.heredoc, self.line = None, ""
                        if gone in (SUB, ARITH, ARITHB):
                            self.depth.pop()
            elif top in (HEREDOC, HEREDOC_LITERAL):
                if top == HEREDOC and c == "\\":
                    self.escape = True
                elif top == HEREDOC and c != "\n":
                    i += self._expansion(c, nxt, text[i + 2 : i + 3])
            elif top == SQ:
                if c == "'":
                    self.stack.pop()
                    after = "_"
            elif top == ANSI:
                if c == "\\":
                    self.escape = True
                elif c == "'":
                    self.stack.pop()
                    after = "_"
            elif top == COMMENT:
                if c == "\n":
                    self.stack.pop()
                    self._newline()
            elif top in (ARITH, ARITHB) and c in "'\"\\":
                # bash honours quotes and backslashes while it looks for the bracket that ends the
                # arithmetic (a `)` in "...", or in a ${...} inside them, ends nothing); what they hold
                # is still arithmetic for a value (value_context).
                if c == "\\":
                    self.escape = True
                else:
                    self.stack.append(SQ if c == "'" else DQ)
            elif top == ARITHB:
                if c == "[":
                    self.depth[-1] += 1
                elif c == "]" and self.depth[-1]:
                    self.depth[-1] -= 1
                elif c == "]":
                    self.stack.pop()
                    self.depth.pop()
                    after = "_"
                else:
                    i += self._expansion(c, nxt, text[i + 2 : i + 3])
            elif top == ARITH:  # $(( )) and (( )): expanded as inside double quotes, then evaluated
                if c == "(":
                    self.depth[-1] += 1
                elif c == ")" and self.depth[-1]:
                    self.depth[-1] -= 1
                elif c == ")":
                    self.stack.pop()
                    self.depth.pop()
                    i += 1 if nxt == ")" else 0
                    after = "_"
                else:
                    i += self._expansion(c, nxt, text[i + 2 : i + 3])
            elif top in (DQ, DQBRACE):  # ${...} inside "...": quotes in it are taken as text here
                if c == "\\":
                    self.escape = True
                elif (c == '"' and top == DQ) or (c == "}" and top == DQBRACE):
                    self.stack.pop()
                    after = "_"
                else:
                    i += self._expansion(c, nxt, text[i + 2 : i + 3])
            else:  # NONE, SUB, BRACE, BT: shell words
                if c == "\\":
                    self.escape = True
                elif c == "'":
                    self.stack.append(SQ)
                elif c == '"':
                    self.stack.append(DQ)
                elif c == "$" and nxt == "'":
                    self.stack.append(ANSI)
                    i += 1
                elif c == "#" and (self.prev.isspace() or self.prev in ";&|()"):
                    self.stack.append(COMMENT)
                elif c == "`" and top == BT:
                    self.stack.pop()
                    after = "_"  # the end of an expansion: the word goes on
                elif c == "}" and top == BRACE:
                    self.stack.pop()
                    after = "_"
                elif c == ")" and top == SUB:
                    if self.depth[-1]:
                        self.depth[-1] -= 1
                    else:
                        self.stack.pop()
                        self.depth.pop()
                        after = "_"
                elif c == "(" and top == SUB:
                    self.depth[-1] += 1
                elif c == "<" and nxt == "<" and text[i + 2 : i + 3] != "<" and self.prev != "<" and top != BRACE and self.heredoc is None:
                    # (not <<<; and inside a here-document's body, bash reads lines to its own end first)
                    i += self._heredoc_start(text, i)
                elif c == "\n":
                    self._newline()
                elif c == "[" and self.word_at_command and self.word.isidentifier() and self.word.isascii():
                    self.stack.append(ARITHB)  # name[...]: an array subscript, evaluated as arithmetic
                    self.depth.append(0)
                elif c == "(" and nxt == "(" and (self.prev.isspace() or self.prev in ";&|("):
                    self.stack.append(ARITH)  # the (( )) command
                    self.depth.append(0)
                    i += 1
                else:
                    i += self._expansion(c, nxt, text[i + 2 : i + 3])
            # The shell word read so far in plain context (for `name[`, only at the start of a word).
            boundary = c.isspace() or c in ";&|()<>"
            plain = self.stack[-1] in (NONE, SUB, BT, BRACE)
            if boundary or not plain:
                if self.word and plain:  # a word ended: after a keyword or an assignment, a command may follow
                    self.at_command = self.word_at_command and (self.word in _KEYWORDS or "=" in self.word)
                if c in ";&|(\n" and plain:
                    self.at_command = True
                self.word = ""
            else:
                if not self.word:
                    self.word_at_command = self.at_command
                self.word += c
            if self.escape and c == "\\":
                self.before_backslash = self.prev
            self.prev = after
            i += 1

    def _expansion(self, c: str, nxt: str, nxt2: str) -> int:
        """`$(`, `$((`, `${` and backquotes open a context of their own; returns characters consumed beyond c."""
        if c == "$" and nxt == "(" and nxt2 == "(":
            self.stack.append(ARITH)
            self.depth.append(0)
            return 2
        if c == "$" and nxt == "[":  # the old $[ ] arithmetic
            self.stack.append(ARITHB)
            self.depth.append(0)
            return 1
        if c == "$" and nxt == "(":
            self.stack.append(SUB)
            self.depth.append(0)
            return 1
        if c == "$" and nxt == "{" and self.stack[-1] in (ARITH, ARITHB):
            # bash finds the end of $(( )), $[ ] and name[ ] by counting brackets, blind to ${...}: in
            # `$[${x:- ]]` the first ] ends the arithmetic. What follows is arithmetic until the
            # bracket that ends it (a value there must be a number), never a ${ } of its own.
            return 0
        if c == "$" and nxt == "{":
            self.stack.append(BRACE if self.stack[-1] in (NONE, SUB, BT, BRACE) else DQBRACE)
            return 1
        if c == "`":
            self.stack.append(BT)
        return 0

    def _heredoc_start(self, text: str, i: int) -> int:
        import re

        m = re.compile(r"<<(-?)[ \t]*(?:'([^'\n]*)'|\"([^\"\n]*)\"|\\?([^\s;&|<>()'\"]+))").match(text, i)
        if not m:
            return 1
        delim = next(g for g in (m.group(2), m.group(3), m.group(4)) if g is not None)
        self.pending.append((delim, bool(m.group(1)), m.group(4) is None or m.group(0)[2:].lstrip("- \t").startswith("\\")))
        return m.end() - i - 1

    def _newline(self) -> None:
        if self.pending:
            delim, strip, literal = self.pending.pop(0)
            self.heredoc = (delim, strip)
            self.stack.append(HEREDOC_LITERAL if literal else HEREDOC)


class QuotingError(ValueError):
    """A value that no escaping can keep inert where the template writes it."""


AFTER_BACKSLASH = "after_backslash"
AFTER_BACKSLASH_MESSAGE = "a backslash right before {{ }} would escape the first character of the value's quoting; remove the backslash"


def _escape_for(context: str, value: Any) -> ShellSafe:  # noqa: C901 - one branch per shell context; under the threshold when split (issue 11)
    """A value written where the template put it (see ShellLexer)."""
    if context == AFTER_BACKSLASH:
        raise QuotingError(AFTER_BACKSLASH_MESSAGE)
    if isinstance(value, ShellSafe):  # raw, or q: what the template asked for
        return value
    if context in (ARITH, ARITHB):
        import re

        text = _text(value)
        if not re.fullmatch(r"[+-]?[0-9]+(\.[0-9]+)?", text):
            raise QuotingError(f"a value inside $(( )) or (( )) must be a number, not {text[:40]!r}: bash evaluates anything else as code")
        return ShellSafe(text)
    if context in (NONE, SUB, BRACE, BT):
        return shell_quote(value)
    text = _text(value)
    if context == SQ:
        return ShellSafe(text.replace("'", "'\\''"))
    if context == ANSI:
        return ShellSafe(text.replace("\\", "\\\\").replace("'", "\\'"))
    if context == HEREDOC_LITERAL:
        return ShellSafe(text)
    if context == DQBRACE and "'" in text:  # bash pairs single quotes even there; no escape keeps one
        raise QuotingError('a value with a single quote cannot be written inside "${...}"; use $PARAM_NAME there instead')
    if context in (DQ, DQBRACE, HEREDOC):
        extra = {DQ: ('"',), DQBRACE: ('"', "}"), HEREDOC: ()}[context]
        for ch in ("\\", "$", "`", *extra):
            text = text.replace(ch, "\\" + ch)
        return ShellSafe(text)
    if context == COMMENT:  # a newline would end the comment and make the rest a command
        return ShellSafe(text.replace("\r", " ").replace("\n", " "))
    return shell_quote(value)  # pragma: no cover


def _in_context(value: Any, context: str, delim: str = "", strip: bool = False, backquotes: int = 0, before: str = "", after: str | None = None) -> ShellSafe:
    if context == DELIMITER_LINE:
        raise QuotingError(DELIMITER_LINE_MESSAGE)
    out = _escape_for(context, value)
    if isinstance(value, ShellSafe):
        return out
    if delim:
        _check_heredoc_lines(out, delim, strip, before, after)
    # Inside `...` (at any depth), bash takes backslash, backquote and $ once more before parsing
    # what is inside: escaped once per enclosing pair, they reach the inner parse as written.
    for _ in range(backquotes):
        out = ShellSafe(out.replace("\\", "\\\\").replace("`", "\\`").replace("$", "\\$"))
    return out


DELIMITER_LINE = "delimiter_line"
DELIMITER_LINE_MESSAGE = "a {{ }} stands on a line whose text is the here-document's delimiter; move it to another line"


def _check_heredoc_lines(out: str, delim: str, strip: bool, before: str, after: str | None) -> None:
    """bash ends a here-document at its delimiter line before it parses anything in it, so no escaping
    helps a value that makes such a line. A line is the delimiter only if every piece of it is a
    piece of the delimiter: a value's line that is one (or, empty, leaves the template's text around
    it to be the delimiter) is refused. `before`/`after`: the template's text around the value on its
    line (after: None when another value follows)."""
    pieces = out.split("\n")
    for k, piece in enumerate(pieces):
        text = piece.lstrip("\t") if strip and k else piece
        if text and text in delim:
            raise QuotingError(f"a value holds {text!r}, part of the line {delim!r} that would end the here-document it is written in")
    if len(pieces) > 1:
        first = (before + pieces[0]).lstrip("\t") if strip else before + pieces[0]
        last = pieces[-1] + (after or "")
        if first == delim or (after is not None and (last.lstrip("\t") if strip else last) == delim):
            raise QuotingError(f"a value's line break leaves the line {delim!r}, which would end the here-document it is written in")


def _contextualize(ast: Any) -> Any:
    """Wrap each {{ }} that is not a bare shell word in the `_in_context` filter for where it stands."""
    from jinja2 import nodes

    lexer = ShellLexer()

    def visit(node: Any) -> None:
        if isinstance(node, nodes.Output):
            out = []
            for k, n in enumerate(node.nodes):
                if isinstance(n, nodes.TemplateData):
                    lexer.feed(n.data)
                else:
                    if lexer.escape:  # `\{{ x }}`: the backslash would take the value's first character
                        args = [nodes.Const(AFTER_BACKSLASH)]
                        n = nodes.Filter(n, "_in_context", args, [], None, None, lineno=n.lineno)
                        lexer.escape = False
                    elif lexer.context != NONE:
                        delim, strip = lexer.heredoc or ("", False)
                        nxt = node.nodes[k + 1] if k + 1 < len(node.nodes) else None
                        after = nxt.data.split("\n")[0] if isinstance(nxt, nodes.TemplateData) else None
                        values = (lexer.value_context, delim, strip, lexer.stack.count(BT), lexer.line, after)
                        n = nodes.Filter(n, "_in_context", [nodes.Const(c) for c in values], [], None, None, lineno=n.lineno)
                        if lexer.heredoc is not None:
                            lexer.line_values.append(n)
                    lexer.prev = "_"  # the value is part of a word: a `#` right after it starts no comment
                out.append(n)
            node.nodes = out
            return
        for child in node.iter_child_nodes():
            visit(child)

    visit(ast)
    for n in lexer.on_delimiter_line:
        n.args = [nodes.Const(DELIMITER_LINE)]
    return ast
