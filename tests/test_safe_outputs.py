"""Output files a user names: regular files only, never someone else's file unless
``--force``, whole or not at all, and a full or read-only disk said in one line."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from v2ghub import files
from v2ghub.cli import build_parser, main
from v2ghub.errors import InputError
from v2ghub.files import (
    Replaces,
    atomic_text,
    check_replaceable,
    json_object_with,
    writing_into,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PLAN = [
    "plan",
    "--sessions",
    str(EXAMPLES / "sessions.csv"),
    "--prices",
    str(EXAMPLES / "prices.csv"),
    "--planner",
    "tou",
]
SCHEDULE_HEADER = "session_id,start,power_kw\n"
PASSWORDS = "root:x:0:0:root:/root:/bin/bash\n"


def _plan(out: Path, *extra: str) -> int:
    return main([*PLAN, "--out", str(out), *extra])


def _plan_naming(target: Path, option: str, *extra: str) -> int:
    """Plan with ``target`` as the file of ``option`` (the schedule beside it otherwise)."""
    if option == "--out":
        return _plan(target, *extra)
    return _plan(target.parent / "schedule.csv", "--summary", str(target), *extra)


def _only_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def _special_file(folder: Path, kind: str) -> Path:
    path = folder / kind
    if kind == "fifo":
        os.mkfifo(path)
    else:
        try:  # the null device's numbers; creating a device node needs root
            os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("creating a device node needs root")
    return path


@pytest.mark.parametrize("kind", ["fifo", "device"])
@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("option", ["--out", "--summary"])
def test_a_special_file_is_never_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, force: bool, option: str
) -> None:
    special = _special_file(tmp_path, kind)
    assert _plan_naming(special, option, *(["--force"] if force else [])) == 2
    line = _only_line(capsys.readouterr().err)
    noun = "device" if kind == "device" else "special file"
    assert line == (
        f"error: {special}: {option} is a {noun}, not a regular file; "
        "v2ghub writes only regular files"
    )
    mode = os.lstat(special).st_mode
    assert stat.S_ISFIFO(mode) if kind == "fifo" else stat.S_ISCHR(mode)
    assert not (tmp_path / "schedule.csv").exists()
    assert _leftovers(tmp_path) == []


@pytest.fixture
def system_file(tmp_path: Path) -> Path:
    """A file that is not ours, as /etc/passwd is."""
    path = tmp_path / "passwd"
    path.write_text(PASSWORDS, encoding="utf-8")
    return path


@pytest.mark.parametrize("option", ["--out", "--summary"])
def test_a_symbolic_link_is_refused_and_with_force_only_the_link_is_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], system_file: Path, option: str
) -> None:
    link = tmp_path / "link"
    link.symlink_to(system_file)

    assert _plan_naming(link, option) == 2
    line = _only_line(capsys.readouterr().err)
    assert line.startswith(f"error: {link}: {option} is a symbolic link;")
    assert link.is_symlink()
    assert not (tmp_path / "schedule.csv").exists()

    assert _plan_naming(link, option, "--force") == 0
    assert not link.is_symlink()
    assert link.is_file()
    assert system_file.read_text(encoding="utf-8") == PASSWORDS


@pytest.mark.parametrize("option", ["--out", "--summary"])
def test_a_file_that_is_not_ours_needs_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], system_file: Path, option: str
) -> None:
    theirs = system_file
    what = "v2ghub schedule" if option == "--out" else "v2ghub plan summary"

    assert _plan_naming(theirs, option) == 2
    assert _only_line(capsys.readouterr().err) == (
        f"error: {theirs}: {option} exists and is not a {what}; not replaced (remove it, "
        "name another file, or give --force to replace it)"
    )
    assert theirs.read_text(encoding="utf-8") == PASSWORDS
    assert not (tmp_path / "schedule.csv").exists()  # neither file is written

    assert _plan_naming(theirs, option, "--force") == 0
    written = theirs.read_text(encoding="utf-8")
    if option == "--out":
        assert written.startswith(SCHEDULE_HEADER)
    else:
        assert json.loads(written)["planner"] == "tou"
    assert oct(theirs.stat().st_mode & 0o777) == oct(files.OUTPUT_FILE_MODE)


def test_an_earlier_plan_and_an_empty_file_are_replaced_without_force(tmp_path: Path) -> None:
    out, summary = tmp_path / "schedule.csv", tmp_path / "summary.json"
    out.write_text(SCHEDULE_HEADER + "old,2025-07-16T00:00:00+08:00,1.0000\n", encoding="utf-8")
    summary.touch()
    assert _plan(out, "--summary", str(summary)) == 0
    assert "old," not in out.read_text(encoding="utf-8")
    first = summary.read_text(encoding="utf-8")
    assert json.loads(first)["sessions"] == 13
    # And again: the files just written are recognised as ours.
    assert _plan(out, "--summary", str(summary), "--planner", "uncontrolled") == 0
    assert json.loads(summary.read_text(encoding="utf-8"))["planner"] == "uncontrolled"
    assert _leftovers(tmp_path) == []


def test_a_schedule_header_in_a_spreadsheets_encoding_is_ours(tmp_path: Path) -> None:
    out = tmp_path / "schedule.csv"
    out.write_bytes(b"\xef\xbb\xbfsession_id,start,power_kw\r\na,2025-07-16T00:00:00Z,1\r\n")
    assert _plan(out) == 0
    assert out.read_text(encoding="utf-8").startswith(SCHEDULE_HEADER)


def test_a_folder_that_cannot_be_made_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Nobody, root included, can make a folder in /proc: the disk is outside the program.
    out = Path("/proc/v2ghub-no-such-folder/schedule.csv")
    assert _plan(out) == 2
    line = _only_line(capsys.readouterr().err)
    assert line.startswith(f"error: {out.parent}: cannot make the folder (")


@pytest.mark.parametrize(
    ("code", "reason"),
    [(errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system")],
)
def test_a_full_or_read_only_disk_keeps_the_old_plan(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    code: int,
    reason: str,
) -> None:
    out, summary = tmp_path / "schedule.csv", tmp_path / "summary.json"
    assert _plan(out, "--summary", str(summary)) == 0
    old = out.read_bytes(), summary.read_bytes()

    def disk_full(descriptor: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", disk_full)  # the disk fills as the files are synced
    assert _plan(out, "--summary", str(summary), "--planner", "uncontrolled") == 2
    assert _only_line(capsys.readouterr().err) == (
        f"error: {out}, {summary}: cannot write the file ({reason})"
    )
    assert (out.read_bytes(), summary.read_bytes()) == old
    assert _leftovers(tmp_path) == []


def test_a_file_that_appears_while_writing_is_not_lost(tmp_path: Path) -> None:
    out = tmp_path / "schedule.csv"
    rule = Replaces(what="v2ghub schedule", is_ours=lambda head: head.startswith(b"session"))
    with (  # noqa: PT012 - the file appears inside the block
        pytest.raises(InputError, match="exists and is not a v2ghub schedule"),
        atomic_text(out, rule) as handle,
    ):
        handle.write(SCHEDULE_HEADER)
        out.write_text("someone else's\n", encoding="utf-8")
    assert out.read_text(encoding="utf-8") == "someone else's\n"
    assert _leftovers(tmp_path) == []


@given(st.dictionaries(st.sampled_from(["planner", "sessions", "x"]), st.integers()))
def test_a_json_summary_is_recognised_by_its_keys(document: dict[str, int]) -> None:
    is_ours = json_object_with(("planner", "sessions"))
    has_both = {"planner", "sessions"} <= document.keys()
    assert is_ours(json.dumps(document).encode()) == has_both


def test_a_folder_is_named_as_such(tmp_path: Path) -> None:
    rule = Replaces(what="v2ghub schedule", is_ours=lambda head: True, force=True, option="--out")
    with pytest.raises(InputError, match=r"--out is a folder; give the name of the file"):
        check_replaceable(tmp_path, rule)


# simulate: the same mistakes, refused before the run or said in one line.


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seed", "-1"], "argument --seed: must be a whole number >= 0, got '-1'"),
        (["--seed", "1.5"], "argument --seed: not a whole number: '1.5'"),
        (["--planners", "tou,tou"], "argument --planners: tou is named twice"),
        (["--planners", " , "], "argument --planners: no name in ' , '"),
        (["--cities", "Shenzhen,shenzhen"], "argument --cities: shenzhen is named twice"),
        (["--cities", "Kunming,,Shenzhen,kunming,"], "argument --cities: kunming is named twice"),
    ],
)
def test_simulate_refuses_bad_options_at_parsing(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_code:
        build_parser().parse_args(["simulate", *argv])
    assert exit_code.value.code == 2
    assert message in capsys.readouterr().err


def test_plan_refuses_a_negative_option_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert _plan(Path("never.csv"), "--degradation-cny-per-kwh", "-1") == 2
    assert _only_line(capsys.readouterr().err) == (
        "error: --degradation-cny-per-kwh: must be a finite number >= 0, got '-1'"
    )


def _simulate(out: Path) -> int:
    options = ["--quiet", "--vehicles", "10", "--cities", "Shenzhen", "--planners", "tou"]
    return main(["simulate", *options, "--out", str(out)])


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_simulate_on_a_full_or_read_only_disk_is_one_line_and_keeps_the_old_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], code: int
) -> None:
    out = tmp_path / "out"
    assert _simulate(out) == 0
    old = (out / "summary.json").read_bytes()

    from v2ghub.report import outputs  # noqa: PLC0415 - the seam where the disk fills

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(outputs, "write_curves_csv", disk_full)
    capsys.readouterr()
    assert _simulate(out) == 2
    assert _only_line(capsys.readouterr().err) == (
        f"error: {out}: cannot write here ({os.strerror(code)})"
    )
    assert (out / "summary.json").read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left


def test_simulate_where_no_folder_can_be_made_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    out = Path("/proc/v2ghub-no-such-folder/out")
    assert _simulate(out) == 2
    assert _only_line(capsys.readouterr().err).startswith(f"error: {out}: cannot write here (")


# settle: the files it names inside --out are written as plan's are.


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulate run to settle (read only)."""
    run = tmp_path_factory.mktemp("small") / "run"
    assert _simulate(run) == 0
    return run


