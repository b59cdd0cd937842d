"""Dockerfile parsing, variable expansion, .dockerignore and build-context rules
(corral.build.dockerfile, expand, context, stages, config_ops): no root needed."""

from __future__ import annotations

import os

import pytest

from corral.build import config_ops
from corral.build.context import BuildContext, DockerIgnore, OutsideContext, SourceNotFound
from corral.build.dockerfile import DockerfileError, parse
from corral.build.expand import ExpansionError, Lexer
from corral.build.stages import meta_args, needed_stages, split_stages


# -- parser --------------------------------------------------------------------------
def test_continuations_comments_and_line_numbers():
    df = parse("FROM busybox\n"
               "# a comment\n"
               "RUN echo hello \\\n"
               "# comment inside\n"
               "\n"
               "    world\n"
               "  run   echo   x  \n")
    assert [i.cmd for i in df.instructions] == ["FROM", "RUN", "RUN"]
    run = df.instructions[1]
    assert run.rest == "echo hello     world"
    assert (run.line, run.end_line) == (3, 6)
    assert df.instructions[2].line == 7 and df.instructions[2].rest == "echo   x"


def test_escape_directive_backtick():
    df = parse("# escape=`\n\nFROM busybox\nRUN dir c:\\ `\n  && echo done\n")
    assert df.escape == "`"
    assert df.instructions[1].rest == "dir c:\\   && echo done"


def test_directive_only_at_top():
    df = parse("FROM busybox\n# escape=`\nRUN echo a \\\n b\n")
    assert df.escape == "\\" and df.instructions[1].rest == "echo a  b"


def test_bad_escape_directive():
    with pytest.raises(DockerfileError, match="escape"):
        parse("# escape=x\nFROM busybox\n")


def test_json_and_shell_forms():
    df = parse('FROM a\nCMD ["sh", "-c", "echo hi"]\nCMD echo hi\nENTRYPOINT [not json\n'
               'RUN ["a", 1]\n')
    cmd_json, cmd_shell, entry, run = df.instructions[1:]
    assert cmd_json.json and cmd_json.args == ("sh", "-c", "echo hi")
    assert not cmd_shell.json and cmd_shell.rest == "echo hi"
    assert not entry.json and entry.rest == "[not json"
    assert not run.json  # not an array of strings: shell form


def test_flags():
    df = parse("FROM --platform=linux/amd64 busybox AS b\nCOPY --from=b --chown=1:2 a /b\n")
    assert df.instructions[0].flag("platform") == "linux/amd64"
    copy = df.instructions[1]
    assert copy.flag("from") == "b" and copy.flag("chown") == "1:2" and copy.rest == "a /b"


def test_unknown_instruction_and_flag_name_the_line():
    with pytest.raises(DockerfileError, match=r"Dockerfile:3: unknown instruction: BOGUS"):
        parse("FROM a\n\nBOGUS x\n")
    with pytest.raises(DockerfileError, match=r"Dockerfile:2: COPY: unknown flag: --frm"):
        parse("FROM a\nCOPY --frm=x a b\n")


def test_heredocs():
    df = parse("FROM a\n"
               "RUN <<EOT bash\n"
               "  set -e\n"
               "  echo $HOME\n"
               "EOT\n"
               "COPY <<-\"EOF\" /x\n"
               "\tkeep $X\n"
               "\tEOF\n"
               "RUN <<A cat > a && <<B cat > b\n"
               "one\n"
               "A\n"
               "two\n"
               "B\n"
               "CMD x\n")
    run, copy, two, cmd = df.instructions[1:]
    assert run.heredocs[0].name == "EOT" and run.heredocs[0].body == "  set -e\n  echo $HOME\n"
    assert run.rest == "<<EOT bash" and (run.line, run.end_line) == (2, 5)
    assert copy.heredocs[0].body == "keep $X\n" and not copy.heredocs[0].expand
    assert [h.body for h in two.heredocs] == ["one\n", "two\n"]
    assert cmd.line == 14


def test_unterminated_heredoc():
    with pytest.raises(DockerfileError, match=r":2: RUN: here-document 'EOT' is not terminated"):
        parse("FROM a\nRUN <<EOT\necho\n")


# -- expansion ----------------------------------------------------------------------
ENV = {"A": "alpha", "EMPTY": "", "P": "foobarbaz"}


@pytest.mark.parametrize(("text", "expected"), [
    ("$A", "alpha"), ("${A}_x", "alpha_x"), ("$A_x", ""), ("${NOPE}", ""),
    ("${NOPE:-def}", "def"), ("${EMPTY:-def}", "def"), ("${EMPTY-def}", ""),
    ("${A:-def}", "alpha"), ("${A:+set}", "set"), ("${EMPTY:+set}", ""),
    ("${EMPTY+set}", "set"), ("${NOPE+set}", ""), ("${NOPE:-${A}}", "alpha"),
    ("\\$A", "$A"), ("'$A'", "$A"), ('"$A b"', "alpha b"), ('"\\$A"', "$A"),
    ('"a\\b"', "a\\b"), ("${P#f*b}", "arbaz"), ("${P##f*b}", "az"), ("${P%b*}", "foobar"),
    ("${P%%b*}", "foo"), ("${P/ba/fo}", "fooforbaz"), ("${P//ba/fo}", "fooforfoz"),
    ("a$", "a$"), ("$1x", "x"),
])
def test_expansion(text, expected):
    assert Lexer().word(text, ENV) == expected


