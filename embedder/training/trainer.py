"""The training loop: align trainable encoders to each other (and to frozen ones) with one loss.

`train(config)` builds the space the config describes, decodes the manifest
once, trains the trainable towers with the configured loss, logs metrics each
epoch, checkpoints after each epoch, resumes from a matching checkpoint, and
writes a space directory that `load_space` and the server read.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..device import default_device
from ..encoders.base import TowerEncoder
from ..losses import LogitScale, alignment_loss, uniformity_alignment
from ..modality import Modality
from ..space import Space
from ..space_dir import build_space, save_space
from .augment import augment_batch, check_augment
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig
from .data import PairedData, PreparedCache, epoch_pairing, load_paired_data, split

EVAL_BATCH = 512


@dataclass
class TrainResult:
    output: Path
    epochs: int
    resumed_from: int
    seconds: float
    temperature: float
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


def resolve_device(name: str) -> torch.device:
    return default_device() if name == "auto" else torch.device(name)


def build_initial_space(config: TrainConfig, device: torch.device) -> Space:
    spec = {
        "name": config.space.name,
        "version": config.space.version,
        "dim": config.space.dim,
        "similarity": config.space.similarity,
        "loss": config.loss.name,
        "encoders": config.encoder_specs(),
    }
    # The seed fixes the initial weights, so two runs of one config train the same model.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.training.seed)
        space = build_space(spec, device)
    for modality in config.modalities:
        encoder = space.encoder(modality)
        if config.trainable(modality) and not isinstance(encoder, TowerEncoder):
            raise ConfigError(
                f"[encoders.{modality}]: a {encoder.kind} encoder cannot be trained here; set trainable: false "
                "or use a trainable type (cnn_image, logmel_cnn_audio)"
            )
    return space


class Batches:
    """Embeds rows of a PairedData with the towers (trainable) or the stored vectors (frozen)."""

    def __init__(self, space: Space, config: TrainConfig, device: torch.device) -> None:
        self.space, self.config, self.device = space, config, device
        self.options: dict[Modality, dict[str, float]] = {}
        for modality in config.modalities:
            options = dict(config.augment.get(modality.value, {}))
            if modality is Modality.AUDIO and options:
                options.setdefault("sample_rate", float(getattr(space.encoder(modality), "sample_rate", 16000)))
            self.options[modality] = options

    def embed(
        self,
        data: PairedData,
        rows: dict[Modality, np.ndarray],
        generator: torch.Generator | None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(embeddings, presence masks), one per modality, for the given row of each modality."""
        embeddings, masks = [], []
        for modality in data.modalities:
            part = data.data[modality]
            index = torch.from_numpy(rows[modality])
            present = part.present[index]
            values = part.values[index]
            if part.frozen:
                out = values.to(self.device, torch.float32)
            else:
                out = torch.zeros(len(index), self.config.space.dim, device=self.device)
                if int(present.sum()) >= 2 or (generator is None and bool(present.any())):
                    x = values[present]
                    if generator is not None:
                        x = augment_batch(modality, x, self.options[modality], generator)
                    out[present.to(self.device)] = space_tower(self.space, modality)(x.to(self.device))
                else:
                    present = torch.zeros_like(present)  # BatchNorm needs two rows to train on
            embeddings.append(out)
            masks.append(present.to(self.device))
        return embeddings, masks


def space_tower(space: Space, modality: Modality) -> nn.Module:
    encoder = space.encoder(modality)
    assert isinstance(encoder, TowerEncoder)
    return encoder.tower


