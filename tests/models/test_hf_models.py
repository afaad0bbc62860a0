"""Hugging Face transformers vision models (``hf:``): random-weight models from tiny configs written here (nothing
is downloaded), their token layouts and input contracts against what the models and processor files say, the local
cache read offline, both command lines, find_max_acts.py and --list-layers on them, and their bad inputs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from dvtoolbox.cli.find_max_acts import main as find_max_acts_main
from dvtoolbox.cli.optimize_image import main as optimize_main
from dvtoolbox.cli.visualize import main as visualize_main
from dvtoolbox.errors import UsageError
from dvtoolbox.exemplars.tracker import load_maxes
from dvtoolbox.io.images import load_image_rgb
from dvtoolbox.models import hf_models
from dvtoolbox.models.capture import LayerCapture, named_layers
from dvtoolbox.models.layouts import Layout, model_layouts
from dvtoolbox.models.pixel_space import image_to_model_input, to_model_input
from dvtoolbox.models.registry import create_model
from tests.folder_state import folder_state

transformers = pytest.importorskip("transformers")

TOWER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
             patch_size=8)
TEXT = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=99,
            max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=2)
# family -> (config.json, prefix tokens, a block's name, the final layer and its width)
CONFIGS = {
    "vit": (dict(model_type="vit", architectures=["ViTForImageClassification"], id2label={0: "cat", 1: "dog",
                                                                                         2: "eel"}, **TOWER),
            1, "vit.layers.1", "fc8", 3),
    "dinov2": (dict(model_type="dinov2", architectures=["Dinov2Model"], mlp_ratio=2,
                    **{k: v for k, v in TOWER.items() if k != "intermediate_size"}),
               1, "encoder.layer.1", "image_embeds", 32),
    "dinov2_registers": (dict(model_type="dinov2_with_registers", architectures=["Dinov2WithRegistersModel"],
                              num_register_tokens=4, mlp_ratio=2,
                              **{k: v for k, v in TOWER.items() if k != "intermediate_size"}),
                         5, "encoder.layer.1", "image_embeds", 32),
    "clip": (dict(model_type="clip", architectures=["CLIPModel"], projection_dim=16, vision_config=TOWER,
                  text_config=TEXT), 1, "vision_model.encoder.layers.1", "image_embeds", 16),
    "siglip": (dict(model_type="siglip", architectures=["SiglipModel"], vision_config=TOWER,
                    text_config={k: v for k, v in TEXT.items() if "token" not in k}),
               0, "encoder.layers.1", "image_embeds", 32),
}
PROCESSOR = {"do_center_crop": True, "crop_size": {"height": 32, "width": 32}, "size": {"shortest_edge": 36},
             "image_mean": [0.4, 0.5, 0.6], "image_std": [0.2, 0.25, 0.5], "resample": 3, "do_normalize": True,
             "do_rescale": True, "do_resize": True}


pytestmark = pytest.mark.usefixtures("hf_offline")   # tests/models/conftest.py


def write_folder(folder, config, processor=PROCESSOR):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    if processor is not None:
        with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
            json.dump(processor, f)
    return str(folder)


def tiny(tmp_path, family, seed=0):
    torch.manual_seed(seed)
    return create_model("hf:" + write_folder(tmp_path / family, CONFIGS[family][0]), weights=None)


# ---------------------------------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_token_layouts_prefix_and_patch_grid(tmp_path, family):
    _, prefix, block, last, width = CONFIGS[family]
    model = tiny(tmp_path, family)
    assert model.num_prefix_tokens == prefix
    layouts = model_layouts(model, (32, 32))
    assert layouts[block] == Layout("NTC", prefix=prefix, grid=(4, 4))      # 32 px / patch 8: a 4x4 grid
    assert layouts[last] == Layout("NC")
    x = torch.zeros(2, 3, 32, 32)
    with torch.no_grad(), LayerCapture(model, [block, last]) as capture:
        out = model(x)
    assert capture.outputs[block].shape == (2, prefix + 16, 32)              # a tensor, read from the block
    assert out.shape == (2, width) and torch.equal(capture.outputs[last], out)


def test_prefix_tokens_are_the_class_and_register_tokens(tmp_path):
    """DINOv2 with registers puts [CLS], then its 4 register tokens, before the patches: the 5 prefix tokens."""
    model = tiny(tmp_path, "dinov2_registers")
    emb = model.net.embeddings
    with torch.no_grad(), LayerCapture(model, ["embeddings"]) as capture:
        model(torch.full((1, 3, 32, 32), 10.0))
    tokens = capture.outputs["embeddings"][0]
    torch.testing.assert_close(tokens[0], emb.cls_token[0, 0] + emb.position_embeddings[0, 0])
    torch.testing.assert_close(tokens[1:5], emb.register_tokens[0])
    assert not torch.allclose(tokens[5], emb.register_tokens[0, 0])


def test_a_modeloutput_is_read_as_its_hidden_states(tmp_path):
    model = tiny(tmp_path, "dinov2")
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), LayerCapture(model, ["encoder"]) as capture:
        model(x)
        direct = model.net.encoder(model.net.embeddings(model._normalize(x)))
    assert not isinstance(direct, torch.Tensor)                               # a BaseModelOutput ...
    torch.testing.assert_close(capture.outputs["encoder"], direct.last_hidden_state)  # ... read as a tensor
    assert model_layouts(model, (32, 32))["encoder"] == Layout("NTC", prefix=1, grid=(4, 4))


def test_layer_names_are_the_models_own(tmp_path):
    names = named_layers(tiny(tmp_path, "clip"))
    assert "vision_model.encoder.layers.0" in names and "vision_model.encoder.layers.1.mlp.fc2" in names
    assert "visual_projection" in names and list(names)[-1] == "image_embeds"
    assert not any(name.startswith("net.") for name in names)


def test_other_input_sizes_interpolate_the_position_embeddings(tmp_path):
    model = tiny(tmp_path, "clip")
    assert model_layouts(model, (48, 48))["vision_model.encoder.layers.1"] == Layout("NTC", prefix=1, grid=(6, 6))


# ---------------------------------------------------------------------------------------------------- contract


def test_contract_from_the_processor_file_and_the_normalisation(tmp_path):
    model = tiny(tmp_path, "siglip")
    contract = model.input_contract
    assert contract.size == (32, 32) and contract.channel_order == "RGB"
    assert contract.mean == pytest.approx((102.0, 127.5, 153.0))
    assert (contract.resample, contract.resize_to, contract.stretch) == ("bicubic", 36, False)
    image = torch.from_numpy(np.random.default_rng(2).uniform(0, 1, (2, 3, 32, 32)).astype(np.float32))
    mean, std = torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1), torch.tensor([0.2, 0.25, 0.5]).view(1, 3, 1, 1)
    with torch.no_grad():
        ours = model(to_model_input(image, contract))
        theirs = model.net(pixel_values=(image - mean) / std).pooler_output        # the processor's arithmetic
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


PROCESSORS = {
    "dinov2 (shortest edge, centre crop)": (
        {"crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "size": {"shortest_edge": 256},
         "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "resample": 3},
        dict(size=(224, 224), resize_to=256, stretch=False, resample="bicubic")),
    "clip (old integer sizes)": (
        {"crop_size": 224, "do_center_crop": True, "size": 224, "resample": 3,
         "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]},
        dict(size=(224, 224), resize_to=224, stretch=False, resample="bicubic")),
    "siglip (height and width, no crop)": (
        {"size": {"height": 224, "width": 224}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3, "resample": 3},
        dict(size=(224, 224), resize_to=None, stretch=True, resample="bicubic")),
    "vit (an integer size without a crop is a square)": (
        {"size": 224, "image_mean": [0.5] * 3, "image_std": [0.5] * 3, "resample": 2},
        dict(size=(224, 224), resize_to=None, stretch=True, resample="bilinear")),
}


@pytest.mark.parametrize("case", sorted(PROCESSORS))
def test_read_processor_config(tmp_path, case):
    data, expected = PROCESSORS[case]
    path = tmp_path / "preprocessor_config.json"
    path.write_text(json.dumps(data))
    read = hf_models.read_processor_config(str(path))
    assert {k: read[k] for k in expected} == expected
    assert read["mean"] == tuple(data["image_mean"]) and read["std"] == tuple(data["image_std"])


@pytest.mark.parametrize("stretch", [False, True])
def test_photographs_follow_the_processor(stretch):
    """image_to_model_input with a processor's contract = PIL's resize (bicubic) and crop, restated here."""
    processor = dict(mean=(0.5, 0.5, 0.5), std=(0.5,) * 3, size=(8, 8), resample="bicubic",
                     resize_to=None if stretch else 10, stretch=stretch)
    contract = hf_models.contract_of(processor)
    photo = np.random.default_rng(3).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    if stretch:
        expected = np.asarray(Image.fromarray(photo).resize((8, 8), Image.BICUBIC))
    else:
        expected = np.asarray(Image.fromarray(photo).resize((17, 10), Image.BICUBIC))[1:9, 4:12]
    x = image_to_model_input(photo, contract)
    np.testing.assert_array_equal(x[0].numpy(), expected.transpose(2, 0, 1).astype(np.float32) - 127.5)


@pytest.mark.parametrize("repo", ["facebook/dinov2-small", "openai/clip-vit-base-patch32",
                                  "google/siglip-base-patch16-224", "google/vit-base-patch16-224"])
def test_shipped_configs_build_offline(repo):
    """--model-weights none works offline for the four named models: their shipped configs (the model itself is
    built on the meta device here: only its structure is checked)."""
    config_path, processor_path = hf_models.config_files(repo, None)
    assert config_path == hf_models.shipped_file(repo, "config.json")
    processor = hf_models.read_processor_config(processor_path)
    config = hf_models._vision_config(transformers, config_path)
    cls, classifier, output = hf_models._model_class(transformers, config)
    expected = {"facebook/dinov2-small": ("Dinov2Model", "pooler_output", 384, 14, (0.485, 0.456, 0.406)),
                "openai/clip-vit-base-patch32": ("CLIPVisionModelWithProjection", "image_embeds", 768, 32,
                                                 (0.48145466, 0.4578275, 0.40821073)),
                "google/siglip-base-patch16-224": ("SiglipVisionModel", "pooler_output", 768, 16, (0.5,) * 3),
                "google/vit-base-patch16-224": ("ViTForImageClassification", "logits", 768, 16, (0.5,) * 3)}[repo]
    assert (cls.__name__, output, config.hidden_size, config.patch_size, processor["mean"]) == expected
    assert processor["size"] == (224, 224) and config.num_hidden_layers == 12
    with torch.device("meta"):
        net = cls(config)
    assert sum(p.numel() for p in net.parameters()) > 2 * 10**7
    if repo.startswith("openai"):
        assert net.visual_projection.weight.shape == (512, 768)
    assert hf_models.shipped_models() == ("facebook/dinov2-small", "google/siglip-base-patch16-224",
                                          "google/vit-base-patch16-224", "openai/clip-vit-base-patch32")


# ---------------------------------------------------------------------------------------------------- weights


def fake_cache(tmp_path, repo, model):
    """A Hugging Face cache holding ``repo`` as huggingface_hub lays it out: refs/main -> snapshots/<commit>."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = tmp_path / "hf_home" / "hub" / ("models--" + repo.replace("/", "--"))
    snapshot = root / "snapshots" / commit
    model.save_pretrained(str(snapshot))
    (snapshot / "preprocessor_config.json").write_text(json.dumps(PROCESSOR))
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    return snapshot


