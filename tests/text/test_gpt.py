"""GPT-2 interop: Hugging Face GPT2LMHeadModel directories give the same logits and generated tokens; ours export."""

import json

import pytest
import torch

from polyformer.core import create_model
from polyformer.text.gpt import gpt2_config_from_hf, hf_gpt2_config, load_hf_gpt2, save_hf_gpt2

transformers = pytest.importorskip("transformers")

HF_FIELDS = dict(vocab_size=97, n_embd=32, n_layer=2, n_head=4, n_positions=64, resid_pdrop=0.0, embd_pdrop=0.0,
                 attn_pdrop=0.0, bos_token_id=96, eos_token_id=96)  # fmt: skip


def reference_model(seed=0, **changes):
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**{**HF_FIELDS, **changes}))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return model.eval()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    reference = reference_model()
    path = tmp_path_factory.mktemp("gpt2")
    reference.save_pretrained(path)
    return reference, load_hf_gpt2(path)


def prompts():
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 96, (3, 6), generator=generator)
    mask = torch.ones(3, 6, dtype=torch.long)
    mask[1, :2] = 0  # left padding, as generation takes it
    mask[2, :4] = 0
    ids[mask == 0] = 96
    return ids, mask


def test_logits_match(pair):
    reference, ours = pair
    ids = torch.randint(0, 96, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), reference(ids).logits, atol=1e-4, rtol=1e-4)


def test_greedy_and_beam_generation_give_the_same_tokens(pair):
    reference, ours = pair
    ids, mask = prompts()
    hf_common = dict(attention_mask=mask, max_new_tokens=12, pad_token_id=96, eos_token_id=96, do_sample=False)
    with torch.no_grad():
        greedy = reference.generate(ids, **hf_common)[:, ids.shape[1] :]
        beam = reference.generate(ids, num_beams=4, length_penalty=1.0, early_stopping=True, **hf_common)
    assert torch.equal(ours.generate(ids, mask, max_new_tokens=12).sequences, greedy)
    ours_beam = ours.generate(ids, mask, max_new_tokens=12, num_beams=4, length_penalty=1.0, early_stopping=True)
    ours_beam = ours_beam.sequences
    assert torch.equal(ours_beam, beam[:, ids.shape[1] :])


def test_our_model_exports_to_a_directory_transformers_loads(tmp_path):
    torch.manual_seed(3)
    ours = create_model("gpt_tiny", vocab_size=97, max_len=64, dropout=0.0, attention_dropout=0.0, eos_id=96,
                        pad_id=96, bos_id=96).eval()  # fmt: skip
    with torch.no_grad():
        for parameter in ours.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    save_hf_gpt2(ours, tmp_path)
    loaded = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 96, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, ours(ids), atol=1e-4, rtol=1e-4)
    again = load_hf_gpt2(tmp_path)
    for name, tensor in ours.state_dict().items():
        torch.testing.assert_close(again.state_dict()[name], tensor, rtol=0, atol=0, msg=name)


def test_unsupported_settings_are_named(tmp_path):
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx=True is not supported"):
        gpt2_config_from_hf({**HF_FIELDS, "scale_attn_by_inverse_layer_idx": True})
    with pytest.raises(ValueError, match="scale_embeddings=True"):
        hf_gpt2_config(create_model("transformer_tiny").config)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="not a Hugging Face GPT-2 config"):
        load_hf_gpt2(tmp_path)
