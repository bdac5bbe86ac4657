"""`psrlm export`: a real tiny run (both methods, test-time search) exported, and every export loaded back with
`datasets.load_dataset`, `DatasetCard.load` and `ModelCard.load`; the pairs read back equal the pairs each model was
trained on. No network: the Hub is never reached (push-to-hub is checked on the calls it would make)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from psrlm.export import export_run
from psrlm.export.tables import Table, from_row, record_features, to_row, write_dataset
from psrlm.records import (
    JudgeExample,
    PreferencePair,
    ScoreExample,
    SearchTrace,
    StepSolution,
    read_jsonl,
    sha256_file,
)

from .test_iterate import LOOP


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    """The tiny loop of test_iterate (PSRLM and SRLM, M0 -> M1 -> M2) through the CLI, which also writes
    logs/runs.jsonl, plus test-time search on 2 problems."""
    from psrlm.cli import main

    run = tmp_path_factory.mktemp("export") / "tiny"
    sets = sum((["--set", s] for s in [*LOOP, "iterate.eval_tts=2", f"paths.run_dir={run}"]), [])
    assert main(["iterate", *sets]) == 0
    return run


@pytest.fixture(scope="session")
def exported(run_dir, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("exported") / "hf"
    return out, export_run(run_dir, out)


def _load(folder: Path, config: str, cache: Path):
    from datasets import load_dataset

    return load_dataset(str(folder), config, cache_dir=str(cache))


def test_every_dataset_loads_back_with_its_card(exported, tmp_path):
    from huggingface_hub import DatasetCard

    out, index = exported
    kinds = {r["name"].rsplit("-", 1)[1] for r in index["repos"] if r["type"] == "dataset"}
    assert kinds == {"ift", "eft", "ppd", "traces", "eval"}
    for repo in (r for r in index["repos"] if r["type"] == "dataset"):
        folder = out / repo["path"]
        card = DatasetCard.load(folder / "README.md")
        assert card.data.license == "mit" and card.data.psrlm["version"] == index["psrlm_version"]
        infos = card.data.dataset_info if isinstance(card.data.dataset_info, list) else [card.data.dataset_info]
        declared = {i.get("config_name", "default"): i for i in infos}
        assert [c["config_name"] for c in card.data.configs] == sorted(declared)
        for config, info in declared.items():
            ds = _load(folder, config, tmp_path)
            assert {s["name"]: s["num_examples"] for s in info["splits"]} == {k: len(v) for k, v in ds.items()}
            assert [f["name"] for f in info["features"]] == next(iter(ds.values())).column_names
            assert card.data.psrlm["settings"][config], f"{repo['name']}/{config} records no settings"
            for f in ds.values():
                assert len(f) > 0
        assert "One row is" in card.text or "one row is" in card.text


def test_ift_eft_and_traces_read_back_equal_to_the_run_files(run_dir, exported, tmp_path):
    out, index = exported
    data = run_dir / "data"
    ds = _load(out / "datasets" / "tiny-ift", "default", tmp_path)["train"]
    assert [from_row(StepSolution, r) for r in ds] == read_jsonl(data / "ift.jsonl", StepSolution)
    assert ds[0]["completion"].startswith("Step 1:") and ds[0]["question"] in ds[0]["prompt"]
    eft = _load(out / "datasets" / "tiny-eft", "pairwise", tmp_path)
    for split in ("train", "test"):
        assert [from_row(JudgeExample, r) for r in eft[split]] == read_jsonl(data / f"eft_{split}.jsonl", JudgeExample)
    scoring = _load(out / "datasets" / "tiny-eft", "scoring", tmp_path)["train"]
    assert [from_row(ScoreExample, r) for r in scoring] == read_jsonl(data / "srlm_eft_train.jsonl", ScoreExample)
    for method in ("psrlm", "srlm"):
        traces = _load(out / "datasets" / "tiny-traces", f"{method}_it2", tmp_path)["train"]
        assert [from_row(SearchTrace, r) for r in traces] == read_jsonl(run_dir / method / "it2" / "traces.jsonl",
                                                                       SearchTrace)  # fmt: skip
    tts = _load(out / "datasets" / "tiny-traces", "tts_psrlm-M1", tmp_path)["train"]
    assert len(tts) == 2 and json.loads(tts[0]["rounds"])
    eval_m2 = _load(out / "datasets" / "tiny-eval", "psrlm-M2", tmp_path)
    assert set(eval_m2) == {"arith_test", "arith_hard"}
    metrics = json.loads((run_dir / "eval" / "psrlm-M2" / "metrics.json").read_text())
    assert sum(eval_m2["arith_test"]["correct"]) / len(eval_m2["arith_test"]) == metrics["test"]["accuracy"]


def test_pairs_read_back_are_the_pairs_each_model_was_trained_on(run_dir, exported, tmp_path):
    from huggingface_hub import DatasetCard

    out, _ = exported
    folder = out / "datasets" / "tiny-ppd"
    settings = DatasetCard.load(folder / "README.md").data.psrlm["settings"]
    checked = 0
    for manifest_file in sorted((run_dir / "manifests").glob("*-M*.json")):
        manifest = json.loads(manifest_file.read_text())
        for path, digest in manifest["data_files"].items():
            if not path.endswith("pairs.jsonl"):
                continue
            assert sha256_file(Path(path)) == digest  # the file is the one the model trained on
            trained = read_jsonl(Path(path), PreferencePair)
            config = f"{manifest['method']}_it{manifest['iteration']}"
            rows = _load(folder, config, tmp_path)["train"]
            assert [from_row(PreferencePair, r) for r in rows] == trained
            assert settings[config]["trained_into"] == manifest_file.stem and settings[config]["sha256_as_trained"]
            from psrlm.train import dpo_rows

            assert [{k: r[k] for k in dpo_rows(trained)[0]} for r in rows] == dpo_rows(trained)  # TRL's rows
            checked += len(trained)
    assert checked > 0, "the tiny loop made no pairs to check"


def test_model_cards_and_folders(run_dir, exported):
    import os

    from huggingface_hub import ModelCard
    from transformers import AutoModelForCausalLM

    out, index = exported
    models = {r["name"].removeprefix("tiny-"): out / r["path"] for r in index["repos"] if r["type"] == "model"}
    assert set(models) == {"M0", "psrlm-M1", "psrlm-M2", "srlm-M1", "srlm-M2"}
    cards = {name: ModelCard.load(folder / "README.md") for name, folder in models.items()}
    assert cards["psrlm-M1"].data.base_model == "tiny-M0" and cards["M0"].data.base_model is None
    assert cards["psrlm-M2"].data.base_model == "tiny-psrlm-M1"
    assert cards["psrlm-M1"].data.datasets == ["tiny-ift", "tiny-eft"]
    assert cards["psrlm-M2"].data.datasets == ["tiny-ppd"] and "psrlm_it2" in cards["psrlm-M2"].text
    assert "| `dpo.beta` | 0.1 |" in cards["psrlm-M2"].text and "| `sft.lr` | 0.01 |" in cards["psrlm-M1"].text
    for name, card in cards.items():
        metrics = json.loads((run_dir / "eval" / name / "metrics.json").read_text())
        got = {(r.dataset_name, r.metric_name): r.metric_value for r in card.data.eval_results}
        # only M0 is asked with shots, and only where iterate.m0_three_shot says (default: its judge)
        shots = " (3-shot)" if metrics["few_shot"] else ""
        judge_shots = " (3-shot)" if metrics["judge_few_shot"] else ""
        assert (metrics["few_shot"], metrics["judge_few_shot"]) == ((False, True) if name == "M0" else (False, False))
        assert got[("arith_test", f"accuracy{shots}")] == metrics["benchmarks"]["arith_test"]["accuracy"]
        assert got[("EFT test", f"judge accuracy{judge_shots} (generated verdicts, both A/B orders)")] == \
            metrics["judge"]["judge_accuracy"]  # fmt: skip
        if "judge_soft" in metrics:
            assert got[("EFT test", f"judge accuracy{judge_shots} (soft verdicts, both A/B orders)")] == \
                metrics["judge_soft"]["accuracy"]  # fmt: skip
        assert card.data.eval_results[0].dataset_type == "tiny-eval"
    tts = json.loads((run_dir / "eval" / "psrlm-M1" / "tts.json").read_text())
    got = {r.metric_name: r.metric_value for r in cards["psrlm-M1"].data.eval_results}
    assert got["accuracy with test-time step search"] == tts["tts"]["accuracy"]
    source = run_dir / "models" / "psrlm-M2" / "model.safetensors"
    assert os.path.samefile(models["psrlm-M2"] / "model.safetensors", source)  # hard-linked, not copied
    model = AutoModelForCausalLM.from_pretrained(models["psrlm-M2"])
    assert model.num_parameters() > 0
    assert index["bytes_hard_linked"] >= source.stat().st_size


def test_a_half_finished_run_exports_what_exists_and_names_what_is_missing(run_dir, tmp_path):
    """The run as it was when killed during psrlm-M2's DPO: the search done, no M2 manifest, no SRLM iteration,
    no logs (the config is read from a manifest), moved to another folder since."""
    run = tmp_path / "half"
    shutil.copytree(run_dir, run)
    shutil.rmtree(run / "logs")
    for gone in ("models/psrlm-M2", "eval/psrlm-M2", "srlm/it2", "models/srlm-M2", "eval/srlm-M2"):
        shutil.rmtree(run / gone)
    for gone in ("manifests/psrlm-M2.json", "manifests/srlm-M2.json"):
        (run / gone).unlink()
    index = export_run(run)  # default --out: RUN_DIR/export
    lines = "\n".join(index["stages"])
    assert "config" in lines and "manifests/" in lines
    assert "no model trained on them yet" in next(x for x in index["stages"] if x.startswith("search psrlm_it2"))
    for stage in ("model psrlm-M2", "model srlm-M2", "search srlm_it2", "eval psrlm-M2", "eval srlm-M2"):
        line = next(x for x in index["stages"] if x.startswith(stage))
        assert "missing" in line, line
    assert (run / "export" / "datasets" / "half-ppd" / "README.md").exists()
    assert not (run / "export" / "models" / "half-psrlm-M2").exists()


def test_a_real_data_run_reads_the_files_its_config_names(run_dir, tmp_path):
    """data.source=files: IFT and EFT live outside the run folder, where the recorded config says; the license is
    left `unknown` for the user to set (the data and base model are someone else's)."""
    run = tmp_path / "real"
    shutil.copytree(run_dir, run)
    init = tmp_path / "initdata"
    init.mkdir()
    for name in ("ift.jsonl", "eft_train.jsonl", "eft_test.jsonl"):
        shutil.move(run / "data" / name, init / name)
    log = run / "logs" / "runs.jsonl"
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    entries[-1]["config"]["data"].update(source="files", ift_files=[str(init / "ift.jsonl")],
                                         eft_train_file=str(init / "eft_train.jsonl"),
                                         eft_test_file=str(init / "eft_test.jsonl"))  # fmt: skip
    log.write_text("".join(json.dumps(e) + "\n" for e in entries))
    index = export_run(run, tmp_path / "out")
    assert index["license"] == "unknown" and "data ift             default: train 60" in index["stages"]
    ds = _load(tmp_path / "out" / "datasets" / "real-eft", "pairwise", tmp_path / "cache")
    assert [from_row(JudgeExample, r) for r in ds["test"]] == read_jsonl(init / "eft_test.jsonl", JudgeExample)


def test_bad_input_is_one_clear_line(tmp_path, capsys):
    from psrlm.cli import main

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "x.txt").write_text("hi")
    assert main(["export", str(tmp_path / "notes")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("psrlm: error:") and "is not a psrlm run folder" in err and "\n" not in err
    assert main(["export", str(tmp_path / "nowhere")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_out_must_be_new_empty_or_an_earlier_export(run_dir, exported, tmp_path, capsys):
    from psrlm.cli import main

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep me")
    assert main(["export", str(run_dir), "--out", str(busy)]) == 2
    assert "not empty" in capsys.readouterr().err and (busy / "mine.txt").read_text() == "keep me"
    out = tmp_path / "again"
    assert main(["export", str(run_dir), "--out", str(out), "--name", "demo"]) == 0
    printed = capsys.readouterr().out
    assert "data ppd" in printed and "exported 10 repos" in printed
    assert main(["export", str(run_dir), "--out", str(out), "--name", "demo", "--license", "apache-2.0"]) == 0
    assert json.loads((out / "export.json").read_text())["license"] == "apache-2.0"
    assert not list(tmp_path.glob(".*partial"))


def test_free_form_meta_reads_back_exactly(tmp_path):
    """Floats at full precision, nested dicts, None, unicode: the JSON-text column gives back what was written
    (datasets' own Json feature would round 0.1234567890123456 to 10 digits)."""
    pairs = [PreferencePair("Q: é?\nStep 1:", " a", " b", {"problem_id": "p", "step": 1, "iteration": 2,
                            "chosen_score": 0.1234567890123456, "rejected_score": -1e-300, "prev_steps": [],
                            "nested": {"x": [1, 2.5, None], "big": 2**62}})]  # fmt: skip
    rows = [to_row(p) for p in pairs]
    write_dataset(tmp_path / "repo", [Table("c", "train", rows, record_features(PreferencePair), {"k": 1})],
                  {"license": "mit"}, "# t\n\nOne row is a pair.")  # fmt: skip
    back = [from_row(PreferencePair, r) for r in _load(tmp_path / "repo", "c", tmp_path / "cache")["train"]]
    assert back == pairs and math.copysign(1, back[0].meta["rejected_score"]) == -1


class RecordingApi:
    """Stands in for huggingface_hub.HfApi: records each call and its arguments, sends nothing."""

    def __init__(self):
        self.calls = []

    def create_repo(self, **kwargs):
        self.calls.append(("create_repo", kwargs))
        return f"https://huggingface.co/{'datasets/' if kwargs['repo_type'] == 'dataset' else ''}{kwargs['repo_id']}"

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))


def test_push_to_hub_makes_these_requests(run_dir, tmp_path, monkeypatch):
    """Only the requests are tested: no Hub is reachable here."""
    from huggingface_hub import ModelCard

    from psrlm.export.hub import push

    out = tmp_path / "hub"
    index = export_run(run_dir, out, namespace="someone", name="demo")
    card = ModelCard.load(out / "models" / "demo-psrlm-M2" / "README.md")
    assert card.data.base_model == "someone/demo-psrlm-M1" and card.data.datasets == ["someone/demo-ppd"]
    api = RecordingApi()
    urls = push(out, index, private=True, api=api)
    creates = [kw for m, kw in api.calls if m == "create_repo"]
    uploads = [kw for m, kw in api.calls if m == "upload_folder"]
    assert [m for m, _ in api.calls] == ["create_repo", "upload_folder"] * 10
    assert [c["repo_id"] for c in creates[:5]] == [
        f"someone/demo-{k}" for k in ("ift", "eft", "ppd", "traces", "eval")
    ]
    assert all(c["repo_type"] == "dataset" for c in creates[:5]) and all(
        c["repo_type"] == "model" for c in creates[5:]
    )
    assert all(c["private"] is True and c["exist_ok"] is True for c in creates)
    for c, u in zip(creates, uploads, strict=True):
        assert u["repo_id"] == c["repo_id"] and u["repo_type"] == c["repo_type"]
        assert Path(u["folder_path"]).is_dir() and (Path(u["folder_path"]) / "README.md").exists()
        assert "token" not in u  # left to huggingface_hub: HF_TOKEN or `hf auth login`
    assert urls[0] == "https://huggingface.co/datasets/someone/demo-ift"
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "no-login"))
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "no-login" / "token"))
    with pytest.raises(ValueError, match="no Hugging Face token"):
        push(out, index)  # no token: stops before any request
    with pytest.raises(ValueError, match="without a Hub namespace"):
        push(out, {**index, "namespace": None}, api=RecordingApi())


def test_an_oracle_judged_model_is_never_carded_as_the_method():
    """iterate.oracle_iterations: oracle-M2's pairs came from the step oracle, and its card says so (it read as "pairs
    psrlm-M1 made by judging its own candidates", config psrlm_it2)."""
    from psrlm.export.models import _what

    names = {"ppd": "x-ppd", "traces": "x-traces"}
    manifest = {"method": "psrlm", "iteration": 2,
                "metrics": {"judge": {"kind": "oracle", "flip": 0.0}, "train": {"pairs": 7}}}  # fmt: skip
    text, datasets = _what("oracle-M2", manifest, {}, names, "x-psrlm-M1")
    assert text.startswith("oracle-M2 of the ORACLE-judged arm beside the PSRLM loop (science, not the self-rewarding")
    assert "judged by the arith step oracle (config `oracle_it2`" in text and "its own" not in text
    manifest["metrics"] = {"judge": {"kind": "self"}, "train": {"pairs": 7}}
    assert (
        "x-psrlm-M1 made by judging its own candidates (config `psrlm_it2`"
        in _what("psrlm-M2", manifest, {}, names, "x-psrlm-M1")[0]
    )