@pytest.mark.parametrize("name", ["statements.csv", "settlement.json"])
def test_settle_never_writes_through_a_symbolic_link(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    system_file: Path,
    small_run: Path,
    name: str,
) -> None:
    run = small_run
    out = tmp_path / "settled"
    out.mkdir()
    (out / name).symlink_to(system_file)
    capsys.readouterr()
    assert main(["settle", str(run), "--out", str(out)]) == 2
    assert _only_line(capsys.readouterr().err) == (
        f"error: {out / name}: is a symbolic link; v2ghub writes only regular files"
    )
    assert system_file.read_text(encoding="utf-8") == PASSWORDS
    assert sorted(p.name for p in out.iterdir()) == [name]  # nothing settled, no ledger

    (out / name).unlink()
    assert main(["settle", str(run), "--out", str(out)]) == 0
    assert (out / "statements.csv").read_text(encoding="utf-8").startswith('"period",')
    assert json.loads((out / "settlement.json").read_text(encoding="utf-8"))["balanced"] is True
    assert _leftovers(out) == []


def test_statement_where_no_folder_can_be_made_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], small_run: Path
) -> None:
    settled = tmp_path / "settled"
    assert main(["settle", str(small_run), "--out", str(settled)]) == 0
    out = Path("/proc/v2ghub-no-such-folder/statement")
    ledger = ["--ledger", str(settled / "ledger.sqlite"), "--day", "2025-07-16"]
    capsys.readouterr()
    assert main(["statement", *ledger, "--out", str(out)]) == 2
    assert _only_line(capsys.readouterr().err).startswith(f"error: {out}: cannot write here (")


