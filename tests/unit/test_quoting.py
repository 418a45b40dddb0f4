"""Shell quoting by default in bash_jinja2 templates (docs/reference.md): rendering, `raw`, `q`, the sandbox."""

from __future__ import annotations

import subprocess

import pytest

from plx.templates import RenderError, raw_uses, render


def r(cmd: str, param: dict | None = None, input: dict | None = None) -> str:  # noqa: A002
    return render(cmd, {"param": param or {}, "input": input or {}, "output": {}, "cloud_input": {}})


def test_values_are_quoted_text_is_not() -> None:
    assert r("echo {{ param.v }} > x; ls\n", {"v": "x; touch PWN"}) == "echo 'x; touch PWN' > x; ls\n"
    assert r("head -n {{ param.n }} {{ input.f }}", {"n": 5}, {"f": "/abs/path.txt"}) == "head -n 5 /abs/path.txt"
    assert r("cat {{ input.l }}", input={"l": ["/a b", "/c", "it's"]}) == "cat '/a b' /c 'it'\"'\"'s'"
    assert r("{{ param.t }} {{ param.f }}", {"t": True, "f": False}) == "true false"
    assert r("cat [{{ input.o }}]", input={"o": None}) == "cat []"
    assert r("{{ param.e }}", {"e": ""}) == "''"
    assert r("{{ param.d }}", {"d": {"b": 1, "a": "x y"}}) == '\'{"a": "x y", "b": 1}\''
    assert r("{{ param.x ~ '.txt' }}", {"x": "a b"}) == "'a b.txt'"  # an expression is quoted as a whole
    assert r("{% for f in input.l %}<{{ f }}>{% endfor %}", input={"l": ["a b", "c"]}) == "<'a b'><c>"


def test_raw_and_q() -> None:
    v = {"v": "x; touch PWN", "l": ["-a", "b c"]}
    assert r("{{ param.v | raw }}", v) == "x; touch PWN"
    assert r("{{ param.l | raw }}", v) == "-a b c"
    assert r("{{ param.v | q }}", v) == "'x; touch PWN'"
    assert r("{{ param.v | q | q }} {{ param.l | q }}", v) == "'x; touch PWN' -a 'b c'"  # never twice
    assert r("{{ param.v | raw | q }}", v) == "x; touch PWN"  # raw is final, as Markup is


def test_the_sandbox_stays() -> None:
    with pytest.raises(RenderError, match="sandbox") as e:
        r("a\n{{ param.v.__class__.__mro__ }}", {"v": "x"})
    assert e.value.line == 2
    with pytest.raises(RenderError, match="sandbox"):
        r("{{ param.l.append(1) }}", {"l": []})


def test_raw_uses_of_params_and_inputs_are_found() -> None:
    cmd = "a\n{{ param.x | raw }} {{ output.o | raw }}\n{{ (input['f'] ~ 'x') | raw }} {{ param.y | q }}\n"
    assert raw_uses(cmd) == [(2, "param.x"), (3, "input.f")]
    assert raw_uses("{{ 'literal' | raw }}") == []


@pytest.mark.parametrize(
    "value",
    ["x; touch PWN", "$(touch PWN)", "`touch PWN`", "a'b\"c", "n$(cd;touch PWN).txt", "*", "~", "-n", "a\nb", "\\", "{a,b}", "!!", "#c", ""],
)
def test_bash_reads_the_value_back_unchanged(value: str, tmp_path) -> None:
    script = r('printf "%s" {{ param.v }}', {"v": value})
    out = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert out == value
    assert list(tmp_path.iterdir()) == []


