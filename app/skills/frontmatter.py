"""SKILL.md front matter, read without a YAML library.

    ---
    name: pdf-forms
    description: Fill in and merge PDF forms
    ---
    # The instructions, in markdown

The subset read: `key: value` lines whose value is plain, 'single-' or "double-quoted"; a
plain value continued on indented lines (folded with spaces); `key: |` and `key: >` block
scalars; `# comments` and blank lines. Keys other than `name` and `description` (`license`,
an `allowed-tools` list, ...) are kept as raw text and not interpreted.
"""

import re
from dataclasses import dataclass

_KEY_LINE = re.compile(r"([A-Za-z0-9_.-]+)[ \t]*:(?:[ \t]+(.*))?")
_BLOCK = frozenset({"|", ">", "|-", ">-", "|+", ">+"})
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "/": "/", "r": "\r"}


class FrontMatterError(ValueError):
    """The content does not start with well-formed front matter."""


@dataclass(frozen=True)
class FrontMatter:
    fields: dict[str, str]
    body: str

    @property
    def name(self) -> str | None:
        return self.fields.get("name") or None

    @property
    def description(self) -> str | None:
        return self.fields.get("description") or None


def parse(content: str) -> FrontMatter:
    """Split SKILL.md content into its front matter fields and its markdown body."""
    lines = content.removeprefix("\ufeff").splitlines(keepends=True)
    if not lines or lines[0].rstrip() != "---":
        raise FrontMatterError("content must start with front matter: a line `---`")
    for end in range(1, len(lines)):
        if lines[end].rstrip() in ("---", "..."):
            break
    else:
        raise FrontMatterError("front matter is not closed: no second `---` line")
    header = [line.rstrip("\r\n") for line in lines[1:end]]
    return FrontMatter(fields=_fields(header), body="".join(lines[end + 1 :]))


def _fields(header: list[str]) -> dict[str, str]:
    raw: dict[str, tuple[str, list[str]]] = {}  # key -> (inline value, continuation lines)
    key: str | None = None
    for number, line in enumerate(header, start=2):
        stripped = line.strip()
        continues = key is not None and (line[:1] in (" ", "\t") or line.startswith("- "))
        if continues and key is not None:
            raw[key][1].append(line)
            continue
        if not stripped or stripped.startswith("#"):
            if key is not None:
                raw[key][1].append("")  # a blank line inside a block scalar is kept
            continue
        match = _KEY_LINE.fullmatch(line)
        if match is None:
            raise FrontMatterError(f"front matter line {number}: expected `key: value`")
        key = match.group(1)
        if key in raw:
            raise FrontMatterError(f"front matter line {number}: `{key}` appears twice")
        raw[key] = ((match.group(2) or "").strip(), [])
    return {k: _value(k, inline, more) for k, (inline, more) in raw.items()}


def _value(key: str, inline: str, more: list[str]) -> str:
    if inline in _BLOCK:
        return _block(inline, more)
    rest = [line.strip() for line in more if line.strip()]
    if inline[:1] in ('"', "'"):
        return _quoted(key, " ".join([inline, *rest]))
    text = " ".join([inline, *rest]) if inline else " ".join(rest)
    comment = text.find(" #")
    return (text[:comment] if comment >= 0 else text).strip()


def _block(indicator: str, lines: list[str]) -> str:
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    indents = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
    cut = min(indents, default=0)
    texts = [line[cut:] for line in lines]
    if indicator.startswith("|"):
        return "\n".join(texts).strip()
    return " ".join(t.strip() for t in texts if t.strip())


def _quoted(key: str, text: str) -> str:
    quote = text[0]
    if len(text) < 2 or text[-1] != quote:
        raise FrontMatterError(f"front matter `{key}`: unterminated {quote}quoted{quote} value")
    inner = text[1:-1]
    if quote == "'":
        return inner.replace("''", "'")
    out: list[str] = []
    chars = iter(inner)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        escaped = next(chars, "")
        out.append(_ESCAPES.get(escaped, "\\" + escaped))
    return "".join(out)