class Scales(nn.Module):
    """The learned 1/temperatures: one for the loss, and one for a combined objective's pairwise term."""

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        loss = config.loss
        self.main = LogitScale(loss.temperature, loss.learn_temperature, loss.max_logit_scale)
        self.pairwise = LogitScale(loss.temperature, loss.learn_temperature) if loss.pairwise_weight else None

    def forward(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.main(), self.pairwise() if self.pairwise is not None else None

    @property
    def temperature(self) -> float:
        return self.main.temperature


def _loss(
    config: TrainConfig,
    embeddings: list[torch.Tensor],
    masks: list[torch.Tensor],
    scales: tuple[torch.Tensor, torch.Tensor | None],
):
    scale, pairwise_scale = scales
    anchor = config.modalities.index(Modality.parse(config.loss.anchor)) if config.loss.anchor else 0
    loss = alignment_loss(
        config.loss.name,
        embeddings,
        scale,
        masks,
        anchor,
        config.loss.negative_sampling,
        config.loss.pairwise_weight,
        config.loss.label_smoothing,
        pairwise_scale,
    )
    if config.loss.uniformity or config.loss.alignment:
        loss = loss + uniformity_alignment(embeddings, masks, config.loss.uniformity, config.loss.alignment)
    return loss


def _recall_at_1(
    queries: torch.Tensor, candidates: torch.Tensor, q_keys: np.ndarray, c_keys: np.ndarray, unsigned: bool = False
) -> float:
    similarity = queries @ candidates.T
    # GRAM's own similarity of two vectors, -sqrt(1 - cos^2), ranks by |cos|.
    nearest = (similarity.abs() if unsigned else similarity).argmax(dim=1).cpu().numpy()
    return float(np.mean(c_keys[nearest] == q_keys))


@torch.no_grad()
def evaluate(
    batches: Batches, data: PairedData, config: TrainConfig, scale: tuple[torch.Tensor, torch.Tensor | None]
) -> dict[str, float]:
    """Eval loss (mean over batches) and R@1 for every ordered pair of modalities.

    With a label column a hit is any candidate of the query's label; without one, the
    query's own row.
    """
    n = len(data)
    identity = {m: np.arange(n) for m in data.modalities}
    parts: list[list[torch.Tensor]] = [[] for _ in data.modalities]
    present: list[list[torch.Tensor]] = [[] for _ in data.modalities]
    losses = []
    for start in range(0, n, EVAL_BATCH):
        rows = {m: r[start : start + EVAL_BATCH] for m, r in identity.items()}
        embeddings, masks = batches.embed(data, rows, generator=None)
        if len(rows[data.modalities[0]]) >= 2:
            losses.append(float(_loss(config, embeddings, masks, scale)))
        for i, (e, m) in enumerate(zip(embeddings, masks, strict=True)):
            parts[i].append(e)
            present[i].append(m)
    vectors = [torch.cat(p) for p in parts]
    masks_all = [torch.cat(p).cpu().numpy() for p in present]
    keys = data.labels if data.labels is not None else np.arange(n)
    metrics: dict[str, float] = {"eval_loss": float(np.mean(losses)) if losses else float("nan")}
    for i, a in enumerate(data.modalities):
        for j, b in enumerate(data.modalities):
            if i == j or not masks_all[i].any() or not masks_all[j].any():
                continue
            qa, cb = masks_all[i], masks_all[j]
            unsigned = config.loss.name == "gram"
            metrics[f"{a}->{b}_r1"] = _recall_at_1(vectors[i][qa], vectors[j][cb], keys[qa], keys[cb], unsigned)
    return metrics


@torch.no_grad()
def orient_to_anchor(space: Space, config: TrainConfig, batches: Batches, data: PairedData) -> list[Modality]:
    """Flip trainable encoders whose outputs point away from the anchor's; returns the flipped ones.

    A volume does not change when one of its vectors changes sign, so GRAM is as happy with an
    image at minus its caption as at its caption, and training lands in either basin; Symile's
    product is as happy when two of its factors are negated. Cosine search (what the index does)
    needs the aligned basin. Negating an encoder's last layer flips all its outputs and leaves
    the loss exactly as it was (for Symile, only an even number of flips does, so only those).
    """
    anchor = Modality.parse(config.loss.anchor) if config.loss.anchor else config.modalities[0]
    rows = {m: np.arange(min(len(data), EVAL_BATCH)) for m in data.modalities}
    embeddings, masks = batches.embed(data, rows, generator=None)
    a = data.modalities.index(anchor)
    backwards: list[tuple[float, Modality]] = []
    for i, modality in enumerate(data.modalities):
        if i == a or not config.trainable(modality):
            continue
        both = masks[i] & masks[a]
        agreement = float((embeddings[i][both] * embeddings[a][both]).sum(1).mean()) if bool(both.any()) else 0.0
        if agreement < 0:
            backwards.append((agreement, modality))
    if config.loss.name == "symile" and len(backwards) % 2:
        # A multilinear product keeps its value only when an even number of its factors flip.
        backwards = sorted(backwards)[:-1]
    for _, modality in backwards:
        head = space_tower(space, modality).head
        last = head.net[-1] if isinstance(head.net, nn.Sequential) else head.net
        last.weight.neg_()
        last.bias.neg_()
    return [m for _, m in backwards]


def _schedule(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    total = config.training.epochs * steps_per_epoch
    warmup = max(1, round(config.optimizer.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.optimizer.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _optimizer(config: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    opt = config.optimizer
    if opt.name == "adamw":
        return torch.optim.AdamW(params, lr=opt.lr, weight_decay=opt.weight_decay)
    if opt.name == "adam":
        return torch.optim.Adam(params, lr=opt.lr, weight_decay=opt.weight_decay)
    return torch.optim.SGD(params, lr=opt.lr, momentum=0.9, weight_decay=opt.weight_decay)


def _trainable_state(space: Space, config: TrainConfig, scale: Scales) -> dict[str, torch.Tensor]:
    state = {"logit_scale.log_scale": scale.main.log_scale.detach()}
    if scale.pairwise is not None:
        state["pairwise_scale.log_scale"] = scale.pairwise.log_scale.detach()
    for modality in config.modalities:
        if config.trainable(modality):
            for key, value in space_tower(space, modality).state_dict().items():
                state[f"{modality.value}.{key}"] = value
    return state


def _load_trainable_state(space: Space, config: TrainConfig, scale: Scales, state: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        scale.main.log_scale.copy_(state["logit_scale.log_scale"])
        if scale.pairwise is not None:
            scale.pairwise.log_scale.copy_(state["pairwise_scale.log_scale"])
    for modality in config.modalities:
        if config.trainable(modality):
            prefix = f"{modality.value}."
            tower_state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            space_tower(space, modality).load_state_dict(tower_state, strict=True)


def _format(metrics: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())


def train(
    config: TrainConfig,
    *,
    cache: PreparedCache | None = None,
    fresh: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train, checkpointing each epoch; resume from `config.checkpoint_dir` unless `fresh`."""
    check_augment(config.augment)
    started = time.perf_counter()
    device = resolve_device(config.training.device)
    space = build_initial_space(config, device)
    data = load_paired_data(config, space, cache, progress)
    train_data, eval_data = split(data, config)
    if len(train_data) < config.training.batch_size:
        log(f"note: {len(train_data)} training rows, fewer than batch_size {config.training.batch_size}")
    batches = Batches(space, config, device)
    scale = Scales(config).to(device)
    trainable = [m for m in config.modalities if config.trainable(m)]
    if not trainable:
        raise ConfigError("every encoder is frozen (trainable: false); nothing to train")
    params = [p for m in trainable for p in space_tower(space, m).parameters()]
    if config.loss.learn_temperature:
        params.extend(scale.parameters())
    optimizer = _optimizer(config, params)
    batch_size = min(config.training.batch_size, len(train_data))
    steps_per_epoch = max(1, len(train_data) // batch_size)  # drop the ragged last batch: it has few negatives
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config, steps_per_epoch))

    history: list[dict[str, Any]] = []
    start_epoch = 0
    checkpoint = None if fresh else load_checkpoint(config.checkpoint_dir)
    if checkpoint is not None:
        if checkpoint.fingerprint != config.fingerprint():
            raise ConfigError(
                f"the checkpoint in {config.checkpoint_dir} was made with a different config; "
                "pass --fresh to start over, or set checkpoint_dir to another directory"
            )
        _load_trainable_state(space, config, scale, checkpoint.weights)
        optimizer.load_state_dict(checkpoint.optimizer["optimizer"])
        scheduler.load_state_dict(checkpoint.optimizer["scheduler"])
        start_epoch, history = checkpoint.epochs_done, checkpoint.history
        log(f"resuming from {config.checkpoint_dir}: {start_epoch} of {config.training.epochs} epochs done")

    seed = config.training.seed
    for epoch in range(start_epoch, config.training.epochs):
        # Every random draw of an epoch derives from (seed, epoch): a resumed run replays it exactly.
        torch.manual_seed(seed * 1_000_003 + epoch)
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        rng = np.random.default_rng([seed, epoch])
        pairing = epoch_pairing(train_data, rng, config.data.shuffle_within_label)
        order = rng.permutation(len(train_data))
        for m in trainable:
            space_tower(space, m).train()
        losses = []
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"epoch {epoch + 1}/{config.training.epochs}",
            unit="step",
            disable=not progress,
            leave=False,
        )
        for step in bar:
            rows = order[step * batch_size : (step + 1) * batch_size]
            embeddings, masks = batches.embed(train_data, {m: p[rows] for m, p in pairing.items()}, generator)
            loss = _loss(config, embeddings, masks, scale())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", T=f"{scale.temperature:.3f}")
        bar.close()
        for m in trainable:
            space_tower(space, m).eval()
        metrics: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": float(np.mean(losses)),
            "temperature": scale.temperature,
            "lr": float(scheduler.get_last_lr()[0]),
        }
        if scale.pairwise is not None:
            metrics["pairwise_temperature"] = scale.pairwise.temperature
        last = epoch + 1 == config.training.epochs
        if eval_data is not None and ((epoch + 1) % config.training.eval_every == 0 or last):
            metrics.update(evaluate(batches, eval_data, config, scale()))
        history.append(metrics)
        log(_format(metrics))
        save_checkpoint(
            config.checkpoint_dir,
            Checkpoint(
                epochs_done=epoch + 1,
                fingerprint=config.fingerprint(),
                history=history,
                weights=_trainable_state(space, config, scale),
                optimizer={"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
            ),
        )
        if on_epoch_end is not None:
            on_epoch_end(metrics)

    if config.loss.name in ("gram", "symile"):
        flipped = orient_to_anchor(space, config, batches, train_data)
        if flipped:
            log(f"{config.loss.name}: flipped {', '.join(m.value for m in flipped)} to point along the anchor")
    space.loss = config.loss.name
    space.metadata.update(
        {
            "trained_by": "tessera train",
            "temperature": scale.temperature,
            "epochs": config.training.epochs,
            "final_metrics": history[-1] if history else {},
            "train_config": config.to_dict(),
        }
    )
    save_space(space, config.output, overwrite=True)
    seconds = time.perf_counter() - started
    log(f"wrote space {space.id} to {config.output} ({seconds:.1f} s)")
    return TrainResult(config.output, config.training.epochs, start_epoch, seconds, scale.temperature, history)
