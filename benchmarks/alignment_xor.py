"""Binary XOR benchmark: Symile captures a higher-order dependence that pairwise CLIP cannot.

Reproduces the synthetic XOR experiment of Symile (Saporta et al., 2024, "Contrastive
Learning Beyond Pairwise Interactions"). With k variables, the first k - 1 are i.i.d.
Bernoulli(0.5) bits and the last is the XOR of all of them (default k = 8: a..g and
h = a XOR ... XOR g). Any k - 1 of the variables are mutually independent, so every pair is
independent: a pairwise objective has nothing to learn, and only the whole k-tuple carries the
dependence.

Each variable is one "modality" with its own linear encoder (nn.Linear on the bit as -1/+1,
then L2-normalised), trained with one of the losses of `tessera.embedder.losses`:

- symile: Symile with O(n) negatives (n^(k-1) combinations are out of reach for k = 8);
- symile_n_squared: Symile against every combination, run only when k == 3;
- clip: InfoNCE over all pairs of variables;
- gram: GRAM, cross-entropy over negative Gram volumes, variable a as the anchor.

All losses share the batch size, steps, learning rate and learnable temperature.

Evaluation, on fresh held-out samples: predict a from the other k - 1 variables by scoring both
candidate values of a with the loss's own similarity and keeping the higher one (an exact tie
is a coin flip). Symile scores the multilinear inner product (MIP) of a's embedding with the
rest, CLIP the sum of cosines between a's embedding and each other variable's, GRAM the
negative volume of a's embedding with the rest. Chance is 0.5. CLIP's score is additive over
the other variables and an additive threshold cannot compute XOR; trained CLIP leaves only a
near-zero margin whose sign is noise, so with k = 3 a single run can read 0.25 or 0.75 (the best
an additive rule gets on a 2-bit XOR) while the mean over seeds stays at chance.

    python -m benchmarks.alignment_xor [--variables 8] [--steps 300] [--dim 16] [--seeds 0 1 2 3 4]
        [--batch-size 128] [--lr 0.05] [--out benchmarks/results/alignment_xor.json]

The default run (3 losses x 5 seeds) takes about 1.5 minutes on 2 CPU cores, GRAM most of it. torch
runs on one thread: these tensors are too small to gain from more, and on busy cores extra threads
slowed runs down 25-fold.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from statistics import mean
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

import tessera.embedder.encoders  # noqa: F401  (installs the torchvision shim before transformers)
from tessera.embedder.losses import LogitScale, clip_loss, gram_loss, gram_volume, mip, symile_loss

LOSSES = ("symile", "symile_n_squared", "clip", "gram")
SIMILARITY = {
    "symile": "multilinear inner product of a's embedding with the other variables' embeddings",
    "symile_n_squared": "as symile (trained against every combination of the other variables' rows)",
    "clip": "sum of the cosines between a's embedding and each other variable's embedding",
    "gram": "minus the volume spanned by a's embedding and the other variables' embeddings",
}
DEFAULT_OUT = Path(__file__).parent / "results" / "alignment_xor.json"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by every loss, so the comparison is like for like."""

    batch_size: int = 128  # GRAM's n x n volumes of k x k Gram matrices set the cost
    lr: float = 0.05
    temperature: float = 0.1  # initial; learnable, capped at 1/100 as in CLIP
    eval_samples: int = 4096


def sample_bits(n: int, variables: int, generator: torch.Generator) -> Tensor:
    """(n, variables) 0/1 ints: i.i.d. fair bits, and the last column the XOR of the others."""
    if variables < 3:
        raise ValueError("the XOR experiment needs at least 3 variables (two bits and their XOR)")
    free = torch.randint(0, 2, (n, variables - 1), generator=generator)
    return torch.cat([free, free.sum(1, keepdim=True) % 2], dim=1)


