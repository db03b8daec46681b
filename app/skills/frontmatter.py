"""SKILL.md front matter: a YAML mapping between two `---` lines, then the markdown body.

    ---
    name: pdf-forms
    description: Fill in and merge PDF forms
    ---
    # The instructions, in markdown

The YAML is read by PyYAML's safe loader (libyaml when present). The content comes from
clients, so a first pass over the parser's events refuses what a skill never needs and a
hostile document could use before anything is built: aliases (a "billion laughs" document
grows exponentially when expanded), nesting deeper than MAX_DEPTH (the composer recurses) and
tags other than the JSON types'. The front matter is at most MAX_BYTES, so reading it takes
milliseconds. Keys are strings and appear once; dates stay text. `name` and `description`
are text (a plain `off` or `1.0` there is read as written, not as a boolean or a number) or
absent (empty, `null`); other keys (`license`, an `allowed-tools` list, `metadata`, ...) may
hold any of those values and are kept only in the content.
"""

from dataclasses import dataclass
from typing import Any

import yaml  # type: ignore[import-untyped]

MAX_BYTES = 16 * 1024
MAX_DEPTH = 16
_YAML = "tag:yaml.org,2002:"
_TAGS = frozenset(
    {"!", *(_YAML + t for t in ("str", "int", "float", "bool", "null", "seq", "map"))}
)
_KINDS = {"bool": "a boolean", "int": "a number", "float": "a number", "null": "null"}
_KINDS |= {"merge": "a merge key `<<`", "seq": "a list", "map": "a mapping"}
_TYPES = {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "a mapping"}
_TEXT_KEYS = ("name", "description")
_AS_TEXT = frozenset(_YAML + t for t in ("bool", "int", "float"))
_FIRST_LINE = 2  # the front matter's first line is the content's second


class FrontMatterError(ValueError):
    """The content does not start with well-formed front matter."""


@dataclass(frozen=True)
class FrontMatter:
    fields: dict[str, Any]
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
    header = "\n".join(line.rstrip("\r\n") for line in lines[1:end])
    size = len(header.encode("utf-8", errors="surrogatepass"))
    if size > MAX_BYTES:
        raise FrontMatterError(f"the front matter is {size} bytes; the limit is {MAX_BYTES}")
    fields = _load(header)
    for key in _TEXT_KEYS:
        value = fields.get(key)
        if value is not None and not isinstance(value, str):
            kind = _TYPES.get(type(value), type(value).__name__)
            raise FrontMatterError(f"front matter `{key}` must be a string, not {kind}")
    return FrontMatter(fields=fields, body="".join(lines[end + 1 :]))


def _where(mark: Any) -> str:
    return "front matter" if mark is None else f"front matter line {mark.line + _FIRST_LINE}"


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader, with each mapping's keys checked and timestamps kept as text."""

    def construct_document(self, node: Any) -> Any:
        # `name` and `description` are text: `name: off` is the skill "off", not false.
        for key, value in node.value if isinstance(node, yaml.MappingNode) else ():
            if key.value in _TEXT_KEYS and value.tag in _AS_TEXT:
                value.tag = _YAML + "str"
        return super().construct_document(node)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[str] = set()
        for key, _ in node.value:
            if key.tag != _YAML + "str" or not isinstance(key, yaml.ScalarNode):
                kind = _KINDS.get(key.tag.removeprefix(_YAML), "a tagged value")
                raise FrontMatterError(
                    f"{_where(key.start_mark)}: a key must be a string, not {kind} (quote it)"
                )
            if key.value in seen:
                raise FrontMatterError(f"{_where(key.start_mark)}: `{key.value}` appears twice")
            seen.add(key.value)
        return super().construct_mapping(node, deep)


_Loader.add_constructor(_YAML + "timestamp", yaml.SafeLoader.construct_yaml_str)


def _load(header: str) -> dict[str, Any]:
    try:
        _check_events(header)
        data = yaml.load(header, Loader=_Loader)  # a safe loader
    except FrontMatterError:
        raise
    except yaml.MarkedYAMLError as exc:
        problem = ": ".join(p for p in (exc.context, exc.problem) if p) or "malformed"
        where = _where(exc.problem_mark or exc.context_mark)
        if exc.context == "while scanning a quoted scalar" and "unexpected" in problem:
            problem, where = "an unterminated quoted value", _where(exc.context_mark)
        hint = " (quote a value that holds `: `)" if "mapping values" in problem else ""
        raise FrontMatterError(f"{where}: not valid YAML: {problem}{hint}") from exc
    except yaml.reader.ReaderError as exc:
        raise FrontMatterError(f"front matter: not valid YAML: {exc.reason}") from exc
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: an int of over 4300 digits
        problem = str(exc).split(":", 1)[0]
        raise FrontMatterError(f"front matter: not valid YAML: {problem}") from exc
    return {} if data is None else dict(data)


def _check_events(header: str) -> None:
    """Refuse aliases, deep nesting, other tags and a document that is not a mapping."""
    depth = 0
    for event in yaml.parse(header, Loader=_Loader):
        where = _where(event.start_mark)
        if isinstance(event, yaml.AliasEvent):
            raise FrontMatterError(f"{where}: aliases (`*{event.anchor}`) are not accepted")
        tag = getattr(event, "tag", None)
        if tag is not None and tag not in _TAGS:
            shown = tag.replace(_YAML, "!!", 1)
            raise FrontMatterError(f"{where}: the tag `{shown}` is not accepted")
        if depth == 0 and isinstance(event, yaml.ScalarEvent | yaml.SequenceStartEvent):
            found = "a plain value" if isinstance(event, yaml.ScalarEvent) else "a list"
            raise FrontMatterError(f"{where}: expected `key: value` lines, found {found}")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise FrontMatterError(f"{where}: nested more than {MAX_DEPTH} deep")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
