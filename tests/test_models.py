"""The model loader: the embedded default (tokenizer + Llama), any local HF causal LM, LoRA, bad input."""
import inspect
import sysconfig
from pathlib import Path

import pytest
import torch
import transformers

from labkit import atomic, models, tasks
from labkit.config import UserError
from labkit.models import LoraConfig, ModelConfig


def test_tokenizer_round_trips_real_code_exactly(tokenizer):
    # Real files (stdlib + this lab's own source), plus whitespace and bytes a code model may meet.
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = [(stdlib / "json" / "decoder.py").read_text(), inspect.getsource(models),
             "def f():\n\treturn 1\r\n\n\n   \n        x = 'é ü 中文 \\x00'  # trailing   \n"]
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
    code = texts[0] + texts[1]
    assert len(tokenizer(code)["input_ids"]) < len(code) / 2   # and BPE actually compresses code


def test_tokenizer_has_pad_bos_eos_and_a_small_vocab(tokenizer):
    assert {tokenizer.pad_token, tokenizer.bos_token, tokenizer.eos_token} == {"<pad>", "<bos>", "<eos>"}
    assert len({tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id}) == 3
    assert len(tokenizer) == models.VOCAB_SIZE


def test_the_tokenizer_is_trained_once_then_read_back_the_same(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    models.embedded_tokenizer.cache_clear()
    try:
        trained = models.embedded_tokenizer()   # nothing cached yet: trained, then written
        assert models.tokenizer_cache().is_relative_to(tmp_path) and models.tokenizer_cache().exists()
        models.embedded_tokenizer.cache_clear()
        monkeypatch.setattr(models, "train_tokenizer", lambda texts: pytest.fail("trained again"))
        read = models.embedded_tokenizer()
    finally:
        models.embedded_tokenizer.cache_clear()
    assert read.backend_tokenizer.to_str() == trained.backend_tokenizer.to_str()
    assert (read.pad_token, read.eos_token, read.model_max_length) == (trained.pad_token, trained.eos_token,
                                                                        trained.model_max_length)
    code = inspect.getsource(models)
    assert read(code)["input_ids"] == trained(code)["input_ids"] and read.decode(read(code)["input_ids"]) == code


def test_atomic_names_are_few_tokens(tokenizer):
    # As the model meets them after `def` or in a call: with a leading space.
    counts = {s.name: len(tokenizer.tokenize(" " + s.name)) for s in atomic.library()}
    assert max(counts.values()) <= 3, counts
    assert sum(counts.values()) / len(counts) <= 2.0, counts


def test_prompt_and_completion_tokenise_apart_as_together(tokenizer):
    # Trainers and the sampler tokenise the prompt and the body separately; pretraining sees them joined.
    # Newlines never merge with the next line's indentation, so both give the same tokens.
    for task in tasks.atom_base(atomic.library()):
        apart = tokenizer.tokenize(task.prompt) + tokenizer.tokenize(task.solution)
        assert apart == tokenizer.tokenize(task.prompt + task.solution), task.id


def test_embedded_tiny_is_deterministic_in_the_seed():
    cfg = ModelConfig(size="tiny", device="cpu")
    a, tok = models.load(cfg, seed=1)
    b, _ = models.load(cfg, seed=1)
    c, _ = models.load(cfg, seed=2)
    assert 0.1e6 <= models.n_params(a) <= 0.3e6
    assert isinstance(a, transformers.LlamaForCausalLM) and a.training
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))
    assert next(a.parameters()).dtype == torch.float32


def test_small_preset_is_about_a_million_parameters():
    model = models.embedded_model("small", models.embedded_tokenizer())
    assert 0.8e6 <= models.n_params(model) <= 3e6


def _one_step(model, tokenizer) -> None:
    batch = tokenizer(["def f(x):\n    return x\n", "x = 1\n"], return_tensors="pt", padding=True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    model(**batch, labels=batch["input_ids"]).loss.backward()
    optimizer.step()


@pytest.fixture
def gpt2_dir(tmp_path, tokenizer):
    """A local HF model directory from a random config: a tiny GPT-2 whose tokenizer has no pad token."""
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=128,
                                     eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path)
    no_pad = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer,
                                                  eos_token="<eos>", bos_token="<bos>")
    no_pad.save_pretrained(tmp_path)
    return tmp_path