def test_default_weights_from_the_local_cache_clip_vision_tower(tmp_path):
    torch.manual_seed(5)
    config = transformers.CLIPConfig(vision_config=TOWER, text_config=TEXT, projection_dim=16)
    clip = transformers.CLIPModel(config).eval()
    fake_cache(tmp_path, "someone/tiny-clip", clip)
    model = create_model("hf:someone/tiny-clip")
    image = torch.from_numpy(np.random.default_rng(4).uniform(0, 1, (1, 3, 32, 32)).astype(np.float32))
    mean, std = torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1), torch.tensor([0.2, 0.25, 0.5]).view(1, 3, 1, 1)
    with torch.no_grad():
        ours = model(to_model_input(image, model.input_contract))
        theirs = clip.get_image_features(pixel_values=(image - mean) / std)
    theirs = theirs if isinstance(theirs, torch.Tensor) else theirs.pooler_output
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_a_state_dict_file_as_weights(tmp_path):
    reference = tiny(tmp_path, "vit", seed=1)
    torch.save(reference.net.state_dict(), tmp_path / "vit.pth")
    loaded = create_model("hf:" + str(tmp_path / "vit"), weights=str(tmp_path / "vit.pth"))
    torch.testing.assert_close(loaded.net.classifier.weight, reference.net.classifier.weight)
    assert loaded.input_contract.labels == ("cat", "dog", "eel") and loaded.input_contract.label_layers == ("fc8",
                                                                                                         "prob")


