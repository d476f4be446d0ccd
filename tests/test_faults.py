"""Every row of the reliability table (issue 16): a broken input or fault gives a clear error, a counted
and warned exclusion, or the correct result; and a marker planted in every text-bearing place of a
private cohort reaches no message and no display.

Small cohorts exported in the official layouts and then broken on purpose, as a new user would.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import shutil
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

matplotlib.use("Agg")

import relink_lib.cohorts.stage as stage  # noqa: E402
from relink_lib import cache  # noqa: E402
from relink_lib.cohorts import export, load_chexpert_plus, load_folder, load_mimic_cxr, make_synthetic_cohort  # noqa: E402
from relink_lib.cohorts.phi import display_frame, render_pairs_html, show_pairs  # noqa: E402
from relink_lib.profiles import get_profile, validate_overrides  # noqa: E402

META = "mimic-cxr-2.0.0-metadata.csv.gz"
LABELS = "mimic-cxr-2.0.0-chexpert.csv.gz"
MARKER = "ZQXMARKER"  # a string that appears nowhere but where the test plants it


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic_cohort(30, image_size=32, seed=11)


@pytest.fixture(scope="module")
def mimic_dir(tmp_path_factory, synthetic) -> Path:
    return export(synthetic, tmp_path_factory.mktemp("mimic") / "root")


@pytest.fixture
def mimic(tmp_path: Path, mimic_dir: Path) -> Path:
    return Path(shutil.copytree(mimic_dir, tmp_path / "root"))


def _reports(root: Path) -> list[Path]:
    return sorted((root / "mimic-cxr-reports" / "files").rglob("*.txt"))


def _real_params(tmp_path: Path, root: Path) -> dict:
    os.environ["RELINK_CACHE"] = str(tmp_path / "cache")
    params = get_profile(
        "smoke", {"data": {"mimic_cxr_root": str(root)}, "cohort": {"source": "real", "image_size": 32}}
    )
    return params


# ---------------------------------------------------------------- row 1: stale real-cohort cache
def test_cache_key_covers_every_report_and_image(tmp_path, mimic, monkeypatch):
    monkeypatch.setenv("RELINK_CACHE", str(tmp_path / "cache"))
    params = _real_params(tmp_path, mimic)
    reports = _reports(mimic)
    aside = tmp_path / "aside"
    aside.mkdir()
    for p in reports[:15]:
        shutil.move(str(p), str(aside / p.name))
    with pytest.warns(UserWarning, match=r"15 of 30 studies \(50%\) left out.*'no_report': 15"):
        first = stage.get_cohort(params)
    assert len(first) == 15
    for p in reports[:15]:
        shutil.move(str(aside / p.name), str(p))
    restored = stage.get_cohort(params)
    assert len(restored) == 30 and restored.summary["cache_key"] != first.summary["cache_key"]
    # an edited report (same file, new text) is a new entry with the new text
    target = reports[0]
    study = "".join(target.stem[1:])
    target.write_text("FINDINGS: Edited findings about the left lung base.\nIMPRESSION: Edited impression.\n")
    edited = stage.get_cohort(params)
    row = edited.pairs.index[edited.pairs["study_id"] == study][0]
    assert edited.pairs["text"].iloc[row] == "Edited findings about the left lung base. Edited impression."
    # an image replaced (other size) also invalidates
    img = next((mimic / "files").rglob("*.jpg"))
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(img)
    assert stage.get_cohort(params).summary["cache_key"] != edited.summary["cache_key"]


# ---------------------------------------------------------------- row 2: 0 usable pairs
@pytest.mark.parametrize(
    "breakage,reason,looked",
    [
        ("reports_too_deep", "no_report", "mimic-cxr-reports/files/pXX/pSUBJECT/sSTUDY.txt"),
        ("images_missing", "missing_image", "files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg"),
        ("all_lateral", "no_frontal_image", "metadata.csv.gz (ViewPosition"),
    ],
)
def test_zero_pairs_is_an_error_naming_the_reason_and_path_and_nothing_is_cached(
    tmp_path, mimic, monkeypatch, breakage, reason, looked
):
    monkeypatch.setenv("RELINK_CACHE", str(tmp_path / "cache"))
    if breakage == "reports_too_deep":
        reports = mimic / "mimic-cxr-reports"
        shutil.move(str(reports), str(tmp_path / "r"))
        reports.mkdir()
        shutil.move(str(tmp_path / "r"), str(reports / "mimic-cxr-reports"))
    elif breakage == "images_missing":
        for jpg in (mimic / "files").rglob("*.jpg"):
            jpg.unlink()
    else:
        meta = pd.read_csv(mimic / META, dtype=str)
        meta["ViewPosition"] = "LATERAL"
        meta.to_csv(mimic / META, index=False)
    with pytest.raises(
        ValueError,
        match=rf"0 of 30 studies usable: largest exclusion reason '{reason}' \(30 of 30\)"
        rf".*looked in .*{looked.replace('(', '[(]')}",
    ):
        load_mimic_cxr(mimic)
    with pytest.raises(ValueError, match="0 of 30 studies usable"):
        stage.get_cohort(_real_params(tmp_path, mimic))
    entries = list((tmp_path / "cache").rglob(".complete"))
    assert entries == []  # the empty cohort was not cached


# ---------------------------------------------------------------- rows 3-4: folder CSV split and exclusions
def _folder(tmp_path: Path, n: int = 8, ext: str = ".png") -> pd.DataFrame:
    for i in range(n):
        Image.fromarray(np.full((16, 16), 20 * i, np.uint8)).save(tmp_path / f"im{i}{ext}")
    return pd.DataFrame(
        {
            "patient_id": [f"p{i // 2}" for i in range(n)],
            "image_path": [f"im{i}.png" for i in range(n)],
            "text": [f"Report number {i}." for i in range(n)],
            "split": ["train", "train", "val", "val", "test", "test", "train", "train"][:n],
        }
    )


def test_blank_given_split_is_an_error_naming_the_row(tmp_path):
    frame = _folder(tmp_path)
    frame.loc[3, "split"] = np.nan
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    with pytest.raises(
        ValueError, match=r"pairs.csv: row 3 column 'split' is blank; a given split column is used as given"
    ):
        load_folder(tmp_path / "pairs.csv", tmp_path)
    frame.loc[3, "split"] = "holdout"
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    with pytest.raises(ValueError, match=r"row 3 column 'split' is not one of"):
        load_folder(tmp_path / "pairs.csv", tmp_path)
    frame.loc[3, "split"] = "val"
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    assert load_folder(tmp_path / "pairs.csv", tmp_path).pairs["split"].tolist() == frame["split"].tolist()  # as given


def test_every_row_excluded_is_an_error_and_a_partial_mismatch_warns(tmp_path):
    frame = _folder(tmp_path, ext=".jpg")  # .jpg on disk, .png in the CSV
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    with pytest.raises(ValueError, match=r"0 of 8 rows usable: largest exclusion reason 'missing_image' \(8 of 8\)"):
        load_folder(tmp_path / "pairs.csv", tmp_path)
    frame.drop(columns=["split"]).to_csv(tmp_path / "nosplit.csv", index=False)
    with pytest.raises(ValueError, match="0 of 8 rows usable"):  # not an IndexError from the random split
        load_folder(tmp_path / "nosplit.csv", tmp_path)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "im0.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "im1.png")
    with pytest.warns(UserWarning, match=r"6 of 8 rows \(75%\) left out, more than 5%: \{'missing_image': 6\}"):
        c = load_folder(tmp_path / "pairs.csv", tmp_path)
    assert len(c) == 2 and c.summary["excluded"]["missing_image"] == 6


# ---------------------------------------------------------------- rows 5-6: text never leaves
def test_private_cohort_extra_free_text_column_is_not_displayed(tmp_path):
    frame = _folder(tmp_path).assign(notes=[f"{MARKER} note {i}" for i in range(8)])
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    c = load_folder(tmp_path / "pairs.csv", tmp_path)
    shown = display_frame(c, range(4), columns=["patient_id", "notes", "text", "split"])
    assert list(shown.columns) == ["patient_id", "split"]
    assert MARKER not in display_frame(c).to_html()


@pytest.mark.parametrize("column", ["split", "Edema", "patient_id"])
def test_misaligned_csv_does_not_echo_report_text(tmp_path, column):
    frame = _folder(tmp_path).assign(Edema=[1, 0, np.nan, 1, 0, 0, 1, 1])
    frame[column] = frame[column].astype(object)
    frame.loc[2, column] = f"{MARKER} the report text slid into this column"
    if column == "patient_id":  # a clash of duplicate keys carrying text in the other columns
        frame.loc[2, "patient_id"] = "p1"
        frame.loc[3, "image_path"] = "im2.png"
        frame.loc[3, "text"] = f"{MARKER} another report"
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    with pytest.raises(ValueError) as err:
        load_folder(tmp_path / "pairs.csv", tmp_path)
    assert "row" in str(err.value) and MARKER not in str(err.value)


# ---------------------------------------------------------------- row 7: paths outside the root
@pytest.mark.parametrize("bad", ["../outside.png", "/etc/passwd", "sub/../../x.png"])
def test_paths_outside_the_dataset_root_are_errors(tmp_path, bad):
    frame = _folder(tmp_path)
    frame.loc[1, "image_path"] = bad
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    with pytest.raises(ValueError, match=r"row 1 column 'image_path' is an absolute path or contains '\.\.'"):
        load_folder(tmp_path / "pairs.csv", tmp_path)


def test_chexpert_paths_outside_the_root_are_errors(tmp_path, synthetic):
    ext = make_synthetic_cohort(20, image_size=32, seed=3, site="external")
    root = export(ext, tmp_path / "cx", layout="chexpert-plus")
    table = pd.read_csv(root / "df_chexpert_plus_240401.csv", dtype=str)
    table.loc[4, "path_to_image"] = "../../elsewhere/view1_frontal.jpg"
    table.to_csv(root / "df_chexpert_plus_240401.csv", index=False)
    with pytest.raises(ValueError, match=r"row 4 column 'path_to_image' is an absolute path or contains"):
        load_chexpert_plus(root)


# ---------------------------------------------------------------- row 8: nested override typo
def test_nested_override_typo_is_refused():
    with pytest.raises(ValueError, match=r"unknown key 'dp.target_eps' \(did you mean 'target_epsilon'\?\)"):
        validate_overrides("ci", {"dp": {"target_eps": 8}})


# ---------------------------------------------------------------- row 9: DP configuration
def test_dp_configuration_faults():
    import torch
    from torch import nn

    from relink_lib.dp import DPConfig, train_heads

    g = torch.Generator().manual_seed(0)
    x, t, bank = torch.randn(40, 6, generator=g), torch.randn(40, 5, generator=g), torch.randn(8, 5, generator=g)
    ih, th = nn.Linear(6, 3, bias=False), nn.Linear(5, 3, bias=False)
    for delta in (0.5, 1 / 40):
        with pytest.raises(ValueError, match=r"DPConfig.delta=.*1/n_private = 1/40"):
            train_heads(x, t, ih, th, bank_text_feats=bank, config=DPConfig(delta=delta, epochs=1, batch_size=10))
    with pytest.raises(ValueError, match="DPConfig.lr: expected a finite value"):
        DPConfig(lr=float("inf"))
    with pytest.raises(ValueError, match="DPConfig.epochs: expected a finite value"):
        DPConfig(epochs=float("inf"))
    with pytest.raises(FloatingPointError, match="NaN or inf weights"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            train_heads(
                x,
                t,
                ih,
                th,
                bank_text_feats=bank,
                config=DPConfig(target_epsilon=None, epochs=2, batch_size=10, lr=3e38, optimizer="sgd"),
            )


# ---------------------------------------------------------------- row 10: two writers of one key
def _writer(root: str, barrier, out) -> None:
    def build(tmp: Path) -> None:
        (tmp / "big.bin").write_bytes(os.urandom(1 << 16))
        barrier.wait()  # both writers are inside build at once

    try:
        final = cache.cached_dir(root, "step", {"k": 1}, build)
        out.put(("ok", len((final / "big.bin").read_bytes())))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        out.put(("error", repr(exc)))


def test_two_processes_writing_one_cache_key(tmp_path):
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=120)
    assert results == [("ok", 1 << 16)] * 2
    assert [p.name for p in (tmp_path / "step").iterdir()] == [cache.content_hash({"k": 1})]


# ---------------------------------------------------------------- row 11: killed run, permissions
def test_killed_run_leaves_an_orphan_that_the_next_run_removes(tmp_path):
    code = (
        "import os, sys; from relink_lib import cache\n"
        "with cache.atomic_dir(sys.argv[1]) as tmp:\n"
        "    (tmp / 'half').write_text('x')\n"
        "    os._exit(9)\n"
    )
    final = tmp_path / "step" / "key"
    subprocess.run([sys.executable, "-c", code, str(final)], check=False)
    assert [p.name.split(".tmp-")[0] for p in (tmp_path / "step").iterdir()] == [".key"]  # the orphan
    cache.cached_dir(tmp_path, "step", {"other": 1}, lambda out: (out / "ok").write_text("1"))
    assert not [p for p in (tmp_path / "step").iterdir() if ".tmp-" in p.name]


def test_results_and_cache_get_normal_permissions(tmp_path, monkeypatch):
    from relink_lib.results import write_results

    monkeypatch.setenv("RELINK_RESULTS", str(tmp_path / "results"))
    old = os.umask(0o022)
    try:
        path = write_results(
            get_profile("smoke"), "threat_model", {"x": 1}, cohort="none", model="none", wall_time_s=0.0
        )
        entry = cache.cached_dir(tmp_path / "cache", "step", {"k": 1}, lambda out: (out / "v").write_text("1"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(Path(path).stat().st_mode) == 0o644
    assert stat.S_IMODE(entry.stat().st_mode) == 0o755


# ---------------------------------------------------------------- row 12: non-UTF-8 reports
def test_non_utf8_reports_are_a_counted_exclusion(mimic):
    reports = _reports(mimic)
    reports[0].write_bytes("FINDINGS: Opacit\u00e9 basale droite.\nIMPRESSION: Pneumonie.\n".encode("latin-1"))
    reports[1].write_bytes("FINDINGS: Clear lungs.\nIMPRESSION: Normal.\n".encode("utf-16"))
    reports[2].write_bytes("\ufeffFINDINGS: Clear lungs.\nIMPRESSION: Normal.\n".encode("utf-8"))  # a BOM is fine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = load_mimic_cxr(mimic)
    ex = c.summary["excluded"]
    assert ex["undecodable_report"] == 2 and ex["empty_report"] == 0 and len(c) == 28
    assert not any("\ufffd" in t for t in c.pairs["text"])


# ---------------------------------------------------------------- row 13: bad --overrides in the CLI
def test_bad_overrides_stop_the_cli_before_a_kernel(tmp_path, monkeypatch):
    from relink_lib.cli import main

    monkeypatch.setenv("RELINK_ROOT", str(Path(__file__).resolve().parent.parent))
    with pytest.raises(SystemExit, match=r"--overrides: unknown key 'audit.n_bot'"):
        main(["run", "notebooks/04_audit.py", "--profile", "smoke", "--overrides", '{"audit": {"n_bot": 3}}'])
    assert not list(Path("_build").glob("executed/smoke/.04_audit.running.ipynb"))


# ---------------------------------------------------------------- the marker test
def _plant_everywhere(root: Path) -> None:
    """A marker in every text-bearing place of the MIMIC layout: every section of every report."""
    for i, p in enumerate(_reports(root)):
        p.write_text(
            f"EXAMINATION: {MARKER} exam\nINDICATION: {MARKER} ind\nFINDINGS: {MARKER} finding {i}.\n"
            f"IMPRESSION: {MARKER} impression {i}.\n"
        )


def _messages(fn) -> list[str]:
    """The error message and every warning of ``fn()``."""
    out: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - the message is what is checked
            out.append(f"{type(exc).__name__}: {exc}")
    out += [str(w.message) for w in caught]
    return out


def test_marker_reaches_no_message_and_no_display(tmp_path, mimic):
    _plant_everywhere(mimic)
    private = load_mimic_cxr(mimic)
    assert not private.public and MARKER in private.pairs["text"].iloc[0]  # planted where the text lives
    texts: list[str] = [repr(private), str(private.summary)]
    texts.append(display_frame(private).to_html())
    texts.append(display_frame(private, columns=list(private.pairs.columns)).to_string())
    texts.append(render_pairs_html(private, [0, 1, 2]))
    fig = show_pairs(private, [0, 1])
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format="svg")
    texts.append(buf.getvalue())
    # every loader error path, with the marker in the cells it could echo
    labels = pd.read_csv(mimic / LABELS, dtype=str)
    bad_label = labels.copy()
    bad_label.loc[3, "Edema"] = f"{MARKER} text in a label"
    bad_label.to_csv(mimic / LABELS, index=False)
    texts += _messages(lambda: load_mimic_cxr(mimic))
    clash = pd.concat([labels, labels.iloc[[0]].assign(Edema="-1.0" if labels["Edema"].iloc[0] != "-1.0" else "1.0")])
    clash.to_csv(mimic / LABELS, index=False)
    texts += _messages(lambda: load_mimic_cxr(mimic))
    labels.to_csv(mimic / LABELS, index=False)
    split = pd.read_csv(mimic / "mimic-cxr-2.0.0-split.csv.gz", dtype=str)
    split.assign(split=[f"{MARKER}"] + list(split["split"].iloc[1:])).to_csv(
        mimic / "mimic-cxr-2.0.0-split.csv.gz", index=False
    )
    texts += _messages(lambda: load_mimic_cxr(mimic))
    split.to_csv(mimic / "mimic-cxr-2.0.0-split.csv.gz", index=False)
    for p in _reports(mimic)[:10]:
        p.write_bytes(f"FINDINGS: {MARKER} \u00e9\n".encode("latin-1"))
    texts += _messages(lambda: load_mimic_cxr(mimic))  # undecodable: counted and warned
    for p in _reports(mimic):
        p.unlink()
    texts += _messages(lambda: load_mimic_cxr(mimic))  # 0 usable pairs
    # the folder loader: marker in text, findings, impression, notes and misaligned cells
    folder = tmp_path / "folder"
    folder.mkdir()
    frame = _folder(folder).assign(
        findings=f"{MARKER} f", impression=f"{MARKER} i", notes=f"{MARKER} n", Edema=[1.0] * 8
    )
    frame.to_csv(folder / "ok.csv", index=False)
    fc = load_folder(folder / "ok.csv", folder)
    texts += [display_frame(fc).to_html(), repr(fc), render_pairs_html(fc, [0, 1])]
    for col in ("split", "Edema", "image_path"):
        bad = frame.copy().astype({col: object})
        bad.loc[5, col] = f"{MARKER} misaligned"
        bad.to_csv(folder / "bad.csv", index=False)
        texts += _messages(lambda: load_folder(folder / "bad.csv", folder))
    frame.assign(text="").to_csv(folder / "empty.csv", index=False)
    texts += _messages(lambda: load_folder(folder / "empty.csv", folder))
    leaked = [t[:80] for t in texts if MARKER in t]
    assert not leaked, f"marker leaked in {len(leaked)} message(s)/display(s): {leaked}"
    assert sum("row" in t for t in texts) >= 4  # the error paths ran and named rows


def test_a_profile_key_in_overrides_is_refused_and_names_only_known_profiles() -> None:
    import pytest

    from relink_lib.config import Profile
    from relink_lib.profiles import get_profile, validate_overrides

    with pytest.raises(ValueError, match="'profile' cannot be overridden"):
        get_profile("smoke", {"profile": "paper"})
    with pytest.raises(ValueError, match="'profile' cannot be overridden"):
        validate_overrides("smoke", {"profile": "../../etc"})
    params = get_profile("smoke").to_params()
    with pytest.raises(ValueError, match=r"params\['profile'\]='\.\./x': expected one of smoke, ci, default, paper"):
        Profile.from_params({**params, "profile": "../x"})
    with pytest.raises(ValueError, match=r"params\['seed'\]=-1: expected an integer >= 0"):
        Profile.from_params({**params, "seed": -1})


def test_ladder_overrides_naming_no_rung_or_no_field_are_refused() -> None:
    import pytest

    from relink_lib.models.ladder import rung_specs
    from relink_lib.profiles import get_profile

    with pytest.raises(ValueError, match=r"params\['ladder'\]\['overrides'\]: unknown rung 'full-report'"):
        rung_specs(get_profile("smoke", {"ladder": {"overrides": {"full-report": {"epochs": 2.0}}}}))
    with pytest.raises(ValueError, match=r"\['full-reports'\]: unknown field 'epoch'"):
        rung_specs(get_profile("smoke", {"ladder": {"overrides": {"full-reports": {"epoch": 2.0}}}}))
    assert rung_specs(get_profile("ci"))[-1].epochs == 24.0  # a real override still applies


def test_config_refuses_a_cohort_too_large_for_memory_and_an_unknown_audit_device() -> None:
    import pytest

    from relink_lib.profiles import get_profile

    with pytest.raises(ValueError, match=r"n_pairs.*at most 1,048,576 pairs at 128 px"):
        get_profile("default", {"cohort": {"n_pairs": 10**9}})
    with pytest.raises(ValueError, match="n_pairs_external"):
        get_profile("default", {"cohort": {"n_pairs_external": 10**9}})
    assert get_profile("default", {"cohort": {"n_pairs": 1_000_000}}).cohort.n_pairs == 1_000_000
    with pytest.raises(ValueError, match=r"device.*'auto', 'cpu', 'cuda' or 'cuda:<index>'"):
        get_profile("smoke", {"audit": {"device": "gpu"}})
    assert get_profile("smoke", {"audit": {"device": "cuda:1"}}).audit.device == "cuda:1"


# --- class 1 of issue 27: ties that survive rounding ------------------------------------------------------------

_TIE_SCRIPT = """
import json, sys
import numpy as np
from relink_lib.audit import relink_audit
rng = np.random.default_rng(3)
img = rng.standard_normal((1500, 512)).astype(np.float32)
rep = np.tile(rng.standard_normal((1, 512)).astype(np.float32), (1500, 1))
t = relink_audit(img, rep, pool_sizes=(10, 100, None), ks=(1, 5), chunk_size=512)
print(json.dumps([float(x) for x in t["lift"]]))
"""


@pytest.mark.parametrize("mode", ["native", "portable"])
def test_a_scorer_that_ties_everything_gets_exactly_chance(mode: str) -> None:
    """Every report embedding the same: every distractor ties the truth, so every lift is exactly 1 (both modes).

    Before the fix the BLAS computed the columns of identical reports along different code paths and the audit
    reported between 0.9x and 1.0x chance here."""
    from relink_lib.numerics import get_mode, kernel_env

    env = kernel_env(get_mode(mode))
    out = subprocess.run([sys.executable, "-c", _TIE_SCRIPT], env=env, capture_output=True, text=True, check=True)
    lifts = [float(x) for x in out.stdout.strip().splitlines()[-1].strip("[]").split(",")]
    assert lifts == pytest.approx([1.0] * 6, rel=1e-9, abs=0)  # exact up to the log-space expectation (~1e-11)


@pytest.mark.parametrize("chunk", [7, 64, 4096])
def test_copies_of_the_true_report_tie_exactly_wherever_they_sit(chunk: int) -> None:
    """Copies of a report, placed in other blocks and at the last column, count as ties of its query and of each
    other, never as better; distinct reports are counted as a float64 brute force counts them."""
    import torch

    from relink_lib.audit.kernel import as_embeddings, count_better_and_tied, find_duplicate_reports

    rng = np.random.default_rng(5)
    m = 600
    img = rng.standard_normal((m, 512)).astype(np.float32)
    rep = (img + 0.8 * rng.standard_normal((m, 512))).astype(np.float32)
    copies = {0: [299, 599], 17: [18], 400: [3]}
    for src, dst in copies.items():
        rep[dst] = rep[src]
    i_t, r_t = as_embeddings(img, "image_emb"), as_embeddings(rep, "report_emb")
    better, tied = count_better_and_tied(i_t, r_t, chunk_size=chunk)
    groups = [[0, 299, 599], [17, 18], [400, 3]]
    expected_tied = np.zeros(m, dtype=np.int64)
    for g in groups:
        expected_tied[g] = len(g) - 1
    np.testing.assert_array_equal(tied, expected_tied)
    sims = i_t.double() @ r_t.double().T
    own = torch.diagonal(sims).unsqueeze(1)
    same = torch.zeros(m, m, dtype=torch.bool)
    for g in groups:
        same[np.ix_(g, g)] = True
    brute_better = ((sims > own) & ~same).sum(dim=1).numpy()
    np.testing.assert_array_equal(better, brute_better)
    dups = find_duplicate_reports(r_t)
    assert dups is not None and sorted(dups.multiplicity.tolist()) == [1] * (m - 7) + [2, 2, 3]


def test_rows_that_share_their_first_bytes_are_not_duplicates() -> None:
    from relink_lib.audit.kernel import find_duplicate_reports

    x = np.zeros((4, 8), dtype=np.float32) + 1.0
    x[1, 7] = 2.0  # same first 16 bytes as row 0, different last value
    x[2, 0] = 3.0
    x[3] = x[0]
    dups = find_duplicate_reports(__import__("torch").from_numpy(x))
    assert dups is not None
    assert dups.unique.tolist() == [0, 1, 2] and dups.inverse.tolist() == [0, 1, 2, 0]
    assert dups.multiplicity.tolist() == [2, 1, 1]
    assert find_duplicate_reports(__import__("torch").from_numpy(np.eye(5, dtype=np.float32))) is None