def test_a_negative_seed_in_a_scenario_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "scenario.toml"
    scenario.write_text("[simulation]\nseed = -1\n", encoding="utf-8")
    assert main(["simulate", "--quiet", "--scenario", str(scenario), "--out", "never"]) == 2
    assert _only_line(capsys.readouterr().err) == (
        f"error: {scenario}: field simulation.seed: Input should be greater than or equal to 0 "
        "(got -1)"
    )


@pytest.mark.parametrize(
    ("ledger", "problem"),
    [
        ("text", "cannot read the ledger (file is not a database)"),
        ("database", "is not a v2ghub ledger of schema version 1"),
    ],
)
def test_settle_posts_only_into_a_ledger(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    *,
    system_file: Path,
    small_run: Path,
    ledger: str,
    problem: str,
) -> None:
    path = system_file
    if ledger == "database":  # another program's SQLite database
        path = tmp_path / "other.sqlite"
        with contextlib.closing(sqlite3.connect(path)) as other:
            other.execute("CREATE TABLE notes (text TEXT)")
            other.commit()
    before = path.read_bytes()
    out = tmp_path / "settled"
    capsys.readouterr()
    assert main(["settle", str(small_run), "--out", str(out), "--ledger", str(path)]) == 2
    assert _only_line(capsys.readouterr().err) == f"error: {path}: {problem}"
    assert path.read_bytes() == before
    assert not out.exists()


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        OSError("Error writing bytes to file. Detail: [errno 28] No space left on device"),
    ],
)
def test_a_full_disk_is_said_in_the_systems_words(tmp_path: Path, error: OSError) -> None:
    with pytest.raises(InputError) as refused, writing_into(tmp_path):
        raise error
    assert str(refused.value) == f"{tmp_path}: cannot write here (No space left on device)"
