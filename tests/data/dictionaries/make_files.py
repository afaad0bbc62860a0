"""Writes the dictionary files of tests/dictionaries/test_formats.py with SAELens and Overcomplete themselves, and
what those packages' own encoders give for a fixed input (expected.npz). Run it with both packages installed (see
README.md here), from this folder:  python make_files.py

Every SAE has random weights (torch seed 0, every parameter redrawn, so that biases and thresholds are not zero),
d_in 4 and 8 latents, float32. input.npy: (6, 4) float32, numpy seed 1.
"""

import json
import os

import numpy as np
import torch

D_IN, N_LATENTS, TOP_K = 4, 8, 3
HERE = os.path.dirname(os.path.abspath(__file__))


def randomise(module: torch.nn.Module, positive=("threshold",)) -> None:
    """Every parameter redrawn: normal * 0.5, parameters named in ``positive`` uniform in (0.05, 0.5)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name in positive:
                p.copy_(torch.rand_like(p) * 0.45 + 0.05)
            else:
                p.copy_(torch.randn_like(p) * 0.5)


def saelens_files(x: torch.Tensor, expected: dict) -> None:
    import sae_lens
    from sae_lens import (JumpReLUSAE, JumpReLUSAEConfig, StandardSAE, StandardSAEConfig, TopKSAE,
                          TopKSAEConfig)

    made = {
        "saelens_standard": StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=N_LATENTS)),
        "saelens_standard_layer_norm": StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=N_LATENTS,
                                                                     normalize_activations="layer_norm")),
        "saelens_standard_norm_rescale": StandardSAE(StandardSAEConfig(
            d_in=D_IN, d_sae=N_LATENTS, normalize_activations="constant_norm_rescale", apply_b_dec_to_input=False)),
        "saelens_topk": TopKSAE(TopKSAEConfig(d_in=D_IN, d_sae=N_LATENTS, k=TOP_K)),
        "saelens_topk_rescaled": TopKSAE(TopKSAEConfig(d_in=D_IN, d_sae=N_LATENTS, k=TOP_K,
                                                       rescale_acts_by_decoder_norm=True)),
        "saelens_jumprelu": JumpReLUSAE(JumpReLUSAEConfig(d_in=D_IN, d_sae=N_LATENTS)),
    }
    for name, sae in made.items():
        randomise(sae)
        sae.save_model(os.path.join(HERE, name))
        pre = {}
        handle = sae.hook_sae_acts_pre.register_forward_hook(lambda m, i, o: pre.setdefault("pre", o.detach()))
        with torch.no_grad():
            act = sae.encode(x)
        handle.remove()
        expected[f"{name}/pre"], expected[f"{name}/act"] = pre["pre"].numpy(), act.numpy()
    expected["sae_lens_version"] = np.array(sae_lens.__version__)


def overcomplete_files(x: torch.Tensor, expected: dict) -> None:
    import importlib.metadata

    from overcomplete.sae import SAE, JumpSAE, TopKSAE

    made = {
        "overcomplete_relu.pt": SAE(D_IN, N_LATENTS),
        "overcomplete_topk.pt": TopKSAE(D_IN, N_LATENTS, top_k=TOP_K),
        "overcomplete_jump.pt": JumpSAE(D_IN, N_LATENTS),
    }
    for name, sae in made.items():
        randomise(sae, positive=())
        if isinstance(sae, JumpSAE):  # log thresholds: exp() in (0.1, 0.6)
            with torch.no_grad():
                sae.thresholds.copy_(torch.log(torch.rand(N_LATENTS) * 0.5 + 0.1))
        sae.eval()
        torch.save(sae.state_dict(), os.path.join(HERE, name))
        with torch.no_grad():
            pre, act = sae.encode(x)
        key = name[:-3]
        expected[f"{key}/pre"], expected[f"{key}/act"] = pre.numpy(), act.numpy()
    torch.save(made["overcomplete_relu.pt"], os.path.join(HERE, "overcomplete_whole_module.pt"))  # a pickle
    expected["overcomplete_version"] = np.array(importlib.metadata.version("overcomplete"))


def main() -> None:
    torch.manual_seed(0)
    x = torch.from_numpy(np.random.RandomState(1).randn(6, D_IN).astype(np.float32))
    np.save(os.path.join(HERE, "input.npy"), x.numpy())
    expected: dict = {}
    saelens_files(x, expected)
    overcomplete_files(x, expected)
    expected["torch_version"] = np.array(torch.__version__)
    np.savez(os.path.join(HERE, "expected.npz"), **expected)
    print(json.dumps({k: list(v.shape) for k, v in expected.items()}, indent=1))


if __name__ == "__main__":
    main()