# Where the template writes a value decides how it is escaped: the same hostile values, in every
# place a template can put them, reach bash as exactly their text and run nothing.
HOSTILE = [
    "x; touch PWN",
    "$(touch PWN)",
    "`touch PWN`",
    "a'b\"c",
    "it's",
    "a\\b",
    "a\nb",
    "a\ntouch PWN #",
    "${HOME}",
    "$HOME",
    "*",
    "-n",
    "",
    "!x",
    "'$(touch PWN)'",
    "\\'",
    "}$(touch PWN)",
]
PLACES = {
    "bare word": ('printf "%s" {{ param.v }}', "{v}"),
    "single quotes": ("printf '%s' '{{ param.v }}'", "{v}"),
    "double quotes": ('printf "%s" "pre {{ param.v }} post"', "pre {v} post"),
    "$'...'": ("printf '%s' $'{{ param.v }}'", "{v}"),
    "$( ) in double quotes": ('printf "%s" "$(printf "%s" {{ param.v }})"', "{v_}"),
    "quoted in $( )": ('printf "%s" "$(printf "%s" "{{ param.v }}")"', "{v_}"),
    "backquotes": ('printf "%s" "`printf "%s" {{ param.v }}`"', "{v_}"),
    "bare ${:-}": ('x=; printf "%s" ${x:-{{ param.v }}}', "{v}"),
    "here-document": ("cat <<EOF | head -c -1\n{{ param.v }}\nEOF", "{v}"),
    "quoted here-document": ("cat <<-'EOF' | head -c -1\n{{ param.v }}\n\tEOF", "{v}"),
    "comment": ("# {{ param.v }}\nprintf ok", "ok"),
    "here-string": ('x=1; cat <<< "$x" >/dev/null; printf "%s" {{ param.v }}', "{v}"),
    "word then #": ('printf "%s" {{ param.v }}#"{{ param.v }}"', "{v}#{v}"),
}


@pytest.mark.parametrize("place", list(PLACES))
def test_every_place_a_value_can_stand(place: str, tmp_path) -> None:
    template, expected = PLACES[place]
    for value in HOSTILE:
        if place == "bare ${:-}" and value == "":
            continue  # ${x:-''} is empty either way
        script = r(template, {"v": value})
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", script], cwd=tmp_path, capture_output=True, text=True, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
        )
        want = expected.format(v=value, v_=value.rstrip("\n"))
        assert (done.returncode, done.stdout) == (0, want), (place, value, script, done.stderr)
        assert list(tmp_path.iterdir()) == [], (place, value, script)


def test_what_no_escaping_can_keep_inert_is_an_error_with_the_line() -> None:
    with pytest.raises(RenderError, match="would end the here-document") as e:
        r("cat <<EOF\n{{ param.v }}\nEOF\n", {"v": "ok\nEOF\ntouch PWN"})
    assert e.value.line == 2
    with pytest.raises(RenderError, match="single quote"):
        r('echo "${x:-{{ param.v }}}"', {"v": "it's"})


ARITHMETIC_EDGES = [
    "$[${x:- ]]{{ param.v }}",  # found by test_fuzz: a bare ${ there hides no bracket from bash
    "echo $(( ${x:- 1)) )){{ param.v }}",
    "a[${x:- 1]}]={{ param.v }}",
    "echo $[ ${x:-{{ param.v }}} ]",
    'echo $(( "${x#)}" + 1 )) {{ param.v }}',  # found in review: quotes (and a ${ in them) do hide one
    'echo $[ "${x#]}" + 1 ] {{ param.v }}',
    'echo "$(( "${x#)}" + 1 ))" {{ param.v }}',
    'a["${x#]}"]=2 {{ param.v }}',
    'echo $(( "1)" )) {{ param.v }}',
    "echo $(( '1)' )) {{ param.v }}",
    "echo $(( 1 \\) )) {{ param.v }}",
    'echo $(( "{{ param.v }}" + 1 ))',  # inside quotes inside the arithmetic: still a number only
]


@pytest.mark.parametrize("template", ARITHMETIC_EDGES)
@pytest.mark.parametrize("value", ["\ntouch PWN\n", "x; touch PWN", "a[$(touch PWN)]"])
def test_a_brace_inside_arithmetic_does_not_hide_where_it_ends(template: str, value: str, tmp_path) -> None:
    """bash ends $[ ], $(( )) and name[ ] at the first closing bracket outside quotes, even one inside
    a bare ${...} there: a value after it stands where a newline or `;` starts a command, and is
    quoted; a value still inside (quoted or not) must be a number."""
    try:
        script = r(template, {"v": value})
    except RenderError as exc:  # inside the arithmetic: only a number may stand there
        assert "must be a number" in str(exc)
        return
    subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=10)
    assert list(tmp_path.iterdir()) == [], script


def test_the_template_text_itself_is_never_changed() -> None:
    text = "printf 'a \"b\" $c' \"$d\" <<'X'\n$(e)\nX\n# f\n"
    assert r(text) == text
    assert r("{% if param.b %}echo '{{ param.v }}'{% else %}echo {{ param.v }}{% endif %}", {"b": True, "v": "a b"}) == "echo 'a b'"
    assert r("{% if param.b %}echo '{{ param.v }}'{% else %}echo {{ param.v }}{% endif %}", {"b": False, "v": "a b"}) == "echo 'a b'"
