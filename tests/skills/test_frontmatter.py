"""The SKILL.md front matter reader: YAML through PyYAML's safe loader, hostile input refused."""

import random
import re
import time

import pytest

from app.skills.frontmatter import MAX_BYTES, MAX_DEPTH, FrontMatterError, parse
from app.skills.prompt import SkillText, render


def test_plain_values_and_body() -> None:
    front = parse("---\nname: pdf\ndescription: Fill forms  # a comment\n---\n# Body\ntext\n")
    assert front.name == "pdf" and front.description == "Fill forms"
    assert front.body == "# Body\ntext\n"


def test_crlf_bom_quotes_and_other_keys() -> None:
    content = (
        "\ufeff---\r\nname: \"pdf\"\r\ndescription: 'it''s \"quoted\"'\r\n"
        "license: MIT\r\nallowed-tools:\r\n- Bash\r\n- Read\r\n---\r\nBody\r\n"
    )
    front = parse(content)
    assert front.name == "pdf"
    assert front.description == 'it\'s "quoted"'
    assert front.fields["license"] == "MIT"
    assert front.fields["allowed-tools"] == ["Bash", "Read"]
    assert front.body == "Body\r\n"


def test_double_quoted_escapes() -> None:
    front = parse('---\nname: x\ndescription: "tab\\there \\"q\\" \\\\ caf\\u00e9"\n---\n')
    assert front.description == 'tab\there "q" \\ café'


def test_folded_literal_and_continued_values() -> None:
    front = parse(
        "---\nname: x\ndescription: >\n  one\n  two\n\nlicense: |\n  line 1\n\n  line 2\n"
        "notes: first\n  second\nquoted: 'across\n  lines'\n---\n"
    )
    assert front.description == "one two\n"
    assert front.fields["license"] == "line 1\n\nline 2\n"
    assert front.fields["notes"] == "first second"
    assert front.fields["quoted"] == "across lines"


def test_yaml_collections_and_scalars() -> None:
    front = parse(
        "---\nname: x\nallowed-tools: [Bash, 'Read(*.md)']\n"
        "metadata:\n  version: 1.5\n  internal: true\n  created: 2024-01-31\n"
        "  owners:\n    - {team: docs, size: 3}\n  none: ~\nlabel: !!str 123\n---\n"
    )
    assert front.fields["allowed-tools"] == ["Bash", "Read(*.md)"]
    assert front.fields["metadata"] == {
        "version": 1.5,
        "internal": True,
        "created": "2024-01-31",  # dates stay text
        "owners": [{"team": "docs", "size": 3}],
        "none": None,
    }
    assert front.fields["label"] == "123"


@pytest.mark.parametrize("text", ["off", "yes", "no", "true", "123", "0x1f", "1.0", "1_000"])
def test_name_and_description_are_read_as_written(text: str) -> None:
    front = parse(f"---\nname: {text}\ndescription: {text}\nother: {text}\n---\n")
    assert (front.name, front.description) == (text, text)
    assert not isinstance(front.fields["other"], str)  # elsewhere YAML's own types


def test_empty_front_matter_and_values_count_as_missing() -> None:
    front = parse("---\nname:\ndescription: ''\n---\n")
    assert front.name is None and front.description is None
    front = parse("---\nname: ~\ndescription: null\n---\n")
    assert front.name is None and front.description is None
    for content in ("---\n---\nbody", "---\n# only a comment\n\n...\nbody"):
        front = parse(content)
        assert (front.fields, front.name, front.body) == ({}, None, "body")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("", "must start"),
        ("name: x\n---\n", "must start"),
        ("  ---\nname: x\n---\n", "must start"),
        ("---\nname: x\n", "not closed"),
        ("---\nname x\n---\n", "line 2: expected `key: value` lines, found a plain value"),
        ("---\n- name: x\n---\n", "line 2: expected `key: value` lines, found a list"),
        ("---\nname: x\n--- y\n---\n", "line 3: expected `key: value` lines"),
        ("---\nname: x\nname: y\n---\n", "line 3: `name` appears twice"),
        ("---\nname: 'x\n---\n", "line 2: not valid YAML: an unterminated quoted value"),
        ("---\nname: x\ndescription: Use: this\n---\n", "line 3: not valid YAML: mapping values"),
        ("---\nname: x\ndescription: a: b\n---\n", "quote a value that holds `: `"),
        ("---\nname: x\n\tdescription: y\n---\n", "line 3: not valid YAML"),
        ("---\nname: \x07\n---\n", "not valid YAML: control characters"),
        ("---\nname: x\ndescription: [a, b]\n---\n", "`description` must be a string, not a list"),
        ("---\nname: x\ndescription: {a: b}\n---\n", "must be a string, not a mapping"),
    ],
)
def test_malformed_front_matter(content: str, fragment: str) -> None:
    with pytest.raises(FrontMatterError, match=re.escape(fragment)):
        parse(content)