def test_words_split_on_unquoted_blanks():
    assert Lexer().words('a "b c" ${A} \'$A d\' ""', ENV) == ["a", "b c", "alpha", "$A d", ""]


def test_backtick_escape():
    assert Lexer("`").word("`$A c:\\dir", ENV) == "$A c:\\dir"


@pytest.mark.parametrize("text", ["${A", "'open", '"open', "${}", "${NOPE:?must be set}"])
def test_expansion_errors(text):
    with pytest.raises(ExpansionError):
        Lexer().word(text, ENV)


def test_env_uses_values_from_before_the_instruction():
    df = parse("FROM a\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n"
               "ENV legacy some value $abc\n")
    config: dict = {}
    for ins in df.instructions[1:]:
        config_ops.apply_metadata(ins, config, Lexer(), config_ops.env_map(config))
    assert config_ops.env_map(config) == {"abc": "bye", "def": "hello", "ghi": "bye",
                                          "legacy": "some value bye"}


def test_metadata_instructions():
    df = parse('FROM a\nLABEL "a b"=c d="e f"\nEXPOSE 80 53/udp 1000-1001\nVOLUME /v ["/w"]\n'
               'VOLUME ["/x", "/y"]\nUSER ${U:-app}:grp\nWORKDIR /a\nWORKDIR b\n'
               'STOPSIGNAL SIGTERM\nSHELL ["/bin/bash", "-c"]\nCMD echo hi\n'
               'HEALTHCHECK --interval=5s --retries=3 CMD curl -f http://x/\n'
               'ONBUILD RUN echo trigger\n')
    config: dict = {}
    texts = [config_ops.apply_metadata(i, config, Lexer(), {}) for i in df.instructions[1:]]
    c = config["config"]
    assert c["Labels"] == {"a b": "c", "d": "e f"}
    assert set(c["ExposedPorts"]) == {"80/tcp", "53/udp", "1000/tcp", "1001/tcp"}
    assert set(c["Volumes"]) == {"/v", "[/w]", "/x", "/y"}  # quotes removed
    assert c["User"] == "app:grp" and c["WorkingDir"] == "/a/b" and c["StopSignal"] == "SIGTERM"
    assert c["Cmd"] == ["/bin/bash", "-c", "echo hi"]  # the shell form goes through SHELL
    assert c["Healthcheck"] == {"Test": ["CMD-SHELL", "curl -f http://x/"],
                                "Interval": 5_000_000_000, "Retries": 3}
    assert c["OnBuild"] == ["RUN echo trigger"]
    assert texts[0] == "LABEL a b=c d=e f"


# -- stages ---------------------------------------------------------------------------
def test_meta_args_stages_and_needed():
    df = parse("ARG TAG=1\nARG BASE\nFROM busybox:$TAG AS one\nFROM ${BASE:-debian} AS two\n"
               "COPY --from=one /a /a\nFROM two AS three\nFROM busybox AS unused\n")
    meta, _ = meta_args(df, {"BASE": "alpine"})
    assert {k: meta[k] for k in ("TAG", "BASE")} == {"TAG": "1", "BASE": "alpine"}
    assert meta["TARGETOS"] == "linux" and meta["TARGETPLATFORM"].startswith("linux/")
    stages = split_stages(df, meta)
    assert [(s.name, s.base) for s in stages] == [("one", "busybox:1"), ("two", "alpine"),
                                                  ("three", "two"), ("unused", "busybox")]
    assert needed_stages(stages, stages[2], Lexer(), meta) == {0, 1, 2}
    assert needed_stages(stages, stages[0], Lexer(), meta) == {0}


def test_instruction_before_from_is_an_error():
    with pytest.raises(DockerfileError, match=r":1: RUN before the first FROM"):
        meta_args(parse("RUN x\nFROM a\n"), {})


def test_duplicate_stage_names():
    df = parse("FROM a AS x\nFROM b AS x\n")
    with pytest.raises(DockerfileError, match=r":2: FROM: duplicate stage name 'x'"):
        split_stages(df, {})


# -- .dockerignore and sources --------------------------------------------------------
def test_dockerignore_patterns():
    ignore = DockerIgnore(["# comment", "*.log", "!keep.log", "build/", "**/tmp", "/docs/*.md",
                           "!docs/README.md"])
    assert ignore.excluded("a.log") and not ignore.excluded("keep.log")
    assert ignore.excluded("build/x/y") and ignore.excluded("a/b/tmp/c")
    assert ignore.excluded("docs/x.md") and not ignore.excluded("docs/README.md")
    assert not ignore.excluded("sub/a.log")  # `*` does not cross directories
    assert not ignore.excluded("src/main.py")