class BitEncoders(nn.Module):
    """One linear encoder per variable, on the bit as -1/+1, then L2-normalised.

    Each bit value gets its own direction, bias + w or bias - w. The ±1 input (rather than a
    one-hot) starts the half-difference w as large as the shared part: the XOR is carried by the
    product of the k half-differences, so a one-hot's smaller start (about 1/sqrt(3) of the
    shared part, raised to the k-th power) left Symile on a plateau of ~1,000 steps in some seeds.
    """

    def __init__(self, variables: int, dim: int) -> None:
        super().__init__()
        self.encoders = nn.ModuleList(nn.Linear(1, dim) for _ in range(variables))

    def encode(self, variable: int, bits: Tensor) -> Tensor:
        """(n, dim) unit vectors for the bits (0/1) of one variable."""
        signs = bits.float().mul(2).sub(1).unsqueeze(-1)
        return F.normalize(self.encoders[variable](signs), dim=-1)

    def forward(self, bits: Tensor) -> list[Tensor]:
        return [self.encode(v, bits[:, v]) for v in range(bits.shape[1])]


def training_loss(loss: str, embeddings: list[Tensor], logit_scale: Tensor) -> Tensor:
    if loss == "symile":
        return symile_loss(embeddings, logit_scale, negative_sampling="n")
    if loss == "symile_n_squared":
        return symile_loss(embeddings, logit_scale, negative_sampling="n_squared")
    if loss == "clip":
        return clip_loss(embeddings, logit_scale)
    if loss == "gram":
        return gram_loss(embeddings, logit_scale, anchor=0)
    raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")


def check_setting(variables: int, loss: str, dim: int) -> None:
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
    if loss == "symile_n_squared" and variables != 3:
        # n^(k-1) negatives per anchor: 128^7 columns for k = 8.
        raise ValueError("symile_n_squared is only run with 3 variables")
    if loss == "gram" and dim < variables:
        # k vectors in fewer than k dimensions always span zero volume: every score would tie.
        raise ValueError(f"gram needs dim >= variables ({dim} < {variables})")


def train(
    variables: int, loss: str, steps: int, dim: int, config: TrainConfig, generator: torch.Generator
) -> BitEncoders:
    model = BitEncoders(variables, dim)
    scale = LogitScale(config.temperature, learnable=True)
    optimizer = torch.optim.Adam([*model.parameters(), *scale.parameters()], lr=config.lr)
    for _ in range(steps):
        embeddings = model(sample_bits(config.batch_size, variables, generator))
        value = training_loss(loss, embeddings, scale())
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    return model


def candidate_scores(loss: str, candidate: Tensor, rest: list[Tensor]) -> Tensor:
    """(n,) similarity of a candidate embedding of a with the other variables, by the loss's own measure."""
    if loss in ("symile", "symile_n_squared"):
        return mip([candidate, *rest])
    if loss == "clip":
        return torch.stack([(candidate * other).sum(-1) for other in rest]).sum(0)
    if loss == "gram":
        return -gram_volume([candidate, *rest])
    raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")


@torch.no_grad()
def predict_first(model: BitEncoders, loss: str, bits: Tensor, generator: torch.Generator) -> Tensor:
    """(n,) predicted value of the first variable from the others: the better-scoring candidate."""
    n = bits.shape[0]
    rest = [model.encode(v, bits[:, v]) for v in range(1, bits.shape[1])]
    scores = [candidate_scores(loss, model.encode(0, torch.full((n,), value)), rest) for value in (0, 1)]
    prediction = (scores[1] > scores[0]).long()
    # An exact tie carries no information: a coin flip, not a fixed side, keeps it at chance.
    tie = scores[1] == scores[0]
    coin = torch.randint(0, 2, (n,), generator=generator)
    return torch.where(tie, coin, prediction)


