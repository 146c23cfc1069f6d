"""The training config: one YAML or TOML file that says what to align, with what, and how.

    space:     {name: digits, version: "1", dim: 384}
    data:      {manifest: pairs.parquet, columns: {text: caption, audio: clip},
                label_column: digit, group_column: speaker, shuffle_within_label: true}
    eval:      {groups: [theo]}              # or {fraction: 0.1}
    encoders:  {text: {type: minilm, trainable: false}, audio: {type: logmel_cnn_audio, ...}}
    loss:      {name: clip, anchor: text, temperature: 0.07, learn_temperature: true}
    optimizer: {name: adamw, lr: 0.001, weight_decay: 0.01}
    training:  {epochs: 20, batch_size: 128, seed: 0, device: auto}
    augment:   {audio: {shift_seconds: 0.1, speed: 0.1, noise: 0.005}, image: {shift_pixels: 1}}
    output:    runs/digits                    # the space directory written at the end

Relative paths are relative to the config file. Unknown keys are errors, so a
typo never silently trains the wrong thing.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..losses import LOSSES
from ..modality import Modality

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class ConfigError(ValueError):
    """The config file is missing something or has something it should not."""


def _take(section: str, raw: dict[str, Any] | None, cls: type) -> Any:
    raw = dict(raw or {})
    known = {f.name for f in fields(cls)}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"[{section}]: unknown keys {sorted(unknown)}; known keys: {sorted(known)}")
    try:
        return cls(**raw)
    except TypeError as exc:
        raise ConfigError(f"[{section}]: {exc}") from None


@dataclass
class SpaceSection:
    name: str
    version: str = "1"
    dim: int = 384
    similarity: str = "cosine"


@dataclass
class DataSection:
    manifest: str
    columns: dict[str, str]  # modality -> column
    label_column: str | None = None
    group_column: str | None = None
    # Rows with the same label are interchangeable tuples (any spoken 7 goes with any written 7),
    # so each epoch can pair them afresh: more distinct tuples from the same data.
    shuffle_within_label: bool = False


@dataclass
class EvalSection:
    groups: list[str] = field(default_factory=list)  # rows of these groups are held out
    fraction: float = 0.0  # or a seeded random share of the rows


@dataclass
class LossSection:
    name: str = "clip"
    anchor: str | None = None  # modality; anchored and GRAM need one (default: the first column)
    temperature: float = 0.07
    learn_temperature: bool = True
    negative_sampling: str = "n"  # Symile: "n" or "n_squared"
    uniformity: float = 0.0  # weights of the "It's Not a Modality Gap" regulariser
    alignment: float = 0.0
    # A combined objective: this weight times CLIP all-pairs InfoNCE, added to a GRAM or Symile loss,
    # so a higher-order space keeps the pairwise alignment single-modality queries rely on.
    pairwise_weight: float = 0.0
    label_smoothing: float = 0.0  # GRAM's cross-entropies (the GRAM authors train with 0.1)
    # The learned 1/temperature is capped, as in CLIP. A product of three unit vectors is small
    # (at most the largest coordinate of one of them), so Symile and GRAM may need a higher cap.
    max_logit_scale: float = 100.0


@dataclass
class OptimizerSection:
    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_epochs: float = 0.5
    schedule: str = "cosine"  # or "constant"


@dataclass
class TrainingSection:
    epochs: int = 10
    batch_size: int = 128
    seed: int = 0
    device: str = "auto"
    eval_every: int = 1


@dataclass
class TrainConfig:
    space: SpaceSection
    data: DataSection
    encoders: dict[str, dict[str, Any]]
    loss: LossSection
    optimizer: OptimizerSection
    training: TrainingSection
    eval: EvalSection
    augment: dict[str, dict[str, float]]
    output: Path
    checkpoint_dir: Path
    base_dir: Path = Path(".")

    @property
    def modalities(self) -> list[Modality]:
        """The modalities trained on, in column order."""
        return [Modality.parse(m) for m in self.data.columns]

    def trainable(self, modality: Modality) -> bool:
        return bool(self.encoders[modality.value].get("trainable", True))

    def encoder_specs(self) -> dict[str, dict[str, Any]]:
        """What goes into space.json: the encoder specs without training-only keys."""
        return {m: {k: v for k, v in spec.items() if k != "trainable"} for m, spec in self.encoders.items()}

    def manifest_path(self) -> Path:
        return self.base_dir / self.data.manifest

    def fingerprint(self) -> str:
        """What a checkpoint must match to be resumed: everything but the epoch count, device and paths."""
        raw = self.to_dict()
        del raw["output"], raw["checkpoint_dir"]
        raw["training"].update(epochs=None, device=None)
        return hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "space": asdict(self.space),
            "data": asdict(self.data),
            "encoders": copy.deepcopy(self.encoders),
            "loss": asdict(self.loss),
            "optimizer": asdict(self.optimizer),
            "training": asdict(self.training),
            "eval": asdict(self.eval),
            "augment": copy.deepcopy(self.augment),
            "output": str(self.output),
            "checkpoint_dir": str(self.checkpoint_dir),
        }


SECTIONS = {"space", "data", "encoders", "loss", "optimizer", "training", "eval", "augment", "output", "checkpoint_dir"}


def config_from_dict(raw: dict[str, Any], base_dir: Path = Path(".")) -> TrainConfig:
    unknown = set(raw) - SECTIONS
    if unknown:
        raise ConfigError(f"unknown sections {sorted(unknown)}; a config has: {sorted(SECTIONS)}")
    for required in ("space", "data", "encoders", "output"):
        if required not in raw:
            raise ConfigError(f"the config needs a [{required}] section (see `tessera train --help`)")
    data = _take("data", raw["data"], DataSection)
    if not data.columns:
        raise ConfigError("[data].columns must map at least two modalities to manifest columns")
    encoders = {Modality.parse(m).value: dict(spec) for m, spec in raw["encoders"].items()}
    columns = {Modality.parse(m).value: str(c) for m, c in data.columns.items()}
    data.columns = columns
    if len(columns) < 2:
        raise ConfigError(f"[data].columns names {len(columns)} modality; aligning needs two or more")
    for modality in columns:
        if modality not in encoders:
            raise ConfigError(f"[data].columns has {modality} but [encoders] has no {modality} encoder")
    loss = _take("loss", raw.get("loss"), LossSection)
    if loss.name not in LOSSES:
        raise ConfigError(f"[loss].name {loss.name!r} is not one of {', '.join(LOSSES)}")
    if loss.anchor is not None:
        loss.anchor = Modality.parse(loss.anchor).value
        if loss.anchor not in columns:
            raise ConfigError(f"[loss].anchor {loss.anchor} is not one of the trained modalities {list(columns)}")
    for key in ("temperature", "pairwise_weight", "label_smoothing", "max_logit_scale"):
        value = getattr(loss, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise ConfigError(f"[loss].{key} must be a number, not {value!r}")
    if not 0.0 <= loss.pairwise_weight < float("inf"):
        raise ConfigError(f"[loss].pairwise_weight must be a non-negative number, not {loss.pairwise_weight!r}")
    if loss.pairwise_weight and loss.name not in ("gram", "symile"):
        raise ConfigError("[loss].pairwise_weight adds InfoNCE to a higher-order loss: use it with gram or symile")
    if not 0.0 < loss.temperature < float("inf"):
        raise ConfigError(f"[loss].temperature must be a positive number, not {loss.temperature!r}")
    if not 1.0 <= loss.max_logit_scale < float("inf") or loss.max_logit_scale * loss.temperature < 1.0:
        raise ConfigError(
            f"[loss].max_logit_scale must be a finite number >= 1 / temperature, not {loss.max_logit_scale!r}"
        )
    if not 0.0 <= loss.label_smoothing < 1.0:
        raise ConfigError(f"[loss].label_smoothing must be in [0, 1), not {loss.label_smoothing!r}")
    if loss.label_smoothing and loss.name != "gram":
        raise ConfigError("[loss].label_smoothing applies to gram only")
    if loss.name == "symile" and loss.negative_sampling not in ("n", "n_squared"):
        raise ConfigError("[loss].negative_sampling must be 'n' or 'n_squared'")
    optimizer = _take("optimizer", raw.get("optimizer"), OptimizerSection)
    if optimizer.name not in ("adamw", "adam", "sgd"):
        raise ConfigError(f"[optimizer].name {optimizer.name!r}: choose adamw, adam or sgd")
    if optimizer.schedule not in ("cosine", "constant"):
        raise ConfigError(f"[optimizer].schedule {optimizer.schedule!r}: choose cosine or constant")
    training = _take("training", raw.get("training"), TrainingSection)
    if training.epochs < 1 or training.batch_size < 2:
        raise ConfigError("[training] needs epochs >= 1 and batch_size >= 2 (contrastive losses need negatives)")
    evaluation = _take("eval", raw.get("eval"), EvalSection)
    if evaluation.groups and not data.group_column:
        raise ConfigError("[eval].groups needs [data].group_column")
    if not 0.0 <= evaluation.fraction < 1.0:
        raise ConfigError("[eval].fraction must be in [0, 1)")
    augment = {Modality.parse(m).value: dict(v) for m, v in (raw.get("augment") or {}).items()}
    output = base_dir / str(raw["output"])
    checkpoint_dir = base_dir / str(raw["checkpoint_dir"]) if raw.get("checkpoint_dir") else Path(f"{output}.ckpt")
    return TrainConfig(
        space=_take("space", raw["space"], SpaceSection),
        data=data,
        encoders=encoders,
        loss=loss,
        optimizer=optimizer,
        training=training,
        eval=evaluation,
        augment=augment,
        output=output,
        checkpoint_dir=checkpoint_dir,
        base_dir=base_dir,
    )


def load_config(path: str | Path) -> TrainConfig:
    """Read a YAML (.yaml/.yml) or TOML (.toml) training config."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no config file at {path}")
    text = path.read_text()
    if path.suffix == ".toml":
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    elif path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    else:
        raise ConfigError(f"{path}: name the config .yaml, .yml or .toml")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the config must be a mapping of sections")
    return config_from_dict(raw, base_dir=path.parent)
