"""Every ``usseg`` sub-command answers bad data with one error line and exit 2, never a Python traceback.

Each case runs the real CLI entry point (:func:`usseg_models.cli.main.main`) in-process on a missing path, an empty
folder, a folder of junk files, or a junk file where a checkpoint / image is expected. An exception escaping
``main`` fails the test (that is what a user would see as a traceback).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from usseg_models.cli.main import main


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad_input")
    empty = root / "empty"
    empty.mkdir()
    junk_dir = root / "junk"
    (junk_dir / "clip01").mkdir(parents=True)
    (junk_dir / "scan.dcm").write_text("not a DICOM file\n")
    (junk_dir / "frame.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)  # a PNG cut after its signature
    (junk_dir / "clip01" / "0001.jpg").write_bytes(b"\xff\xd8\xff")
    junk_file = root / "junk.pt"
    junk_file.write_text("not a checkpoint\n")
    a_file = root / "a_file.txt"
    a_file.write_text("x\n")
    return {"missing": root / "no_such_path", "empty": empty, "junk_dir": junk_dir, "junk_file": junk_file,
            "a_file": a_file, "out": root / "out"}


@pytest.fixture(scope="module")
def good_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Random-weight ``small`` checkpoints (a bad *data* argument must be reported, not a checkpoint problem)."""
    from usseg_models.networks.checkpoint import save_checkpoint
    from usseg_models.networks.factory import build_network

    root = tmp_path_factory.mktemp("good_ckpt")
    out = {}
    for net in ("dsanet", "intrasense"):
        out[net] = root / f"{net}.pt"
        save_checkpoint(out[net], build_network(net, "small"), net, "small")
    return out


# (case id, argv template); {name} is replaced by the paths of the fixtures above
CASES = [
    ("info-missing", ["info", "{missing}"]),
    ("info-junk-dicom", ["info", "{junk_dir}/scan.dcm"]),
    ("info-cut-png", ["info", "{junk_dir}/frame.png"]),
    ("info-folder", ["info", "{empty}"]),
    ("sample-data-onto-a-file", ["sample-data", "--cines", "1", "--images", "0", "{a_file}"]),
    ("train-dsanet-missing", ["train", "dsanet", "--data", "{missing}", "--out", "{out}/t1"]),
    ("train-dsanet-empty", ["train", "dsanet", "--data", "{empty}", "--out", "{out}/t2"]),
    ("train-dsanet-junk", ["train", "dsanet", "--data", "{junk_dir}", "--out", "{out}/t3"]),
    ("train-dsanet-file", ["train", "dsanet", "--data", "{a_file}", "--out", "{out}/t4"]),
    ("train-intrasense-empty", ["train", "intrasense", "--data", "{empty}", "--out", "{out}/t5"]),
    ("train-intrasense-junk", ["train", "intrasense", "--data", "{junk_dir}", "--out", "{out}/t6"]),
    ("evaluate-dsanet-junk-checkpoint", ["evaluate", "dsanet", "--checkpoint", "{junk_file}", "--data", "{empty}"]),
    ("evaluate-dsanet-missing-checkpoint", ["evaluate", "dsanet", "--checkpoint", "{missing}", "--data", "{empty}"]),
    ("evaluate-dsanet-empty-data", ["evaluate", "dsanet", "--checkpoint", "{ckpt_dsanet}", "--data", "{empty}",
                                    "--out", "{out}/e1"]),
    ("evaluate-dsanet-junk-data", ["evaluate", "dsanet", "--checkpoint", "{ckpt_dsanet}", "--data", "{junk_dir}",
                                   "--out", "{out}/e2"]),
    ("evaluate-intrasense-junk-data", ["evaluate", "intrasense", "--checkpoint", "{ckpt_intrasense}", "--data",
                                       "{junk_dir}", "--out", "{out}/e3"]),
    ("evaluate-intrasense-wrong-network", ["evaluate", "intrasense", "--checkpoint", "{ckpt_dsanet}", "--data",
                                           "{junk_dir}", "--out", "{out}/e4"]),
    ("predict-dsanet-junk-checkpoint", ["predict", "dsanet", "--checkpoint", "{junk_file}", "--input",
                                        "{junk_dir}", "--output", "{out}/p1"]),
    ("predict-dsanet-missing-input", ["predict", "dsanet", "--checkpoint", "{ckpt_dsanet}", "--input", "{missing}",
                                      "--output", "{out}/p2"]),
    # predict goes through every input and exits with the number that failed (1 here), each on a FAILED line
    ("predict-dsanet-junk-input", ["predict", "dsanet", "--checkpoint", "{ckpt_dsanet}", "--input",
                                   "{junk_dir}/scan.dcm", "--output", "{out}/p3"]),
    ("predict-dsanet-empty-folder", ["predict", "dsanet", "--checkpoint", "{ckpt_dsanet}", "--input", "{empty}",
                                     "--output", "{out}/p4"]),
    ("predict-intrasense-cut-png", ["predict", "intrasense", "--checkpoint", "{ckpt_intrasense}", "--input",
                                    "{junk_dir}/frame.png", "--output", "{out}/p5"]),
    ("bench-loop-junk-data", ["bench", "loop", "--data", "{junk_dir}", "--out", "{out}/b1"]),
    ("bench-loop-missing-data", ["bench", "loop", "--data", "{missing}", "--out", "{out}/b2"]),
    ("bench-refine-junk-data", ["bench", "refine", "--data", "{junk_dir}", "--untrained", "--out", "{out}/b3"]),
    ("bench-refine-empty-data", ["bench", "refine", "--data", "{empty}", "--untrained", "--out", "{out}/b4"]),
]


PROGRESS = re.compile(r"\d+%\|")  # a tqdm bar's line
PER_INPUT = {"predict-dsanet-junk-input", "predict-intrasense-cut-png"}


@pytest.mark.parametrize("case,argv", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(case, argv, bad, good_checkpoints, capsys):
    paths = {**{k: str(v) for k, v in bad.items()}, **{f"ckpt_{k}": str(v) for k, v in good_checkpoints.items()}}
    args = [a.format(**paths) for a in argv]
    try:
        rc = main(args)
    except SystemExit as exc:  # argparse's own usage errors exit 2 too
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == (1 if case in PER_INPUT else 2), f"exit {rc} for {args}; stderr: {err[-2000:]}"
    assert "Traceback" not in err, err[-2000:]
    lines = [line.strip() for line in err.replace("\r", "\n").splitlines()
             if line.strip() and not line.startswith(("INFO ", "WARNING ")) and not PROGRESS.search(line)]
    if case in PER_INPUT:
        failed = [line for line in lines if "FAILED" in line]
        assert len(failed) == 1 and args[args.index("--input") + 1] in failed[0], lines
    else:
        assert len(lines) == 1 and lines[0].startswith("usseg"), lines
