"""A small POSIX-shell interpreter for the loopback test phone.

It parses command lines the way Android's shell does where it matters for safety: single and
double quotes, backslashes, ``$(...)`` and backticks (executed), ``$VAR`` and ``$?``, ``;``,
``&&``, ``||``, ``|``, redirections (``>``, ``>>``, ``2>``, ``2>&1``, ``<``) and comments. So an
argument that reaches it unquoted *does* run an injected command, and the security tests can
tell a quoted argument from an unquoted one. Commands are resolved by the phone (builtins such
as getprop/cat/taskset, or an executable file in the sandbox).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field


class ShellSyntaxError(Exception):
    pass


@dataclass
class Word:
    parts: list[tuple[str, str]] = field(default_factory=list)  # (kind, text): lit|sub|var

    @property
    def empty(self) -> bool:
        return not self.parts


OPS = ("2>&1", "&&", "||", ">>", "2>", ";", "|", ">", "<", "&")


def _find_close(s: str, i: int, open_ch: str = "(", close_ch: str = ")") -> int:
    """Index of the bracket closing the one before s[i] (quotes respected)."""
    depth, q = 1, None
    while i < len(s):
        c = s[i]
        if q:
            if c == q:
                q = None
            elif c == "\\" and q == '"':
                i += 1
        elif c in "'\"":
            q = c
        elif c == "\\":
            i += 1
        elif c == open_ch:
            depth += 1
        elif c == close_ch:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ShellSyntaxError(f"unterminated {open_ch}")


def _var(s: str, i: int) -> tuple[str, int]:
    """Parse a variable reference after '$' at s[i]; returns (name, new index)."""
    if i < len(s) and s[i] in "?$#0123456789":
        return s[i], i + 1
    if i < len(s) and s[i] == "{":
        j = s.index("}", i)
        return s[i + 1:j], j + 1
    j = i
    while j < len(s) and (s[j].isalnum() or s[j] == "_"):
        j += 1
    return s[i:j], j


def tokenize(s: str) -> list:
    """Words (Word) and operators (str)."""
    tokens: list = []
    w = Word()
    i = 0

    def lit(text: str) -> None:
        w.parts.append(("lit", text))

    def end_word() -> None:
        nonlocal w
        if not w.empty:
            tokens.append(w)
        w = Word()

    while i < len(s):
        c = s[i]
        if c in " \t\n":
            end_word()
            i += 1
        elif c == "#" and w.empty:
            break
        elif c == "'":
            j = s.find("'", i + 1)
            if j < 0:
                raise ShellSyntaxError("unterminated '")
            lit(s[i + 1:j])  # '' still makes an (empty) word
            i = j + 1
        elif c == '"':
            i += 1
            buf = ""
            w.parts.append(("lit", ""))  # "" is an (empty) word
            while True:
                if i >= len(s):
                    raise ShellSyntaxError('unterminated "')
                c = s[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\" and i + 1 < len(s) and s[i + 1] in '$`"\\\n':
                    buf += s[i + 1]
                    i += 2
                elif c == "$" and s[i + 1:i + 2] == "(":
                    j = _find_close(s, i + 2)
                    lit(buf)
                    buf = ""
                    w.parts.append(("qsub", s[i + 2:j]))
                    i = j + 1
                elif c == "`":
                    j = s.index("`", i + 1)
                    lit(buf)
                    buf = ""
                    w.parts.append(("qsub", s[i + 1:j]))
                    i = j + 1
                elif c == "$" and i + 1 < len(s) and (s[i + 1].isalnum() or s[i + 1] in "_?{$#"):
                    name, i = _var(s, i + 1)
                    lit(buf)
                    buf = ""
                    w.parts.append(("var", name))
                else:
                    buf += c
                    i += 1
            lit(buf)
        elif c == "\\":
            if i + 1 < len(s):
                lit(s[i + 1])
            i += 2
        elif c == "$" and s[i + 1:i + 2] == "(":
            j = _find_close(s, i + 2)
            w.parts.append(("sub", s[i + 2:j]))
            i = j + 1
        elif c == "`":
            j = s.find("`", i + 1)
            if j < 0:
                raise ShellSyntaxError("unterminated `")
            w.parts.append(("sub", s[i + 1:j]))
            i = j + 1
        elif c == "$" and i + 1 < len(s) and (s[i + 1].isalnum() or s[i + 1] in "_?{$#"):
            name, i = _var(s, i + 1)
            w.parts.append(("var", name))
        else:
            for op in OPS:
                if s.startswith(op, i) and (op != "2>" and op != "2>&1" or w.empty):
                    end_word()
                    tokens.append(op)
                    i += len(op)
                    break
            else:
                lit(c)
                i += 1
    end_word()
    return tokens


# A program: (argv, stdin bytes, stdout writer, stderr writer) -> exit status
Program = Callable[[list[str], bytes, Callable[[bytes], None], Callable[[bytes], None]], int]


class MiniShell:
    def __init__(self, resolve: Callable[[str], Program | None],
                 open_file: Callable[[str, str], io.IOBase], env: dict[str, str] | None = None):
        self.resolve = resolve  # name -> program (or None: not found)
        self.open_file = open_file  # (device path, mode) -> file object
        self.env = dict(env or {})
        self.status = 0

    # -- expansion -------------------------------------------------------------------------
    def _expand(self, word: Word) -> list[str]:
        fields, cur, split_any = [], "", False
        for kind, text in word.parts:
            if kind == "lit":
                cur += text
            elif kind == "var":
                cur += str(self.status) if text == "?" else self.env.get(text, "")
            else:
                out = io.BytesIO()
                self.run(text, b"", out.write, lambda b: None)
                value = out.getvalue().decode("utf-8", "replace").rstrip("\n")
                if kind == "qsub":
                    cur += value
                else:  # unquoted: field splitting
                    pieces = value.split()
                    if pieces:
                        cur += pieces[0]
                        for p in pieces[1:]:
                            fields.append(cur)
                            cur = p
                    split_any = True
        if cur or not split_any:
            fields.append(cur)
        return fields

    # -- execution -------------------------------------------------------------------------
    def run(self, line: str, stdin: bytes, out: Callable[[bytes], None],
            err: Callable[[bytes], None]) -> int:
        try:
            tokens = tokenize(line)
        except ShellSyntaxError as e:
            err(f"sh: syntax error: {e}\n".encode())
            self.status = 2
            return 2
        # split into and-or lists separated by ; or &
        seq: list[list] = [[]]
        for t in tokens:
            if t in (";", "&"):
                seq.append([])
            else:
                seq[-1].append(t)
        for part in seq:
            if part:
                self._and_or(part, stdin, out, err)
        return self.status

    def _and_or(self, tokens: list, stdin: bytes, out, err) -> None:
        chunks: list[tuple[str | None, list]] = [(None, [])]
        for t in tokens:
            if t in ("&&", "||"):
                chunks.append((t, []))
            else:
                chunks[-1][1].append(t)
        for op, toks in chunks:
            if op == "&&" and self.status != 0 or op == "||" and self.status == 0:
                continue
            self._pipeline(toks, stdin, out, err)

    def _pipeline(self, tokens: list, stdin: bytes, out, err) -> None:
        stages: list[list] = [[]]
        for t in tokens:
            if t == "|":
                stages.append([])
            else:
                stages[-1].append(t)
        data = stdin
        for k, st in enumerate(stages):
            last = k == len(stages) - 1
            buf = io.BytesIO()
            self._simple(st, data, out if last else buf.write, err)
            data = buf.getvalue()

    def _simple(self, tokens: list, stdin: bytes, out, err) -> None:
        argv: list[str] = []
        stdout, stderr = out, err
        files = []
        i = 0
        try:
            while i < len(tokens):
                t = tokens[i]
                if t in (">", ">>", "2>", "<"):
                    if i + 1 >= len(tokens) or not isinstance(tokens[i + 1], Word):
                        raise ShellSyntaxError(f"missing file after {t}")
                    target = self._expand(tokens[i + 1])[0]
                    if t == "<":
                        with self.open_file(target, "rb") as f:
                            stdin = f.read()
                    else:
                        f = self.open_file(target, "ab" if t == ">>" else "wb")
                        files.append(f)
                        if t == "2>":
                            stderr = f.write
                        else:
                            stdout = f.write
                    i += 2
                    continue
                if t == "2>&1":
                    stderr = stdout
                    i += 1
                    continue
                argv.extend(self._expand(t))
                i += 1
        except (ShellSyntaxError, OSError) as e:
            err(f"sh: {e}\n".encode())
            self.status = 1
            return
        try:
            if not argv:
                self.status = 0
                return
            if argv[0] == "sh" and len(argv) >= 3 and argv[1] == "-c":
                self.status = MiniShell(self.resolve, self.open_file, self.env).run(
                    argv[2], stdin, stdout, stderr)
                return
            prog = self.resolve(argv[0])
            if prog is None:
                stderr(f"/system/bin/sh: {argv[0]}: inaccessible or not found\n".encode())
                self.status = 127
                return
            self.status = prog(argv, stdin, stdout, stderr)
        finally:
            for f in files:
                f.close()