# ---------------------------------------------------------------------------------------------------- command lines


def test_optimize_image_one_step(tmp_path, capsys):
    folder = write_folder(tmp_path / "vit", CONFIGS["vit"][0])
    argv = ["--model", "hf:" + folder, "--model-weights", "none", "--push-layer", "fc8", "--push-channel", "1",
            "--max-iter", "1", "--output-prefix", str(tmp_path / "out" / "opt")]
    assert optimize_main(argv, settings_dirs=[]) == 0
    assert (tmp_path / "out" / "opt_fc8_0001_0_best_X.jpg").is_file()


def test_visualize_one_step(tmp_path):
    folder = write_folder(tmp_path / "dino", CONFIGS["dinov2_registers"][0])
    assert visualize_main(["--model", "hf:" + folder, "--model-weights", "none", "--objective", "encoder.layer.1:3",
                           "--steps", "1", "--device", "cpu", "--output-dir", str(tmp_path / "out")]) == 0
    assert load_image_rgb(str(tmp_path / "out" / "viz_step1_0.png")).shape == (32, 32, 3)   # the contract's size


def test_find_max_acts(tmp_path):
    folder = write_folder(tmp_path / "siglip", CONFIGS["siglip"][0])
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(6)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(data / f"p{i}.png")
    (tmp_path / "list.txt").write_text("".join(f"p{i}.png {i}\n" for i in range(3)))
    outfile = tmp_path / "maxes.pkl"
    assert find_max_acts_main(["--device", "cpu", "--workers", "0", "--model", "hf:" + folder, "--model-weights",
                               "none", "--N", "2", "--layers", "encoder.layers.1,image_embeds", str(data),
                               str(tmp_path / "list.txt"), str(outfile)]) == 0
    _, images, maxes = load_maxes(str(outfile))
    assert images.paths == [f"p{i}.png" for i in range(3)]