@pytest.fixture
def context(tmp_path):
    root = tmp_path / "ctx"
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "sub" / "f").write_text("f")
    (root / "dir" / "skip.log").write_text("log")
    (root / "a.txt").write_text("a")
    (root / "b.txt").write_text("b")
    (root / ".dockerignore").write_text("**/*.log\n")
    (tmp_path / "outside").write_text("secret")
    os.symlink("../outside", root / "escape")
    os.symlink("/etc/passwd", root / "absolute")
    os.symlink("a.txt", root / "inside")
    return root


def test_sources_globs_dirs_and_ignore(context):
    ctx = BuildContext(context)
    assert [s.name for s in ctx.sources(["*.txt"])] == ["*.txt", "*.txt"]
    (directory,) = ctx.sources(["dir"])
    assert directory.is_dir and [e.rel for e in directory.entries] == ["sub", "sub/f"]
    (link,) = ctx.sources(["inside"])
    assert link.path.endswith("/a.txt")
    with pytest.raises(SourceNotFound, match="excluded by .dockerignore"):
        ctx.sources(["dir/skip.log"])
    with pytest.raises(SourceNotFound, match="nope"):
        ctx.sources(["nope"])


@pytest.mark.parametrize("name", ["../outside", "dir/../../outside", "escape", "absolute"])
def test_sources_never_leave_the_context(context, name):
    with pytest.raises(OutsideContext, match="outside the build context"):
        BuildContext(context).sources([name])


def test_content_digest_follows_contents_not_times(context):
    from corral.build.context import HashCache, digest_entries

    def digest():
        ctx = BuildContext(context, HashCache(None))
        return digest_entries(ctx.sources(["dir"])[0].entries, ctx.cache)

    first = digest()
    os.utime(context / "dir" / "sub" / "f", (1, 1))
    assert digest() == first
    (context / "dir" / "sub" / "f").write_text("changed")
    assert digest() != first
    (context / "dir" / "sub" / "f").write_text("f")
    os.chmod(context / "dir" / "sub" / "f", 0o600)
    assert digest() != first


# -- COPY --chmod -------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "mode", "is_dir", "expected"), [
    ("755", 0o600, False, 0o755), ("0640", 0o777, True, 0o640),
    ("+x", 0o644, False, 0o755), ("u=rwX,go=rX", 0o600, True, 0o755),
    ("u=rwX,go=rX", 0o600, False, 0o644), ("u=rwX,go=rX", 0o700, False, 0o755),
    ("g=u", 0o740, False, 0o770), ("o-r,g+w", 0o644, False, 0o660), ("u+s,+t", 0o755, True,
                                                                    0o5755),
])
def test_chmod(text, mode, is_dir, expected):
    from corral.build.copy_files import Chmod

    assert Chmod(text, "COPY").apply(mode, is_dir) == expected


@pytest.mark.parametrize("text", ["999", "u=q", "rwx", "77777"])
def test_chmod_errors(text):
    from corral.build.copy_files import Chmod
    from corral.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="--chmod"):
        Chmod(text, "COPY")


def test_bom_crlf_and_empty_instructions():
    df = parse("\ufeffFROM busybox\r\nRUN echo a \\\r\n  b\r\n")
    assert [i.rest for i in df.instructions] == ["busybox", "echo a   b"]
    with pytest.raises(DockerfileError, match=r"Dockerfile:2: RUN requires at least one argument"):
        parse("FROM a\nRUN   \n")


def test_golden_dockerfile():
    """tests/unit/data/dockerfile/full.Dockerfile parses to full.json (reviewed by hand:
    directives, indentation, comments and blank lines inside continuations, exec vs shell
    form, flags, here-documents with tabs and quoting, continued quoted values)."""
    import json
    from dataclasses import asdict
    from pathlib import Path

    data = Path(__file__).parent / "data" / "dockerfile"
    df = parse((data / "full.Dockerfile").read_text())
    got = {"directives": df.directives, "escape": df.escape,
           "instructions": [{"cmd": i.cmd, "line": i.line, "end_line": i.end_line,
                             "rest": i.rest, "json": i.json, "args": list(i.args),
                             "flags": [list(f) for f in i.flags],
                             "heredocs": [asdict(h) for h in i.heredocs]}
                            for i in df.instructions]}
    assert got == json.loads((data / "full.json").read_text())


def test_not_heredocs():
    """Only a word that is `<<NAME` starts a here-document (BuildKit): not a quoted "<<x",
    a here-string `<<<`, arithmetic, or `cat<<x`."""
    df = parse('FROM a\nRUN echo "x<<y" && cat <<< "word" && echo $((1<<2)) && cat<<z\n'
               "RUN 3<<EOF cat /dev/fd/3\nfd three\nEOF\n")
    assert df.instructions[1].heredocs == ()
    assert [h.name for h in df.instructions[2].heredocs] == ["EOF"]
