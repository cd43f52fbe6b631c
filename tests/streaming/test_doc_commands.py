"""Every `worldstream ...` command line in docs/VIEWER.md and docs/SIMULATOR.md is true:
concrete ones parse (and pass fly's cross-option checks), synopses name only options the
subcommand's --help lists; the bench command's options exist; one headless fly frame
with the teleport options runs."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from streaming.cli import build_parser
from streaming.cli.fly import check_fly_args

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "docs" / "VIEWER.md", ROOT / "docs" / "SIMULATOR.md"]


def doc_commands() -> list[tuple[str, str]]:
    """(doc name, command) for each `worldstream ...` in inline code or a bash block."""
    out = []
    for doc in DOCS:
        text = doc.read_text()
        for block in re.findall(r"```bash\n(.*?)```", text, re.S):
            for line in block.splitlines():
                if line.startswith("worldstream "):
                    out.append((doc.name, line.split("  #")[0].strip()))
        inline = re.sub(r"```.*?```", "", text, flags=re.S)
        for code in re.findall(r"`(worldstream [a-z][^`]*)`", inline):
            out.append((doc.name, " ".join(code.split())))
    return out


COMMANDS = doc_commands()


def test_the_docs_have_commands():
    subs = {shlex.split(c)[1] for _, c in COMMANDS}
    assert {"fly", "serve", "height"} <= subs, subs
    assert any("--teleport" in c and "--agl" in c and "--heading" in c for _, c in COMMANDS)


@pytest.mark.parametrize("doc, cmd", COMMANDS, ids=[f"{d}:{c[:60]}" for d, c in COMMANDS])
def test_documented_command_is_true(doc, cmd, capsys):
    argv = shlex.split(cmd)[1:]
    if "[" in cmd:  # a synopsis: every option it names is one the subcommand has
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args([argv[0], "--help"])
        assert info.value.code == 0
        help_text = capsys.readouterr().out
        named = set(re.findall(r"--[a-z][a-z0-9-]*", cmd))
        missing = {o for o in named if o not in help_text}
        assert not missing, f"{doc}: {cmd} names options `worldstream {argv[0]}` lacks: {missing}"
        return
    if len(argv) == 1:  # the bare subcommand name in prose
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args([argv[0], "--help"])
        assert info.value.code == 0
        return
    args = build_parser().parse_args(argv)  # a bad option exits 2 and fails the test
    if args.command == "fly":
        check_fly_args(args)


def test_bench_viewer_options_in_the_docs_exist():
    text = (ROOT / "docs" / "VIEWER.md").read_text()
    line = re.search(r"`PYTHONPATH=\. python bench/viewer\.py ([^`]*)`", text).group(1)
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "viewer.py"), "--help"], capture_output=True,
                       text=True, timeout=120, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    named = set(re.findall(r"--[a-z][a-z0-9-]*", line)) | {"--world", "--seed", "--agl"}
    assert not {o for o in named if o not in r.stdout}, r.stdout


@pytest.mark.slow
def test_one_headless_frame_with_teleport_heading_pitch_and_agl(tmp_path):
    out = tmp_path / "fly"
    r = subprocess.run([sys.executable, "-m", "streaming.cli", "fly", "--world", "plane", "--seed", "0", "--headless",
                        "--frames", "1", "--size", "64x48", "--error-target-px", "64", "--teleport", "1000,2000,300",
                        "--agl", "--heading", "240", "--pitch", "-5", "--out", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["frames"] == 1 and stats["start"] == [1000.0, 2000.0]
    assert (out / "frame_00000.png").exists()
