"""labkit.notebook: how notebooks 04 and 05 find, or make, their data and base model; 08's models."""
import json

from labkit import config, sft

from labkit.notebook import F1_RUN, sequence_against, sequence_models, setup_data_and_base, sft_start


def _beside(work):
    """Notebook 02's data and notebook 03's retrained base model where the sequence leaves them under WORK."""
    data, base = work / "02" / "data", work / "03" / "pretrain" / "model"
    data.mkdir(parents=True)
    (data / "manifest.json").write_text(json.dumps({"counts": {"train_A": 4}}))
    base.mkdir(parents=True)
    (base / "config.json").write_text("{}")
    return data, base


def test_in_the_sequence_it_takes_notebook_02s_data_and_03s_retrained_base(tmp_path, capsys):
    data, base = _beside(tmp_path)
    assert setup_data_and_base(tmp_path / "04", "quick") == (data, {"model.name_or_path": str(base)})
    assert "'train_A': 4" in capsys.readouterr().out
    # parameters naming other directories win over the sequence's
    other_data, other_base = _beside(tmp_path / "elsewhere")
    got = setup_data_and_base(tmp_path / "04", "quick", str(other_data), str(other_base))
    assert got == (other_data, {"model.name_or_path": str(other_base)})


def test_on_its_own_it_synthesises_data_and_takes_a_random_tiny_model_at_smoke(tmp_path):
    data, model = setup_data_and_base(tmp_path / "05", "smoke")
    assert data == tmp_path / "05" / "data" and (data / "manifest.json").exists()
    assert model == {"model.name_or_path": "embedded", "model.size": "tiny"}


def test_on_its_own_above_smoke_it_takes_the_committed_base(tmp_path):
    _beside(tmp_path)
    (tmp_path / "03" / "pretrain" / "model" / "config.json").unlink()   # notebook 03 did not retrain
    _, model = setup_data_and_base(tmp_path / "04", "quick")
    assert model == {"model.name_or_path": "base"}


def test_notebook_08_takes_the_base_and_notebook_05s_runs(tmp_path):
    # the SFT model is the run RL after SFT started from, wherever it is (here: notebook 04's)
    for run in ("04/runs/atomic-synthetic", "05/rl/after-sft"):
        (tmp_path / run / "checkpoints").mkdir(parents=True)
        (tmp_path / run / "checkpoints" / "index.json").write_text('{"last": "step-000004"}')
    start = str(tmp_path / "04/runs/atomic-synthetic")
    (tmp_path / "05/rl/after-sft/config.json").write_text(json.dumps({"init": start}))
    assert sequence_models(tmp_path) == {"base": "base", "sft": start,
                                         "rl after sft": str(tmp_path / "05/rl/after-sft")}


def test_notebook_05_starts_from_notebook_04s_run_only_when_it_is_the_same_finished_run(tmp_path, smoke_data,
                                                                                        tiny_model_dir):
    settings = {"model.name_or_path": tiny_model_dir, "data_dir": smoke_data, "mixture": {"atom_base": 1}}
    theirs = tmp_path / F1_RUN    # stands in for 04's run: the same settings
    sft.train(config.resolve(sft.SFTConfig, "smoke", {**settings, "out_dir": str(theirs)}))
    assert sft_start(tmp_path / "05", "smoke", settings) == theirs
    assert not (tmp_path / "05" / "sft").exists()
    other = sft_start(tmp_path / "05", "smoke", {**settings, "lr": 1e-4})   # other settings: trained here
    assert other == tmp_path / "05" / "sft" and (other / "checkpoints" / "index.json").exists()


def test_notebook_08_measures_rl_after_sft_against_sft():
    assert sequence_against({"base": "base", "sft": "a", "rl after sft": "b"}) == {"rl after sft": "sft"}
    assert sequence_against({"base": "base", "rl after sft": "b"}) == {}