def run_xor(variables: int, loss: str, steps: int, dim: int, seed: int, config: TrainConfig | None = None) -> float:
    """Train the encoders with `loss` and return the held-out accuracy of predicting a from the rest."""
    config = config or TrainConfig()
    check_setting(variables, loss, dim)
    # Symile's O(n) negatives shuffle with torch's default generator, so seed that too.
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = train(variables, loss, steps, dim, config, generator)
    held_out = sample_bits(config.eval_samples, variables, generator)  # drawn after training: never seen
    predicted = predict_first(model, loss, held_out, generator)
    return float((predicted == held_out[:, 0]).float().mean())


def losses_for(variables: int) -> list[str]:
    return [loss for loss in LOSSES if loss != "symile_n_squared" or variables == 3]


def run_all(variables: int, steps: int, dim: int, seeds: list[int], config: TrainConfig) -> dict[str, Any]:
    """Every loss on every seed: mean, min and max accuracy per loss, the wall time and the per-seed figures."""
    losses = losses_for(variables)
    runs = [(loss, seed) for seed in seeds for loss in losses]
    per_seed: dict[int, dict[str, float]] = {seed: {"seed": seed} for seed in seeds}
    started = time.perf_counter()
    for loss, seed in tqdm(runs, desc=f"XOR, {variables} variables", unit="run"):
        per_seed[seed][f"{loss}_accuracy"] = round(run_xor(variables, loss, steps, dim, seed, config), 4)
    seconds = time.perf_counter() - started
    summary: dict[str, Any] = {}
    for loss in losses:
        accuracies = [per_seed[seed][f"{loss}_accuracy"] for seed in seeds]
        summary[f"{loss}_accuracy"] = round(mean(accuracies), 4)
        summary[f"{loss}_accuracy_min"] = round(min(accuracies), 4)
        summary[f"{loss}_accuracy_max"] = round(max(accuracies), 4)
    return {**summary, "seconds": round(seconds, 1), "per_seed": list(per_seed.values())}


def machine() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} CPU cores, {gpu}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = TrainConfig()
    parser.add_argument("--variables", type=int, default=8, help="k: k-1 free bits plus their XOR (default 8)")
    parser.add_argument("--steps", type=int, default=300, help="training steps per run (default 300)")
    parser.add_argument("--dim", type=int, default=16, help="embedding dimension; GRAM needs >= variables (16)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="one run per loss per seed")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="samples per step (128)")
    parser.add_argument("--lr", type=float, default=defaults.lr, help="Adam learning rate (0.05)")
    parser.add_argument("--temperature", type=float, default=defaults.temperature, help="initial, learnable (0.1)")
    parser.add_argument("--eval-samples", type=int, default=defaults.eval_samples, help="held-out samples (4096)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: the tensors are tiny)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = TrainConfig(args.batch_size, args.lr, args.temperature, args.eval_samples)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        results = run_all(args.variables, args.steps, args.dim, args.seeds, config)
    finally:
        torch.set_num_threads(threads)  # main() is also called in-process, by the tests
    losses = losses_for(args.variables)
    record = {
        "benchmark": "alignment_xor",
        "task": "predict variable a from the others on held-out samples; the last variable is the XOR of all others",
        "variables": args.variables,
        "losses": losses,
        "similarity": {loss: SIMILARITY[loss] for loss in losses},
        "steps": args.steps,
        "dim": args.dim,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "initial_temperature": config.temperature,
        "eval_samples": config.eval_samples,
        "seeds": args.seeds,
        "chance": 0.5,
        **results,
        "measured_at": datetime.now(timezone.utc).date().isoformat(),
        "machine": machine(),
        "torch": torch.__version__,
        "torch_threads": args.threads,
        "command": " ".join(["python -m benchmarks.alignment_xor", *(sys.argv[1:] if argv is None else argv)]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    for loss in losses:
        mean_, min_, max_ = (record[f"{loss}_accuracy{s}"] for s in ("", "_min", "_max"))
        print(f"{loss:<18} accuracy {mean_:.3f} (min {min_:.3f}, max {max_:.3f}; chance 0.5)")
    print(f"{results['seconds']} s; written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
