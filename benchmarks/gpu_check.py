"""GPU readiness: throughput and memory of scoring and gradient steps at the scale of Llama-3-8B, in bf16.

A randomly initialised model of Llama-3-8B's shape (timing does not depend on the weights; the GPU machines here have
no model hub) is scored per placement: seconds per candidate evaluation (a population of 16 in one batched call),
seconds per gradient step (Adam's forward + backward over the 48 survey rows) with the tokens it runs and the FLOP
rate that implies against the GPU's measured bf16 matmul rate and its nominal peak, seconds per question of the held-out
opinions evaluation (culturealign.opinions), and peak GPU memory. It also checks on
the default model that Hugging Face on CUDA agrees with the CPU to 1e-3 in option probabilities, both in bf16.
The survey rows are tokenised with the package's small test tokenizer, which cuts text into more tokens than Llama-3's
tokenizer does, so the sequences are longer than a real run's: the timings are upper bounds.

Usage:  python benchmarks/gpu_check.py [--layers 32]     (under 10 minutes on one GPU; writes BENCHMARKS.md)
Without a GPU it writes "not yet measured on a GPU" and exits.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from common import command, counting_forward, machine, matmul_rate, write_section

from culturealign.gradient import SurveyGradient, alignment_loss
from culturealign.instrument import Questionnaire
from culturealign.models import LoadedModel, load_model
from culturealign.opinions import load_opinions, score_opinions
from culturealign.config import PromptConfig
from culturealign.softprompt import SoftPrompt
from culturealign.survey import Survey
from culturealign.targets import lookup
from toymodels import make_tokenizer

SECTION = "gpu-check"
#: nominal dense bf16 tensor-core peaks (FLOP/s, SXM parts, no sparsity) by a name the device's name contains
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


def llama3_8b_shape(layers: int, vocab: int):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab, hidden_size=4096, intermediate_size=14336, num_hidden_layers=layers,
                       num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192, rope_theta=500000.0,
                       tie_word_embeddings=False)


def timed(fn, repeats: int = 3) -> float:
    fn()  # warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--population", type=int, default=16)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        write_section(SECTION, "### GPU readiness (Llama-3-8B shape, bf16)\n\nNot yet measured on a GPU: run "
                               "`python benchmarks/gpu_check.py` on a machine with one.")
        print("no CUDA GPU here: wrote the placeholder")
        return
    from transformers import LlamaForCausalLM

    tok = make_tokenizer()
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)   # initialise in bf16 on the GPU (fp32 would need 32 GB first)
    with torch.device("cuda"):
        model = LlamaForCausalLM(llama3_8b_shape(args.layers, 128256)).eval()
    torch.set_default_dtype(torch.float32)
    for p in model.parameters():
        p.requires_grad_(False)
    lm = LoadedModel(model, tok, "llama3-8b-shape (random)", "random")
    survey = Survey(lm, Questionnaire.builtin(), PromptConfig("naive", labels="letters", order="both"),
                    batch_size=48)
    target = lookup("CN")
    soft = 0.01 * torch.randn(args.population, 8, 4096, device="cuda")
    rate = matmul_rate(8192, 10, "cuda", torch.bfloat16)
    peak = next((v for k, v in PEAK_BF16.items() if k in torch.cuda.get_device_name()), None)
    non_embedding = sum(p.numel() for n, p in model.named_parameters() if "embed" not in n and "lm_head" not in n)
    rows = []
    for placement in ("prefix", "suffix"):
        torch.cuda.reset_peak_memory_stats()
        score_s = timed(lambda: survey.answer(soft.to(torch.bfloat16), placement)) / args.population
        score_mem = torch.cuda.max_memory_allocated() / 2 ** 30
        grad = SurveyGradient(survey, np.zeros(6), placement)
        loss = alignment_loss(target.vector(), ["PDI", "IDV", "MAS", "UAI", "LTO", "IVR"], "huber")

        def step():
            prompt = soft[:1].float().clone().requires_grad_(True)
            grad.backward(prompt, loss)

        torch.cuda.reset_peak_memory_stats()
        step_s = timed(step)
        step_mem = torch.cuda.max_memory_allocated() / 2 ** 30
        counter = [0]   # the positions one step's forward passes run (shared prefix and stems once, padding in)
        grad.scorer._forward = counting_forward(grad.scorer, counter)
        step()
        del grad.scorer._forward
        flop_rate = 4 * non_embedding * counter[0] / step_s   # forward + backward to the inputs, frozen weights
        rows.append(f"| {placement} | {score_s:.3f} | {score_mem:.1f} | {step_s:.2f} | {step_mem:.1f} | "
                    f"{step_s / score_s:.1f} | {counter[0]} | {flop_rate / 1e12:.0f} | {flop_rate / rate:.2f} | "
                    + (f"{flop_rate / peak:.2f} |" if peak else "- |"))
    # the opinions evaluation (37 WVS questions, both orders, grouped by option count) with one soft prompt
    opinions = load_opinions()
    held_out = {}
    for placement in ("prefix", "suffix"):
        prompt = SoftPrompt(soft[0].float().cpu(), placement, {})
        torch.cuda.reset_peak_memory_stats()
        seconds = timed(lambda: score_opinions(lm, opinions, None, prompt, batch_size=48), repeats=1)
        held_out[placement] = (seconds / len(opinions), torch.cuda.max_memory_allocated() / 2 ** 30)
    del model, survey
    torch.cuda.empty_cache()
    # the default model in bf16: CUDA against the CPU
    cpu, gpu = load_model("default", "cpu", "bfloat16"), load_model("default", "cuda", "bfloat16")
    probs = [Survey(m, Questionnaire.builtin(), PromptConfig("naive", labels="letters", order="both")).answer().probs
             for m in (cpu, gpu)]
    diff = float(np.abs(probs[0] - probs[1]).max())
    body = ["### GPU readiness (Llama-3-8B shape, bf16)", "", f"Command: `{command()}`  ",
            f"Machine: {machine()}, {torch.cuda.get_device_name()}  ",
            f"A random model of Llama-3-8B's shape ({args.layers} layers), 8 soft tokens, 48 survey rows (both orders); "
            f"black-box scoring of a population of {args.population} in one call; an Adam step is one forward + "
            "backward pass over the 48 rows (Huber loss).", "",
            "Tokens per step: the positions the step's forward passes run (the shared prefix and each item's stem "
            "once, padding included); TFLOP/s: 4 x non-embedding parameters x tokens per step / seconds per step, "
            f"against this GPU's bf16 matmul rate measured here ({rate / 1e12:.0f} TFLOP/s, 8192 x 8192) and its "
            f"nominal dense bf16 peak ({'%.0f TFLOP/s' % (peak / 1e12) if peak else 'not on record for this GPU'}).",
            "",
            "| placement | s per candidate | peak GiB (scoring) | s per gradient step | peak GiB (gradient) | "
            "step / candidate | tokens per step | TFLOP/s | of matmul rate | of peak |",
            "|---|---|---|---|---|---|---|---|---|---|", *rows, "",
            f"Opinions evaluation ({len(opinions)} WVS questions, both orders, one soft prompt): "
            + "; ".join(f"{pl} {s_q:.3f} s per question, peak {mem:.1f} GiB" for pl, (s_q, mem) in held_out.items())
            + ".", "",
            f"Default model in bf16, CUDA against CPU: largest difference in option probabilities {diff:.2e} "
            f"({'within' if diff <= 1e-3 else 'outside'} 1e-3)."]
    write_section(SECTION, "\n".join(body))
    print("\n".join(body))


if __name__ == "__main__":
    main()
