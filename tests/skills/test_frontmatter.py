"""The SKILL.md front matter reader (a YAML subset, no YAML library)."""

import pytest

from app.skills.frontmatter import FrontMatterError, parse
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
    assert front.fields["allowed-tools"] == "- Bash - Read"
    assert front.body == "Body\r\n"


def test_double_quoted_escapes() -> None:
    front = parse('---\nname: x\ndescription: "tab\\there \\"q\\" \\\\ \\x"\n---\n')
    assert front.description == 'tab\there "q" \\ \\x'


def test_folded_literal_and_continued_values() -> None:
    front = parse(
        "---\nname: x\ndescription: >\n  one\n  two\n\nlicense: |\n  line 1\n\n  line 2\n"
        "notes: first\n  second\n---\n"
    )
    assert front.description == "one two"
    assert front.fields["license"] == "line 1\n\nline 2"
    assert front.fields["notes"] == "first second"


def test_empty_values_count_as_missing() -> None:
    front = parse("---\nname:\ndescription: ''\n---\n")
    assert front.name is None and front.description is None


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("", "must start"),
        ("name: x\n---\n", "must start"),
        ("  ---\nname: x\n---\n", "must start"),
        ("---\nname: x\n", "not closed"),
        ("---\nname x\n---\n", "line 2"),
        ("---\nname: x\nname: y\n---\n", "twice"),
        ("---\nname: 'x\n---\n", "unterminated"),
    ],
)
def test_malformed_front_matter(content: str, fragment: str) -> None:
    with pytest.raises(FrontMatterError, match=fragment):
        parse(content)


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