def test_list_layers(tmp_path, capsys):
    folder = write_folder(tmp_path / "vit", CONFIGS["vit"][0])
    assert optimize_main(["--model", "hf:" + folder, "--model-weights", "none", "--list-layers"],
                         settings_dirs=[]) == 0
    rows = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert rows["vit.layers.1"].split() == ["17x32", "NTC", "(prefix", "1,", "grid", "4x4)"]
    assert rows["fc8"].split() == ["3", "NC"]


# ---------------------------------------------------------------------------------------------------- bad inputs


def _bad_folder(tmp_path, config=None, processor=PROCESSOR):
    return "hf:" + write_folder(tmp_path / "bad", config or CONFIGS["vit"][0], processor)


BAD_INPUTS = {
    "unknown name, no cache, offline": (lambda t: "hf:nobody/no-such-model", [],
                                        "--model hf:nobody/no-such-model: cannot get config.json of "
                                        "hf:nobody/no-such-model from the Hugging Face cache"),
    "not a repository id": (lambda t: "hf:no such/model!", [], "--model hf:no such/model!: not a folder, nor a Hugging "
                                                                     "Face repository id"),
    "a folder without preprocessor_config.json": (lambda t: _bad_folder(t, processor=None), ["--model-weights",
                                                                                             "none"],
                                                  "/bad: the folder has no preprocessor_config.json"),
    "an unsupported model_type": (lambda t: _bad_folder(t, config={"model_type": "bert"}), ["--model-weights",
                                                                                            "none"],
                                  "model_type 'bert' is not a supported vision model"),
    "image_std zero": (lambda t: _bad_folder(t, processor={**PROCESSOR, "image_std": [0.2, 0, 0.5]}),
                       ["--model-weights", "none"], "image_std > 0"),
    "resample not PIL's": (lambda t: _bad_folder(t, processor={**PROCESSOR, "resample": 9}),
                           ["--model-weights", "none"], "resample must be one of PIL's codes"),
    "a folder without weights": (lambda t: _bad_folder(t), [], "--model-weights of hf:"),
    "weights that do not fit": (lambda t: _bad_folder(t), ["--model-weights", "{tmp}/other.pth"], "does not fit hf:"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_one_line_exit_2_nothing_written(case, tmp_path, capsys):
    make, flags, expected = BAD_INPUTS[case]
    model = make(tmp_path)
    torch.save({"w": torch.zeros(2)}, tmp_path / "other.pth")
    before = folder_state(tmp_path)
    argv = ["--model", model, *[f.format(tmp=tmp_path) for f in flags], "--push-layer", "fc8", "--max-iter", "1",
            "--output-prefix", str(tmp_path / "out" / "opt")]
    status = optimize_main(argv, settings_dirs=[])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("optimize_image.py: error: ") and expected in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert folder_state(tmp_path) == before


def test_transformers_missing_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)      # import transformers raises ImportError
    with pytest.raises(UsageError, match=r"need the optional package transformers: pip install 'dvtoolbox\[hf\]'"):
        create_model("hf:facebook/dinov2-small", weights=None)


def test_the_package_imports_without_transformers():
    code = ("import sys; sys.modules['transformers'] = None\n"
            "import dvtoolbox.models, dvtoolbox.cli.visualize\n"
            "from dvtoolbox.models.registry import is_family_name\n"
            "assert is_family_name('hf:x/y')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


@pytest.mark.parametrize("family", ["vit", "dinov2_registers", "clip", "siglip"])
def test_objective_kinds_on_each_family(tmp_path, family):
    """A channel, a token neuron and a dictionary latent of a block, in one objective through visualize.py: the
    objective kinds x the Hugging Face families (doc/models.md's table)."""
    from safetensors.torch import save_file
    config, _, block, _, _ = CONFIGS[family]
    folder = write_folder(tmp_path / family, config)
    g = torch.Generator().manual_seed(1)
    save_file({"W_enc": torch.randn(32, 8, generator=g), "b_enc": torch.zeros(8)}, str(tmp_path / "sae.safetensors"))
    out = tmp_path / "out"
    assert visualize_main(["--model", "hf:" + folder, "--model-weights", "none", "--dictionary",
                           f"sae={block}={tmp_path / 'sae.safetensors'}", "--objective",
                           f"{block}:3 + 0.5 * {block}:1:2 + sae#5", "--steps", "2", "--device", "cpu",
                           "--output-dir", str(out)]) == 0
    assert load_image_rgb(str(out / "viz_step2_0.png")).shape == (32, 32, 3)