def test_local_hf_dir_loads_by_path_and_trains_with_lora(gpt2_dir, capsys):
    cfg = ModelConfig(name_or_path=str(gpt2_dir), device="cpu",
                      lora=LoraConfig(enabled=True, r=4, alpha=8, target_modules=["c_attn"]))
    model, tokenizer = models.load(cfg, seed=0)
    assert "no pad token" in capsys.readouterr().out          # the pad = eos fallback is announced
    assert tokenizer.pad_token == tokenizer.eos_token
    base_before = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    lora_before = {n: p.clone() for n, p in model.named_parameters() if p.requires_grad}
    assert lora_before and all("lora_" in n for n in lora_before)
    _one_step(model, tokenizer)
    assert all(torch.equal(p, base_before[n]) for n, p in model.named_parameters() if not p.requires_grad)
    assert any(not torch.equal(p, lora_before[n]) for n, p in model.named_parameters() if p.requires_grad)


def test_llama_dir_with_default_lora_targets(tmp_path):
    model, tokenizer = models.load(ModelConfig(size="tiny", device="cpu"), seed=0)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    lora, _ = models.load(ModelConfig(name_or_path=str(tmp_path), device="cpu",
                                      lora=LoraConfig(enabled=True)), seed=0)
    names = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in names} == {"q_proj", "k_proj", "v_proj", "o_proj"}


def test_missing_path_is_a_user_error():
    with pytest.raises(UserError, match="does not exist"):
        models.load(ModelConfig(name_or_path="/no/such/model"))


def test_directory_without_a_model_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not a Hugging Face model directory"):
        models.load(ModelConfig(name_or_path=str(tmp_path)))


def test_a_model_that_is_not_a_causal_lm_is_a_user_error(tmp_path):
    transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=64).save_pretrained(tmp_path)
    with pytest.raises(UserError, match="not a causal language model"):
        models.load(ModelConfig(name_or_path=str(tmp_path)))


def test_lora_targets_matching_nothing_name_the_real_layers(gpt2_dir):
    cfg = ModelConfig(name_or_path=str(gpt2_dir), lora=LoraConfig(enabled=True))   # Llama names on GPT-2
    with pytest.raises(UserError, match=r"match no layer.*c_attn"):
        models.load(cfg)


def test_tokenizer_without_pad_or_eos_is_a_user_error(gpt2_dir, tokenizer):
    bare = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer)
    bare.save_pretrained(gpt2_dir)
    with pytest.raises(UserError, match="neither a pad nor an eos token.*add_special_tokens"):
        models.load(ModelConfig(name_or_path=str(gpt2_dir)))


def test_cuda_requested_without_a_gpu_is_a_user_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(UserError, match="no CUDA GPU"):
        models.load(ModelConfig(size="tiny", device="cuda"))


def test_model_config_is_a_clean_nested_config():
    from labkit import config
    assert "lora.target_modules" in config.keys(ModelConfig)
    cfg = config.apply(ModelConfig(), {"lora.r": "4", "lora.target_modules": "c_attn,c_proj", "dtype": "bfloat16"})
    assert cfg.lora.r == 4 and cfg.lora.target_modules == ["c_attn", "c_proj"]
    assert config.from_dict(ModelConfig, config.to_dict(cfg)) == cfg


def test_a_lora_adapter_directory_loads_merged_into_its_base(tmp_path):
    base, tokenizer = models.load(ModelConfig(size="tiny", device="cpu"), seed=0)
    base.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    lora_cfg = LoraConfig(enabled=True, r=2)
    adapted, _ = models.load(ModelConfig(name_or_path=str(tmp_path / "base"), device="cpu", lora=lora_cfg))
    _one_step(adapted, tokenizer)                    # make the adapter non-zero
    adapted.save_pretrained(tmp_path / "adapter")    # adapter weights only, naming its base
    tokenizer.save_pretrained(tmp_path / "adapter")
    adapted.eval()
    ids = tokenizer(["def f(x):\n    return x\n"], return_tensors="pt")["input_ids"]
    expected = adapted(ids).logits
    merged, _ = models.load(ModelConfig(name_or_path=str(tmp_path / "adapter"), device="cpu"))
    assert isinstance(merged, transformers.LlamaForCausalLM)
    merged.eval()
    assert torch.allclose(merged(ids).logits, expected, atol=1e-4)


def test_an_sft_or_rl_run_directory_loads_its_last_checkpoint(tmp_path, tiny_model_dir):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run / "checkpoints" / "step-000004")
    (run / "checkpoints" / "index.json").write_text('{"last": "step-000004"}')
    (run / "config.json").write_text("{}")   # the stage config, not a model config
    model, _ = models.load(ModelConfig(name_or_path=str(run), device="cpu"))
    assert model.config.hidden_size == models.SIZES["tiny"]["hidden_size"]
    (run / "checkpoints" / "index.json").write_text("{}")
    with pytest.raises(UserError, match="no checkpoint yet"):
        models.load(ModelConfig(name_or_path=str(run), device="cpu"))
