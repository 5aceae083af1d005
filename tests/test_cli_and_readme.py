"""Every run script's ``--help`` works, and every command the documentation shows is checked against the code.

* Each ``run_scripts/*.py`` with a command line is found by a glob and run with ``--help`` (exit 0, prints "usage");
  each ``run_scripts/*.sh`` passes ``bash -n``.
* Each shell command in README.md, docs/*.md and model_cards/*.md (```bash blocks, un-labelled blocks and inline code
  spans that start with a command) is classified and checked: a run script's ``--help`` must work and accept every
  ``--flag`` the document passes (stale flags fail), ``--config``/``--config_file`` paths must exist, ``bash`` scripts
  must exist and parse, ``hf <command>`` flags must exist in the installed Hub client, ``python -c`` code must compile.
  A command of a kind without a handler fails, so a new kind of documented command cannot go unchecked.
* The imports of the documents' ```python blocks (and of ``python -c`` commands) run in one subprocess, and dotted
  references such as `modeling_audiomosaic.embeddings.AudioMosaicEmbedder` in inline code must resolve.

The four subprocesses (the scripts' --help batch, the import check, `accelerate launch --help`, `hf download --help`)
run once and concurrently (`_Runner`); the file takes about 15 s.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS_DIR = REPO / "run_scripts"

# Every Python file in run_scripts/ is a command line; shared code lives in the packages (`test_every_script_is_a_cli`).
CLI_SCRIPTS = sorted(SCRIPTS_DIR.glob("*.py"))
SHELL_SCRIPTS = sorted(SCRIPTS_DIR.glob("*.sh"))
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "model_cards").glob("*.md"))]

HELP_TIMEOUT_S = 300
COMMAND_WORDS = {"python", "python3", "bash", "accelerate", "torchrun", "hf", "huggingface-cli"}
SHELL_LANGS = {"bash", "sh", "shell", "console"}
PLACEHOLDERS = {"...", "…"}
FLAG_RE = re.compile(r"(?<![\w-])--[A-Za-z][\w-]*")
FENCE_RE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
INLINE_CODE_RE = re.compile(r"(?<!`)`([^`]+)`(?!`)")
DOTTED_REF_RE = re.compile(r"\bmodeling_audiomosaic(?:\.[A-Za-z_]\w*)+")


# ----------------------------------------------------------------------------------------------------------------------
# Subprocesses, run once and concurrently
# ----------------------------------------------------------------------------------------------------------------------
def _env() -> dict[str, str]:
    """The test environment (offline hub, set by conftest) plus a wide terminal so help lines are not truncated."""
    env = dict(os.environ, COLUMNS="200", PYTHONWARNINGS="ignore", NO_COLOR="1", TERM="dumb")
    env.pop("PYTHONPATH", None)
    return env


class _Runner:
    """Runs each command once per session (cached); `submit` starts it in a thread pool, `run` waits for it."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=4)
        self._futures: dict[tuple, object] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _call(cmd: tuple[str, ...], stdin: str | None) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(list(cmd), cwd=REPO, env=_env(), input=stdin, capture_output=True, text=True,
                                  timeout=HELP_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            return subprocess.CompletedProcess(list(cmd), 124, exc.stdout or "", f"timed out after {HELP_TIMEOUT_S} s")

    def submit(self, cmd: tuple[str, ...], stdin: str | None = None):
        with self._lock:
            key = (cmd, stdin)
            if key not in self._futures:
                self._futures[key] = self._pool.submit(self._call, cmd, stdin)
            return self._futures[key]

    def run(self, cmd: tuple[str, ...], stdin: str | None = None) -> subprocess.CompletedProcess:
        return self.submit(cmd, stdin).result()


RUNNER = _Runner()


# One interpreter imports torch, transformers and this package once, then forks a child per script that runs it as
# `python run_scripts/<name>.py --help` would (runpy, `__main__`, argv, its own stdout/stderr and exit status), except
# that the script's folder is not on the import path: a script imports the installed packages, never a sibling script.
# That costs one heavy import instead of one per script (~5 CPU-s each).
_HELP_BATCH = r"""
import json, os, runpy, sys, tempfile, traceback
import importlib
for shared in ("torch", "transformers", "transformers.trainer", "modeling_audiomosaic",
               "modeling_audiomosaic.feature_extraction"):
    try:  # what most scripts import: once, before forking (a failure shows in the scripts' own output)
        importlib.import_module(shared)
    except Exception:
        pass
scripts = json.load(sys.stdin)
children = {}
for script in scripts:
    out = tempfile.TemporaryFile()
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.dup2(out.fileno(), 1); os.dup2(out.fileno(), 2)
        code = 0
        try:
            sys.argv = [script, "--help"]
            runpy.run_path(script, run_name="__main__")
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr); code = 1
        except BaseException:
            traceback.print_exc(); code = 1
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code)
    children[script] = (pid, out)
results = {}
for script, (pid, out) in children.items():
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    out.seek(0)
    results[script] = [status, out.read().decode("utf-8", "replace")]
print("@@RESULT@@" + json.dumps(results))
"""


def _help_batch_job() -> tuple[tuple[str, ...], str]:
    return (sys.executable, "-P", "-c", _HELP_BATCH), json.dumps([str(p.relative_to(REPO)) for p in CLI_SCRIPTS])


def script_help(script: Path) -> subprocess.CompletedProcess:
    """The result of `python run_scripts/<script> --help` (from the forked batch)."""
    batch = RUNNER.run(*_help_batch_job())
    marker = "@@RESULT@@"
    assert batch.returncode == 0 and marker in batch.stdout, f"help batch crashed:\n{_output(batch)[-3000:]}"
    rc, out = json.loads(batch.stdout.split(marker, 1)[1])[str(script.relative_to(REPO))]
    return subprocess.CompletedProcess([script.name, "--help"], rc, out, "")


def _tool(name: str) -> str | None:
    """An executable of the test's environment (the venv's bin/ first, then PATH)."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def _output(proc: subprocess.CompletedProcess) -> str:
    return (proc.stdout or "") + (proc.stderr or "")


def _accepted_flags(help_text: str) -> set[str]:
    """Option names of an argparse / click help text: the option lines (2-space indent, starting with '-') up to the
    column where the help text begins, e.g. ``  --output_dir OUTPUT_DIR, --output-dir OUTPUT_DIR   help``."""
    flags: set[str] = set()
    for line in help_text.splitlines():
        if re.match(r"^ {1,4}-", line):
            invocation = re.split(r"\s{2,}", line.strip())[0]
            flags.update(FLAG_RE.findall(invocation))
    return flags


# ----------------------------------------------------------------------------------------------------------------------
# Extracting the documents' commands
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class DocCommand:
    """One shell command of a document; `strict` commands (from shell blocks) must be of a known kind."""

    where: str
    tokens: list[str]
    strict: bool
    comment_flags: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.where}: {' '.join(self.tokens)}"


def _split_chain(tokens: list[str]) -> list[list[str]]:
    """Split ``a && b ; c`` into its commands."""
    parts, current = [], []
    for token in tokens:
        if token in {"&&", "||", ";"}:
            parts.append(current)
            current = []
        else:
            current.append(token)
    parts.append(current)
    return [p for p in parts if p]


def _split_comment(line: str) -> tuple[list[str], str]:
    """Shell tokens of a line and its trailing ``# comment`` text."""
    try:
        tokens = shlex.split(line)
    except ValueError:  # e.g. an apostrophe in the comment
        try:
            return shlex.split(line, comments=True), ""
        except ValueError as exc:
            return ["<unparsable>", f"{exc}: {line}"], ""
    index = next((i for i, t in enumerate(tokens) if t.startswith("#")), len(tokens))
    return tokens[:index], " ".join(tokens[index:])


def _logical_lines(body: str) -> list[tuple[int, str]]:
    """Lines of a shell block with ``\\`` continuations joined, as (offset of the first line, text)."""
    out, pending, start = [], "", 0
    for offset, line in enumerate(body.splitlines()):
        if not pending:
            start = offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    if pending:
        out.append((start, pending))
    return out


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def extract_commands(path: Path) -> list[DocCommand]:
    """Shell commands of a markdown file: shell blocks (strict), un-labelled blocks and inline code spans (only the
    parts that start with a command word). Comment lines of a block that mention ``--flags`` (e.g. ``# or your own
    data: --train_file ...``) add those flags to the block's preceding command."""
    text = path.read_text(encoding="utf-8")
    name = path.relative_to(REPO).as_posix()
    commands: list[DocCommand] = []
    for block in FENCE_RE.finditer(text):
        lang = block.group(1).lower()
        if lang not in SHELL_LANGS and lang != "":
            continue
        strict = lang in SHELL_LANGS
        first_line = _line_of(text, block.start(2))
        last: DocCommand | None = None
        for offset, line in _logical_lines(block.group(2)):
            line = line.strip()
            where = f"{name}:{first_line + offset}"
            if not line:
                continue
            if line.startswith("#"):
                if last is not None:
                    last.comment_flags += FLAG_RE.findall(line)
                continue
            line = line.removeprefix("$ ")
            if not strict and line.split()[0] not in COMMAND_WORDS:
                continue
            tokens, comment = _split_comment(line)
            for part in _split_chain(tokens):
                if strict or part[0] in COMMAND_WORDS:
                    last = DocCommand(where, part, strict)
                    commands.append(last)
            if last is not None:
                last.comment_flags += FLAG_RE.findall(comment)  # `cmd a b   # --dry-run prints ...`
    prose = FENCE_RE.sub(lambda m: "\n" * m.group(0).count("\n"), text)  # keep line numbers
    for span in INLINE_CODE_RE.finditer(prose):
        code = " ".join(span.group(1).split())
        if not code or code.split()[0] not in COMMAND_WORDS and " && " not in code:
            continue
        try:
            tokens = shlex.split(code)
        except ValueError:
            continue  # prose like `python`'s quotes: not a command
        for part in _split_chain(tokens):
            if _looks_like_command(part):
                commands.append(DocCommand(f"{name}:{_line_of(prose, span.start())}", part, strict=False))
    return commands


def _looks_like_command(tokens: list[str]) -> bool:
    """Whether an inline code span is a runnable command rather than a mention of a tool (`accelerate launch`,
    `python`): it names a script, code or sub-command."""
    word, rest = tokens[0], tokens[1:]
    if word in {"python", "python3"}:
        return bool(rest) and (rest[0] in {"-c", "-m"} or rest[0].endswith(".py"))
    if word == "accelerate":
        return any(t.endswith(".py") for t in rest)
    if word == "bash":
        return bool(rest) and rest[0].endswith(".sh")
    return word in COMMAND_WORDS and bool(rest)


def _is_placeholder(token: str) -> bool:
    return token in PLACEHOLDERS or token.startswith("<") or token.endswith(">")


def _flags(tokens: list[str]) -> list[str]:
    """``--flags`` among tokens (``[--only``, ``--x=1`` included)."""
    out = []
    for token in tokens:
        match = re.match(r"^\[?(--[A-Za-z][\w-]*)", token)
        if match:
            out.append(match.group(1))
    return out


def _option_values(tokens: list[str], names: set[str]) -> list[str]:
    """Values of ``--name value`` / ``--name=value`` options."""
    values = []
    for i, token in enumerate(tokens):
        key, eq, value = token.partition("=")
        if key in names:
            if eq:
                values.append(value)
            elif i + 1 < len(tokens):
                values.append(tokens[i + 1])
    return values


# ----------------------------------------------------------------------------------------------------------------------
# Checking one command: handlers by kind
# ----------------------------------------------------------------------------------------------------------------------
def _check_paths(tokens: list[str]) -> list[str]:
    problems = []
    for value in _option_values(tokens, {"--config", "--config_file", "--config-file"}):
        if not _is_placeholder(value) and not (REPO / value).is_file():
            problems.append(f"config file {value!r} does not exist")
    return problems


def _check_script(script_token: str, args: list[str], extra_flags: list[str]) -> list[str]:
    """A python run script: it exists, its --help works, and it accepts every flag the document passes."""
    script = REPO / script_token
    if not script.is_file():
        return [f"{script_token} does not exist"]
    if script.suffix != ".py" or script.parent != SCRIPTS_DIR:
        return [f"{script_token} is not a run script with a command line (expected run_scripts/<name>.py)"]
    proc = script_help(script)
    if proc.returncode != 0:
        return [f"`{script_token} --help` failed ({proc.returncode}): {_output(proc)[-1500:]}"]
    accepted = _accepted_flags(_output(proc))  # recipe scripts list --config too (recipe_arguments.parse_with_recipe)
    problems = [f"{script_token} has no option {flag} (stale flag?)"
                for flag in dict.fromkeys(_flags(args) + extra_flags) if flag not in accepted]
    return problems + _check_paths(args)


def _check_accelerate(tokens: list[str], extra_flags: list[str]) -> list[str]:
    if len(tokens) < 2 or tokens[1] != "launch":
        return [f"no handler for `accelerate {tokens[1] if len(tokens) > 1 else ''}`: add one to {__file__}"]
    script_index = next((i for i, t in enumerate(tokens) if t.endswith(".py")), None)
    if script_index is None:
        return ["`accelerate launch` without a run_scripts/*.py script"]
    accelerate = _tool("accelerate")
    if accelerate is None:
        return ["the `accelerate` command is not installed in the test environment"]
    proc = RUNNER.run((accelerate, "launch", "--help"))
    if proc.returncode != 0:
        return [f"`accelerate launch --help` failed: {_output(proc)[-1500:]}"]
    accepted = _accepted_flags(_output(proc))
    launcher_args = tokens[2:script_index]
    problems = [f"`accelerate launch` has no option {flag}" for flag in _flags(launcher_args) if flag not in accepted]
    problems += _check_paths(launcher_args)
    return problems + _check_script(tokens[script_index], tokens[script_index + 1:], extra_flags)


def _check_torchrun(tokens: list[str], extra_flags: list[str]) -> list[str]:
    """`torchrun [its flags] run_scripts/<name>.py [script flags]`: torchrun's flags are checked against the help of
    `python -m torch.distributed.run` (what the `torchrun` entry point runs), the script as any run script."""
    script_index = next((i for i, t in enumerate(tokens) if t.endswith(".py")), None)
    if script_index is None:
        return ["`torchrun` without a run_scripts/*.py script"]
    proc = RUNNER.run((sys.executable, "-m", "torch.distributed.run", "--help"))
    if proc.returncode != 0:
        return [f"`torchrun --help` failed: {_output(proc)[-1500:]}"]
    accepted = _accepted_flags(_output(proc))
    problems = [f"`torchrun` has no option {flag}" for flag in _flags(tokens[1:script_index]) if flag not in accepted]
    return problems + _check_script(tokens[script_index], tokens[script_index + 1:], extra_flags)


def _check_bash(tokens: list[str]) -> list[str]:
    if len(tokens) < 2 or not tokens[1].endswith(".sh"):
        return [f"no handler for `bash {' '.join(tokens[1:])}` (only `bash <script>.sh`): add one to {__file__}"]
    script = REPO / tokens[1]
    if not script.is_file():
        return [f"{tokens[1]} does not exist"]
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    return [] if proc.returncode == 0 else [f"`bash -n {tokens[1]}`: {proc.stderr}"]


def _check_hf(tokens: list[str]) -> list[str]:
    if len(tokens) < 2:
        return ["bare `hf`: name a sub-command"]
    hf = _tool("hf")
    if hf is None:
        return ["the `hf` command (huggingface_hub) is not installed in the test environment"]
    proc = RUNNER.run((hf, tokens[1], "--help"))
    if proc.returncode != 0:
        return [f"`hf {tokens[1]} --help` failed: {_output(proc)[-1500:]}"]
    accepted = _accepted_flags(_output(proc))
    return [f"`hf {tokens[1]}` has no option {flag}" for flag in _flags(tokens[2:]) if flag not in accepted]


def _check_python(tokens: list[str], extra_flags: list[str]) -> list[str]:
    if len(tokens) >= 3 and tokens[1] == "-c":
        try:
            compile(tokens[2], "<python -c>", "exec")
        except SyntaxError as exc:
            return [f"`python -c` code does not compile: {exc}"]
        return []  # its imports are checked by test_documented_python_imports
    if len(tokens) >= 2 and tokens[1].endswith(".py"):
        return _check_script(tokens[1], tokens[2:], extra_flags)
    return [f"no handler for `{' '.join(tokens[:2])}`: add one to {__file__}"]


def check_command(command: DocCommand) -> list[str]:
    """Problems of one documented command ([] = fine)."""
    tokens = command.tokens
    word = tokens[0]
    if word in {"python", "python3"}:
        return _check_python(tokens, command.comment_flags)
    if word == "accelerate":
        return _check_accelerate(tokens, command.comment_flags)
    if word == "bash":
        return _check_bash(tokens)
    if word == "torchrun":
        return _check_torchrun(tokens, command.comment_flags)
    if word == "hf":
        return _check_hf(tokens)
    if word == "huggingface-cli":
        return ["`huggingface-cli` is deprecated: use `hf download <repo> --local-dir <dir>` (huggingface_hub's CLI)"]
    return [f"no handler for commands starting with `{word}`: add one to check_command() in {__file__}"]


# ----------------------------------------------------------------------------------------------------------------------
# Python code of the documents
# ----------------------------------------------------------------------------------------------------------------------
def _python_imports(path: Path) -> list[str]:
    """Import statements of the ```python blocks and of the `python -c` commands of one document, in order."""
    text = path.read_text(encoding="utf-8")
    sources = [m.group(2) for m in FENCE_RE.finditer(text) if m.group(1).lower() in {"python", "py"}]
    sources += [c.tokens[2] for c in extract_commands(path) if c.tokens[:2] in (["python", "-c"], ["python3", "-c"])]
    statements = []
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue  # reported by test_documented_python_blocks_compile
        nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
        statements += [ast.unparse(n) for n in sorted(nodes, key=lambda n: (n.lineno, n.col_offset))]
    return list(dict.fromkeys(statements))


def _dotted_refs(path: Path) -> list[str]:
    """`modeling_audiomosaic.x.y` references (the data side included: `modeling_audiomosaic.feature_extraction.x`) in
    inline code outside code blocks."""
    prose = FENCE_RE.sub("", path.read_text(encoding="utf-8"))
    refs = []
    for span in INLINE_CODE_RE.finditer(prose):
        refs += DOTTED_REF_RE.findall(span.group(1))
    return list(dict.fromkeys(refs))


_IMPORT_CHECKER = r"""
import importlib, json, sys
todo = json.load(sys.stdin)
failures = {}
for doc, statements in todo["statements"].items():
    namespace = {}
    for statement in statements:
        try:
            exec(statement, namespace)
        except Exception as exc:
            failures[f"{doc}: {statement}"] = f"{type(exc).__name__}: {exc}"
for ref in todo["refs"]:
    parts = ref.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError as exc:
            if exc.name == ".".join(parts[:i]) and i > 1:
                continue
            failures[ref] = f"{type(exc).__name__}: {exc}"
            break
        except Exception as exc:
            failures[ref] = f"{type(exc).__name__}: {exc}"
            break
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                failures[ref] = f"{'.'.join(parts[:parts.index(attr)])} has no attribute {attr!r}"
                break
            obj = getattr(obj, attr)
        break
print("@@RESULT@@" + json.dumps(failures))
"""


def _import_check_job() -> tuple[tuple[str, ...], str]:
    statements = {doc.relative_to(REPO).as_posix(): _python_imports(doc) for doc in DOCUMENTS}
    refs = [r for doc in DOCUMENTS for r in _dotted_refs(doc)]
    payload = json.dumps({"statements": statements, "refs": list(dict.fromkeys(refs))})
    return (sys.executable, "-P", "-c", _IMPORT_CHECKER), payload


def _import_failures() -> dict[str, str]:
    cmd, payload = _import_check_job()
    proc = RUNNER.run(cmd, payload)
    marker = "@@RESULT@@"
    assert proc.returncode == 0 and marker in proc.stdout, f"import checker crashed:\n{_output(proc)[-3000:]}"
    return json.loads(proc.stdout.split(marker, 1)[1])


@pytest.fixture(scope="module", autouse=True)
def _prefetch():
    """Start every subprocess of this file at once (they are cached; the tests then wait on their own ones)."""
    RUNNER.submit(*_help_batch_job())
    RUNNER.submit(*_import_check_job())
    for tool, args in (("accelerate", ("launch", "--help")), ("hf", ("download", "--help"))):
        if _tool(tool):
            RUNNER.submit((_tool(tool), *args))
    yield


# ----------------------------------------------------------------------------------------------------------------------
# Tests: the scripts
# ----------------------------------------------------------------------------------------------------------------------
def test_every_script_is_a_cli():
    """run_scripts/ holds command lines only: code shared by scripts belongs in the packages."""
    no_cli = [p.name for p in CLI_SCRIPTS if "__main__" not in p.read_text(encoding="utf-8")]
    assert not no_cli, f"run_scripts/{no_cli} have no command line: move shared code into modeling_audiomosaic/"
    assert len(CLI_SCRIPTS) >= 10, [p.name for p in CLI_SCRIPTS]


@pytest.mark.parametrize("script", CLI_SCRIPTS, ids=lambda p: p.name)
def test_script_help(script):
    proc = script_help(script)
    out = _output(proc)
    assert proc.returncode == 0, f"`python {script.relative_to(REPO)} --help` exited {proc.returncode}:\n{out[-3000:]}"
    assert "usage" in out.lower(), f"`{script.name} --help` printed no usage:\n{out[-2000:]}"
    assert "--help" in _accepted_flags(out), out[-2000:]


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shell_script_syntax(script):
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, f"bash -n {script.name}: {proc.stderr}"


# ----------------------------------------------------------------------------------------------------------------------
# Tests: the documents
# ----------------------------------------------------------------------------------------------------------------------
def test_extractor_finds_the_readme_commands():
    """The extraction itself: continuation lines joined, comments attached, every kind of README command found."""
    commands = extract_commands(REPO / "README.md")
    kinds = {(c.tokens[0], c.tokens[1]) for c in commands if len(c.tokens) > 1}
    assert ("bash", "run_scripts/main_job.sh") in kinds and ("bash", "run_scripts/run_tests.sh") in kinds
    assert ("accelerate", "launch") in kinds and ("torchrun", "--nnodes") in kinds  # README "Multi-node pre-training"
    assert ("python", "run_scripts/run_pretrain.py") in kinds and ("python", "run_scripts/run_audio_llm.py") in kinds
    assert ("python", "run_scripts/run_audio_classification.py") in kinds  # an inline span over two lines
    paper = [c for c in commands if "run_scripts/recipes/pretrain_paper.yaml" in c.tokens]
    assert paper and paper[0].tokens[:2] == ["accelerate", "launch"] and "--max_steps" in paper[0].tokens
    llm = [c for c in commands if c.tokens[1:2] == ["run_scripts/run_audio_llm.py"]]
    assert "--merge_and_unload" in llm[0].tokens and "--train_file" in llm[0].comment_flags
    assert not any(t.startswith("#") for c in commands for t in c.tokens)


def test_flag_checker_catches_stale_flags():
    """A made-up flag, a missing recipe and an unknown command kind are reported (the checker is not a no-op)."""
    stale = DocCommand("x", ["python", "run_scripts/run_pretrain.py", "--no_such_flag", "1",
                             "--config", "run_scripts/recipes/missing.yaml"], strict=True)
    problems = check_command(stale)
    assert any("--no_such_flag" in p for p in problems) and any("missing.yaml" in p for p in problems), problems
    assert check_command(DocCommand("x", ["python", "run_scripts/run_pretrain.py", "--max_steps", "3"], True)) == []
    launcher = DocCommand("x", ["accelerate", "launch", "--num_gpus_typo", "2", "run_scripts/run_pretrain.py"], True)
    assert any("--num_gpus_typo" in p for p in check_command(launcher)), check_command(launcher)
    torchrun = DocCommand("x", ["torchrun", "--nnodes", "2", "--node_rank_typo", "0", "run_scripts/run_pretrain.py",
                                "--max_steps_typo", "3"], True)
    assert {"--node_rank_typo", "--max_steps_typo"} <= {f for p in check_command(torchrun) for f in p.split()
                                                         if f.startswith("--")}, check_command(torchrun)
    in_comment = DocCommand("x", ["python", "run_scripts/run_audio_llm.py"], True, comment_flags=["--stale_one"])
    assert any("--stale_one" in p for p in check_command(in_comment))
    assert "no handler" in check_command(DocCommand("x", ["wget", "http://x"], strict=True))[0]
    assert "deprecated" in check_command(DocCommand("x", ["huggingface-cli", "download", "a/b"], True))[0]


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_documented_commands(doc):
    """Every shell command of the document runs (as --help) with the flags and files it names."""
    problems = [f"{command}\n    -> {problem}"
                for command in extract_commands(doc) for problem in check_command(command)]
    assert not problems, "stale or unchecked commands:\n" + "\n".join(problems)


def test_no_huggingface_cli_left():
    """The Hub client's command is `hf` (`huggingface-cli` is deprecated); model cards come from model_cards.py."""
    sources = DOCUMENTS + [REPO / "modeling_audiomosaic" / "model_cards.py"]
    offenders = [f"{p.relative_to(REPO)}:{i}" for p in sources
                 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if "huggingface-cli" in line]
    assert not offenders, f"replace `huggingface-cli` by `hf` in: {offenders}"


def test_documented_python_blocks_compile():
    problems = []
    for doc in DOCUMENTS:
        text = doc.read_text(encoding="utf-8")
        for block in FENCE_RE.finditer(text):
            if block.group(1).lower() in {"python", "py"}:
                try:
                    ast.parse(block.group(2))
                except SyntaxError as exc:
                    problems.append(f"{doc.name}:{_line_of(text, block.start(2)) + (exc.lineno or 1) - 1}: {exc.msg}")
    assert not problems, problems


def test_documented_python_imports():
    """`import` / `from X import Y` of the documents' python blocks and `python -c` commands, and dotted references
    like `modeling_audiomosaic.embeddings.AudioMosaicEmbedder` in inline code, all resolve (one subprocess)."""
    statements = _python_imports(REPO / "README.md")
    assert "from modeling_audiomosaic import AudioMosaicConfig, AudioMosaicForAudioClassification, load_label_file" \
        in statements, statements
    failures = _import_failures()
    assert not failures, "documented imports that fail:\n" + "\n".join(f"{k}: {v}" for k, v in failures.items())


def _layout_names(block: str, folder: str, next_folder: str | None) -> set[str]:
    """File names listed in the README's layout block between the `folder/` heading and the next one (`a_{b,c}.py`
    patterns expanded)."""
    start = block.index(f"\n{folder}/")
    end = block.index(f"\n{next_folder}/") if next_folder else len(block)
    names = set()
    for token in re.findall(r"[\w{},]+\.py\b", block[start:end]):
        match = re.fullmatch(r"(\w*)\{([\w,]+)\}(\w*)\.py", token)
        names |= {f"{match[1]}{part}{match[3]}.py" for part in match[2].split(",")} if match else {token}
    return names


def test_readme_layout_matches_the_tree():
    """Every Python module of the packages and every run script is listed in the README's layout, and nothing listed
    there is missing from the tree."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Layout"):text.index("## Development")]
    block = "\n" + next(m.group(2) for m in FENCE_RE.finditer(section))
    folders = ["modeling_audiomosaic", "feature_extraction", "run_scripts", "tests"]
    for folder, next_folder in zip(folders, folders[1:]):
        listed = _layout_names(block, folder, next_folder)
        present = {p.name for p in (REPO / folder).glob("*.py") if p.name != "__init__.py"}
        assert listed == present, (f"README layout of {folder}/: missing {sorted(present - listed)}, "
                                   f"not in the tree {sorted(listed - present)}")
    for sub in ("offline_corpus", "metrics", "labels"):
        assert f"{sub}/" in block and any((REPO / f).joinpath(sub).is_dir() for f in folders[:2]), sub
