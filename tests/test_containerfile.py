"""The Containerfile parser and ``.dockerignore`` matching, without building anything."""

from __future__ import annotations

import pytest

from vmm.container.engine import containerfile as cf
from vmm.container.engine.buildcontext import Ignore


def test_continuations_comments_and_forms():
    found = cf.parse(
        "# syntax note\n"
        "from busybox\n"
        "RUN echo a \\\n"
        "  # a comment inside a continuation\n"
        "  && echo b\n"
        'CMD ["sh", "-c", "echo $HOME"]\n'
        "ENTRYPOINT [not json\n"
    )
    assert [(i.line, i.name) for i in found] == [(2, "FROM"), (3, "RUN"), (6, "CMD"),
                                                 (7, "ENTRYPOINT")]  # fmt: skip
    assert found[1].text == "echo a && echo b" and not found[1].exec_form
    assert found[2].exec_form and found[2].args == ["sh", "-c", "echo $HOME"]
    assert not found[3].exec_form  # not an array: the shell form, as in Docker


def test_expand_substitutes_the_build_variables():
    variables = {"A": "1", "EMPTY": ""}
    assert cf.expand("$A ${A} ${B:-two} ${EMPTY:-d} ${A:+set} ${B:+set}.", variables) == (
        "1 1 two d set ."
    )
    assert cf.expand(r"\$A", variables) == r"\$A"  # escaped: ``words`` drops the backslash
    ins = cf.parse('FROM x\nENV P="$A b" Q=\\$A\n')[1]
    assert cf.pairs(ins, variables) == [("P", "1 b"), ("Q", "$A")]


def test_env_legacy_form_takes_the_rest_of_the_line():
    ins = cf.parse("FROM x\nENV GREETING hello   world\n")[1]
    assert cf.pairs(ins, {}) == [("GREETING", "hello   world")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Containerfile: the first instruction must be FROM"),
        ("ARG X\nRUN true\n", "Containerfile:2: the first instruction must be FROM"),
        ("FROM x\nADD --chown=bob a b\n", "Containerfile:2: ADD: --chown=bob: numeric"),
        ("FROM x\nCOPY --chmod=rw a b\n", "Containerfile:2: COPY: --chmod=rw: an octal mode"),
        ("FROM x\nARG 1X\n", "Containerfile:2: ARG: '1X' is not a variable name"),
        ("FROM x\nWORKDIR a b\n", "Containerfile:2: WORKDIR: takes one argument"),
        ("FROM x\nRUN\n", "Containerfile:2: RUN: needs an argument"),
    ],
)
def test_errors_name_the_line(text, message):
    with pytest.raises(cf.ContainerfileError) as e:
        cf.parse(text)
    assert str(e.value).startswith(message), str(e.value)


def test_dockerignore_as_docker_matches():
    ignore = Ignore("# comment\n*.log\n/build\n**/tmp\n!keep.log\ndocs/*.md\n")
    assert ignore(["a.log"]) and not ignore(["keep.log"])
    assert not ignore(["sub", "a.log"])  # "*" does not cross a "/"
    assert ignore(["build"]) and ignore(["build", "deep", "file"])  # a directory's content too
    assert ignore(["tmp"]) and ignore(["x", "y", "tmp", "f"])
    assert ignore(["docs", "a.md"]) and not ignore(["docs", "sub", "a.md"])
