"""Forgetting: the held-out standard-library loss and the KL to the start, as a trainer's evaluation logs them."""
import copy

import torch

import pytest

from labkit import atomic, config, forgetting, pretrain, sft, tasks
from labkit.config import UserError
from labkit.loop import check_schedule


def test_the_general_text_is_what_pretraining_held_out(tokenizer):
    # A smaller budget of the same corpus: the first of the same held-out documents.
    held_out = pretrain.corpus(pretrain.PretrainConfig(stdlib_chars=100_000))["heldout"]
    assert forgetting.heldout_documents(100_000) == held_out
    assert forgetting.heldout_documents(50_000) == held_out[:len(forgetting.heldout_documents(50_000))]
    blocks = forgetting.heldout_blocks(tokenizer, 3)
    assert blocks.shape == (3, forgetting.SEQ_LEN)
    start = tokenizer(held_out[0], add_special_tokens=False)["input_ids"]
    assert blocks[0, :len(start)].tolist() == start[:forgetting.SEQ_LEN]


def test_kl_is_zero_against_itself_and_positive_once_the_model_moved(tiny_llama):
    model, tokenizer = tiny_llama
    train = tasks.atom_base(atomic.library(0))[:8]
    measure = forgetting.Forgetting(model, tokenizer, general_blocks=2, kl_prompts=8, max_new_tokens=16)
    torch.manual_seed(0)
    same = {r["metric"]: r for r in measure(model, train)}
    assert same["kl_to_init"]["value"] == 0.0 and same["kl_to_init"]["split"] == "train"
    assert same["loss"]["split"] == "general" and same["loss"]["value"] > 0

    moved = copy.deepcopy(model)
    with torch.no_grad():
        moved.lm_head.weight.mul_(4.0)   # a much sharper policy: far from the start
    torch.manual_seed(0)
    after = {r["metric"]: r["value"] for r in measure(moved, train)}
    assert after["kl_to_init"] > 0.1
    assert after["loss"] != same["loss"]["value"]


def test_off_by_default_and_an_sft_run_logs_both_at_every_evaluation(tiny_model_dir, smoke_data, tmp_path):
    assert forgetting.measure(config.resolve(sft.SFTConfig, "smoke").eval, None, None) is None
    cfg = config.resolve(sft.SFTConfig, "smoke", {"model.name_or_path": tiny_model_dir, "data_dir": smoke_data,
                                                  "out_dir": str(tmp_path / "run"), "eval.general_blocks": 2,
                                                  "eval.kl_prompts": 4})
    metrics = sft.train(cfg).metrics()
    kl = {r["step"]: r["value"] for r in metrics if r["metric"] == "kl_to_init"}
    general = {r["step"]: r["value"] for r in metrics if r["split"] == "general" and r["metric"] == "loss"}
    evaluated = sorted({r["step"] for r in metrics if r["metric"] == "pass@1"})
    assert sorted(kl) == sorted(general) == evaluated and len(evaluated) == 3
    last = evaluated[-1]
    # Measured against the start, which step 0 still is: zero up to float error (the frozen copy's weights sit
    # at other addresses, and the CPU's matmul kernels may sum in another order for another alignment).
    assert abs(kl[0]) < 1e-5 and abs(kl[last]) > 1e-3
    assert general[last] != general[0]


def test_a_negative_count_is_a_clear_error():
    cfg = config.resolve(sft.SFTConfig, "smoke", {"eval.kl_prompts": -1}).eval
    with pytest.raises(UserError, match="kl_prompts"):
        check_schedule(cfg)