def _laughs(levels: int) -> str:
    """A "billion laughs" document: 9**levels strings once its aliases are expanded."""
    lines = ["lol0: &lol0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels + 1):
        lines.append(f"lol{i}: &lol{i} [{', '.join([f'*lol{i - 1}'] * 9)}]")
    return "---\nname: x\n" + "\n".join(lines) + "\n---\n"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (_laughs(9), "line 4: aliases (`*lol0`) are not accepted"),
        ("---\nname: &n x\ndescription: *n\n---\n", "line 3: aliases"),
        ("---\nbase: &b {a: 1}\nother:\n  <<: *b\n---\n", "line 4: aliases"),
        ("---\n<<: {name: x}\n---\n", "line 2: a key must be a string, not a merge key"),
        ("---\nyes: 1\n---\n", "line 2: a key must be a string, not a boolean"),
        ("---\nname: x\nmeta:\n  1: a\n---\n", "line 4: a key must be a string, not a number"),
        ("---\n~: x\n---\n", "a key must be a string, not null"),
        ("---\n? [a, b]\n: x\n---\n", "a key must be a string, not a list"),
        ("---\n? {a: b}\n: x\n---\n", "a key must be a string, not a mapping"),
        ("---\nname: x\nblob: !!binary aGk=\n---\n", "line 3: the tag `!!binary`"),
        ("---\nset: !!set {a, b}\n---\n", "the tag `!!set` is not accepted"),
        ("---\nx: !!python/object/apply:os.system [ls]\n---\n", "`!!python/object/apply:os"),
        ("---\nx: !custom 1\n---\n", "the tag `!custom` is not accepted"),
        ("---\nx: " + "[" * 40 + "]" * 40 + "\n---\n", f"nested more than {MAX_DEPTH} deep"),
        ("---\nx:\n" + "  - " * 40 + "y\n---\n", f"nested more than {MAX_DEPTH} deep"),
        ("---\nx: " + "[" * 5000 + "\n---\n", "nest"),
        ("---\nx: " + "9" * 5000 + "\n---\n", "not valid YAML: Exceeds the limit"),
        ("---\nx: '" + "a" * MAX_BYTES + "'\n---\n", f"the limit is {MAX_BYTES}"),
    ],
)
def test_hostile_front_matter_is_refused(content: str, fragment: str) -> None:
    started = time.monotonic()
    with pytest.raises(FrontMatterError, match=re.escape(fragment)):
        parse(content)
    assert time.monotonic() - started < 2


def test_nesting_up_to_the_limit_is_read() -> None:
    front = parse("---\nx: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n---\n")
    assert front.fields["x"] is not None


def test_mangled_front_matter_raises_only_front_matter_errors() -> None:
    """Random edits of a valid document either parse or raise FrontMatterError (a 422),
    nothing else. Checked once against a broken variant (only MarkedYAMLError caught): a
    control character's ReaderError escaped and this test failed."""
    valid = (
        "---\nname: pdf-forms\ndescription: 'Fill \"in\" forms'\nallowed-tools: [Bash, Read]\n"
        "metadata:\n  a: {b: [1, 2.5, true, null]}\nlicense: |\n  MIT\n---\nbody\n"
    )
    pieces = [*"-:[]{}&*!|>'\"#?,%@`\n \t\\", "\x00", "\x85", "\u2028", "<<", "&a ", "*a", "!!"]
    rng = random.Random(14)
    outcomes = {"parsed": 0, "refused": 0}
    for _ in range(3000):
        chars = list(valid)
        for _ in range(rng.randint(1, 5)):
            at = rng.randrange(len(chars))
            if rng.random() < 0.6:
                chars.insert(at, rng.choice(pieces))
            else:
                del chars[at]
        try:
            parse("".join(chars))
            outcomes["parsed"] += 1
        except FrontMatterError:
            outcomes["refused"] += 1
    assert min(outcomes.values()) > 100, outcomes


def test_render_puts_each_skill_after_the_base_prompt_without_front_matter() -> None:
    skills = [
        SkillText("alpha", 3, "First", "---\nname: alpha\ndescription: First\n---\n\nDo A.\n"),
        SkillText("beta", 1, "Second", "---\nname: beta\ndescription: x\n---\nDo B."),
    ]
    text = render("Be brief.", skills)
    assert text.startswith("Be brief.\n\n# Skills")
    assert '<skill name="alpha" version="3">\n<description>First</description>\n\nDo A.\n' in text
    assert text.index('name="alpha"') < text.index('name="beta"')
    assert "name: alpha" not in text and text.endswith("Do B.\n</skill>")
    assert render("Be brief.", []) == "Be brief."
