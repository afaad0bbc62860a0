"""Text directions for CLIP-like models (``models.hf_text``, ``objectives.text_direction``, ``visualize.py --text``):
the prompt's embedding equal to what transformers' own model computes, from a tiny model and tokenizer written to a
fake offline Hugging Face cache here (nothing downloaded); the objective against a numpy cosine; one step of the
command line; its bad inputs in one line."""

import json
import string

import numpy as np
import pytest
import torch
import yaml

from dvtoolbox.cli.visualize import main as visualize_main
from dvtoolbox.errors import UsageError
from dvtoolbox.models.hf_text import text_embeddings
from dvtoolbox.objectives import text_direction
from tests.models.test_hf_models import CONFIGS, TEXT, TOWER, fake_cache, write_folder

transformers = pytest.importorskip("transformers")
PROMPTS = ["a photo of a cat", "dog"]


pytestmark = pytest.mark.usefixtures("hf_offline")   # tests/models/conftest.py


def tiny_tokenizer(folder):
    """A CLIP BPE tokenizer with a 55-token vocabulary (the specials, a..z and a..z</w>, no merges) saved in
    ``folder``: ids < TEXT's vocab_size, start 0 and end 1 as TEXT's bos / eos."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    for ch in string.ascii_lowercase:
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token="!")
    return tokenizer


def clip_in_cache(tmp_path, repo="someone/tiny-clip", with_tokenizer=True):
    torch.manual_seed(5)
    clip = transformers.CLIPModel(transformers.CLIPConfig(vision_config=TOWER, text_config=TEXT,
                                                          projection_dim=16)).eval()
    snapshot = fake_cache(tmp_path, repo, clip)
    tokenizer = tiny_tokenizer(tmp_path)
    if with_tokenizer:
        tokenizer.save_pretrained(str(snapshot))
    return clip, tokenizer


def test_clip_text_embedding_is_transformers_own(tmp_path):
    clip, tokenizer = clip_in_cache(tmp_path)
    ours = text_embeddings("someone/tiny-clip", PROMPTS)
    tokens = tokenizer(PROMPTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        theirs = clip.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
    theirs = theirs if isinstance(theirs, torch.Tensor) else theirs.pooler_output
    assert ours.shape == (2, 16)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_siglip_text_embedding_is_transformers_own_padded_to_max_length(tmp_path):
    torch.manual_seed(6)
    text = {k: v for k, v in TEXT.items() if "token" not in k}
    siglip = transformers.SiglipModel(transformers.SiglipConfig(vision_config=TOWER, text_config=text)).eval()
    snapshot = fake_cache(tmp_path, "someone/tiny-siglip", siglip)
    tokenizer = tiny_tokenizer(tmp_path)
    tokenizer.save_pretrained(str(snapshot))
    ours = text_embeddings("someone/tiny-siglip", PROMPTS)
    tokens = tokenizer(PROMPTS, padding="max_length", max_length=16, return_tensors="pt")
    with torch.no_grad():
        theirs = siglip.get_text_features(input_ids=tokens["input_ids"])
    theirs = theirs if isinstance(theirs, torch.Tensor) else theirs.pooler_output
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_text_direction_is_the_mean_cosine():
    rng = np.random.default_rng(0)
    t, v = rng.normal(size=(3, 5)).astype(np.float32), rng.normal(size=5).astype(np.float32)
    value = text_direction("emb", v)({"emb": torch.from_numpy(t)})
    expected = np.mean(t @ v / (np.linalg.norm(t, axis=1) * np.linalg.norm(v)))
    assert float(value) == pytest.approx(expected, rel=1e-5)


def test_visualize_text_one_run(tmp_path, capsys):
    clip_in_cache(tmp_path)
    out = tmp_path / "out"
    assert visualize_main(["--model", "hf:someone/tiny-clip", "--text", "a photo of a cat", "--steps", "2",
                           "--device", "cpu", "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("recipe auto: lucid for a class logit, cropped to the model's size (a token model")   # a flat embedding
    info = (out / "viz_info.txt").read_text()
    assert info.startswith("objective: text_direction('image_embeds'")
    config = yaml.safe_load((out / "viz_config.yaml").read_text())
    assert config["text"] == "a photo of a cat" and config["objective"] is None


@pytest.mark.parametrize("flags, message", [
    (["--model", "tiny_test", "--text", "a cat"], "--text needs a CLIP or SigLIP --model by name (hf:<repo or "
                                                  "folder>), got tiny_test"),
    (["--model", "hf:someone/tiny-clip", "--text", "  "], "text must be a non-empty prompt"),
    (["--model", "hf:someone/tiny-clip", "--text", "a cat", "--alpha"], "a --text direction is not one"),
    (["--model", "hf:someone/no-tokenizer", "--text", "a cat"], "the tokenizer of hf:someone/no-tokenizer is not there"),
    (["--model", "hf:VIT", "--model-weights", "none", "--text", "a cat"], "text directions need a CLIP or SigLIP "
                                                                          "model with its text tower"),
])
def test_bad_text_inputs_are_one_line(tmp_path, capsys, flags, message):
    clip_in_cache(tmp_path)
    clip_in_cache(tmp_path, "someone/no-tokenizer", with_tokenizer=False)
    vit = write_folder(tmp_path / "vit", CONFIGS["vit"][0])
    flags = ["hf:" + vit if f == "hf:VIT" else f for f in flags]
    out = tmp_path / "out"
    capsys.readouterr()                                          # the set-up's progress bars
    assert visualize_main(flags + ["--steps", "1", "--device", "cpu", "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_a_faceted_text_objective_adds_the_facets_probe(tmp_path):
    """--text with --objective: the objective is the text direction plus the terms, here a facet's linear probe
    on the image embedding given as a one-latent dictionary (w . e + b), against numpy on random embeddings."""
    from safetensors.torch import save_file

    from dvtoolbox.dictionaries.binding import parse_dictionary_bindings
    from dvtoolbox.optvis.job import VisualizeJob

    clip_in_cache(tmp_path)
    rng = np.random.default_rng(1)
    w, b = rng.normal(size=(16, 1)).astype(np.float32), rng.normal(size=1).astype(np.float32)
    save_file({"W_enc": torch.from_numpy(w), "b_enc": torch.from_numpy(b)}, str(tmp_path / "probe.safetensors"))
    facet = parse_dictionary_bindings([f"facet=image_embeds={tmp_path / 'probe.safetensors'}"])
    job = VisualizeJob(model="hf:someone/tiny-clip", text="a cat", objective="0.5 * facet#0", dictionaries=facet)
    objective = job.text_objective()
    e = rng.normal(size=(1, 16)).astype(np.float32)
    t = text_embeddings("someone/tiny-clip", ["a cat"])[0].numpy().astype(np.float64)
    cosine = float(e[0] @ t / (np.linalg.norm(e[0]) * np.linalg.norm(t)))
    value = objective({"image_embeds": torch.from_numpy(e)})
    assert float(value) == pytest.approx(cosine + 0.5 * float(e[0] @ w[:, 0] + b[0]), rel=1e-5)
    out = tmp_path / "out"
    assert visualize_main(["--model", "hf:someone/tiny-clip", "--text", "a cat", "--dictionary",
                           f"facet=image_embeds={tmp_path / 'probe.safetensors'}", "--objective", "0.5 * facet#0",
                           "--steps", "2", "--device", "cpu", "--output-dir", str(out)]) == 0
    info = (out / "viz_info.txt").read_text()
    assert info.startswith("objective: (text_direction('image_embeds', ...) + 0.5 * facet#0 (image_embeds))")


def test_a_weights_file_is_refused_for_the_text_tower(tmp_path):
    clip_in_cache(tmp_path)
    with pytest.raises(UsageError, match="holds the vision tower only"):
        text_embeddings("someone/tiny-clip", ["a cat"], weights=str(tmp_path / "w.pth"))


def test_visualize_text_raises_the_cosine(tmp_path):
    clip_in_cache(tmp_path)
    out = tmp_path / "out"
    assert visualize_main(["--model", "hf:someone/tiny-clip", "--text", "a photo of a cat", "--steps", "8",
                           "--recipe", "lucid", "--lr", "0.1", "--device", "cpu", "--output-dir", str(out)]) == 0
    lines = dict(line.split(": ", 1) for line in (out / "viz_info.txt").read_text().splitlines())
    first, last = float(lines["objective at step 1"]), float(lines["objective at step 8"])
    assert -1 <= first < last <= 1
