"""Typed schemas of the shipped config files, one dataclass per group variant (litgpt's ``config.py`` style).

Each YAML file names its schema first in its ``defaults:`` list (``- /schema_detector_deft@_here_``), so
Hydra merges the file into the dataclass: a misspelt key (in a YAML overlay or on the command line) or a
value of the wrong type fails at composition, naming the key. The values live in the YAML files (one
place, with their comments); fields here are ``MISSING`` unless no shipped YAML sets the key.

``_target_`` nodes (optimisers, schedulers, PEFT modules, readers, losses, model builders, loggers) are
closed over the keys the project ships; a user's own target still takes extra keys with ``+key=value``,
and a parent field holding such a node is typed ``Any``, so a whole other node can replace it (another
option of ``optimizer/``, ``scheduler/``, or a user's dataset reader). ``detector.kind`` is a plain
``str``: a plugin detector brings its own config node (and schema, if it wants one).

Only dataclasses and ``typing`` here: registering them (``deft_lightning.config``) must stay cheap for
``--help`` and shell completion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

from omegaconf import MISSING

Number = Union[int, float]  # keeps a YAML integer an integer (resolved configs stay as written)


def _node(cls):
    return field(default_factory=cls)


# ----- reusable _target_ blocks (conf/optimizer, conf/scheduler) -------------------------------------
@dataclass
class SGDOptimizerConfig:
    _target_: str = MISSING
    _partial_: bool = True  # called with the parameter list
    lr: float = MISSING
    momentum: float = MISSING
    weight_decay: float = MISSING


@dataclass
class AdamWOptimizerConfig:
    _target_: str = MISSING
    _partial_: bool = True
    lr: float = MISSING
    weight_decay: float = MISSING


@dataclass
class CosineSchedulerConfig:
    _target_: str = MISSING
    _partial_: bool = True  # called with the optimiser
    T_max: int = MISSING


# ----- detector (phase 1) ----------------------------------------------------------------------------
@dataclass
class ClipConfig:
    model_name: str = MISSING
    pretrained: Optional[str] = MISSING  # open_clip tag; null: random weights
    weights: Optional[str] = MISSING


@dataclass
class PromptConfig:
    n_ctx: int = MISSING
    class_specific: bool = MISSING
    class_position: str = MISSING
    init_words: Optional[str] = MISSING


@dataclass
class DetectorConfig:
    """What every shipped detector has; ``kind`` names its registered detector class."""

    name: str = MISSING
    kind: str = MISSING
    builder: Any = MISSING  # a _target_ node (_partial_: true), called with (cfg, class_names, noise)
    clip: ClipConfig = _node(ClipConfig)
    batch_size: int = MISSING


@dataclass
class TrainedDetectorConfig(DetectorConfig):
    weights: Optional[str] = MISSING
    epochs: int = MISSING
    warmup_epochs: int = MISSING
    selection_source: str = MISSING
    optimizer: Any = MISSING
    scheduler: Any = MISSING


@dataclass
class DeftDetectorConfig(TrainedDetectorConfig):
    prompt: PromptConfig = _node(PromptConfig)
    dp_warmup_epochs: int = MISSING
    logit_scale: Optional[float] = MISSING
    real_noise_variant: bool = MISSING


# Experiments (demo, toy) set a world's detector settings once, for whichever detector= is chosen:
# the prompt of DEFT, the trained detectors' optimiser and epochs, the logit scale. A detector that does
# not use one of these keys still accepts it from an overlay (null when none sets it) and ignores it.
@dataclass
class LabelMatchDetectorConfig(DetectorConfig):
    prompt_template: str = MISSING
    logit_scale: Optional[float] = MISSING
    prompt: Optional[Any] = None  # unused (no learned prompt)
    epochs: Optional[int] = None  # unused (no training)
    optimizer: Optional[Any] = None  # unused (no training)


@dataclass
class SmallLossDetectorConfig(TrainedDetectorConfig):
    forget_rate: Optional[Union[float, str]] = MISSING  # oracle | a number | null (GMM estimate)
    selection: str = MISSING
    head_init: str = MISSING
    prompt_template: str = MISSING
    prompt: Optional[Any] = None  # unused (a linear head, no learned prompt)
    logit_scale: Optional[float] = None  # unused (CE on the head's own logits)


# ----- peft (the visual tower's PEFT module) ---------------------------------------------------------
@dataclass
class PeftModuleConfig:
    _target_: str = MISSING
    _partial_: bool = True  # called as module(visual=clip_model.visual)
    partial: Optional[int] = MISSING


@dataclass
class VPTModuleConfig(PeftModuleConfig):
    num_tokens: int = MISSING
    deep: bool = MISSING


@dataclass
class LoRAModuleConfig(PeftModuleConfig):
    rank: int = MISSING
    alpha: Number = MISSING
    dropout: float = MISSING
    targets: List[str] = MISSING


@dataclass
class AdapterModuleConfig(PeftModuleConfig):
    bottleneck: int = MISSING
    activation: str = MISSING
    norm: bool = MISSING


@dataclass
class SSFModuleConfig(PeftModuleConfig):
    init_std: float = MISSING


@dataclass
class BiasModuleConfig(PeftModuleConfig):
    pass


@dataclass
class PeftConfig:
    name: str = MISSING
    module: Any = MISSING


# ----- backbone (phase 2) ----------------------------------------------------------------------------
@dataclass
class ClipClassifierConfig:
    _target_: str = MISSING
    _partial_: bool = True  # called as model(num_classes=C, class_names=[...])
    model_name: str = MISSING
    pretrained: Optional[str] = MISSING
    weights: Optional[str] = MISSING
    cache_dir: Optional[str] = MISSING
    train_all: bool = MISSING
    head_init: str = MISSING


@dataclass
class TimmClassifierConfig:
    _target_: str = MISSING
    _partial_: bool = True
    model_name: str = MISSING
    pretrained: Optional[bool] = MISSING  # null (as the CLIP backbones and experiment=demo write it): random init, as false
    weights: Optional[str] = MISSING
    image_size: int = MISSING
    cache_dir: Optional[str] = MISSING


@dataclass
class BackboneConfig:
    name: str = MISSING
    model: Any = MISSING
    optimizer: Any = MISSING
    epochs: int = MISSING
    batch_size: int = MISSING
    channels_last: bool = MISSING


# ----- method (phase-2 training rule) ----------------------------------------------------------------
@dataclass
class LossConfig:
    _target_: str = MISSING
    _partial_: bool = True  # called as loss(num_samples=N, num_classes=C)


@dataclass
class ELRLossConfig(LossConfig):
    beta: float = MISSING
    lam: float = MISSING


@dataclass
class GCELossConfig(LossConfig):
    q: float = MISSING


@dataclass
class SCELossConfig(LossConfig):
    alpha: float = MISSING
    beta: float = MISSING
    label_clamp: float = MISSING


@dataclass
class MethodConfig:
    name: str = MISSING
    uses_clean_subset: bool = MISSING
    loss: Any = MISSING


@dataclass
class GmmRefitConfig:
    warmup_epochs: int = MISSING
    threshold: float = MISSING


@dataclass
class GmmMethodConfig(MethodConfig):
    gmm: GmmRefitConfig = _node(GmmRefitConfig)


# ----- noise -----------------------------------------------------------------------------------------
@dataclass
class NoiseConfig:
    mode: str = MISSING  # none | sym | asym | idn | real
    ratio: float = MISSING
    seed: int = MISSING
    label_file: Optional[str] = MISSING


# ----- dataset (and its reader) ----------------------------------------------------------------------
@dataclass
class ReaderConfig:
    _target_: str = MISSING
    _partial_: bool = True


@dataclass
class NamedReaderConfig(ReaderConfig):
    class_names: Any = MISSING  # null | curated | a file | a list


@dataclass
class Cifar100NReaderConfig(NamedReaderConfig):
    human_file: Optional[str] = MISSING


@dataclass
class Clothing1MReaderConfig(NamedReaderConfig):
    subset_size: Optional[int] = MISSING
    subset_seed: int = MISSING
    with_val: bool = MISSING


@dataclass
class CsvReaderConfig(NamedReaderConfig):
    file: str = MISSING
    num_classes: Optional[int] = MISSING
    encoding: str = MISSING
    split_fraction: Optional[float] = MISSING
    split_seed: int = MISSING


@dataclass
class ImageFolderReaderConfig(NamedReaderConfig):
    split_fraction: Optional[float] = MISSING
    split_seed: int = MISSING


@dataclass
class WebvisionReaderConfig(NamedReaderConfig):
    imagenet_root: Optional[str] = MISSING
    num_classes: int = MISSING


@dataclass
class SyntheticReaderConfig(ReaderConfig):
    num_classes: int = MISSING
    num_train: int = MISSING
    num_test: int = MISSING
    image_size: int = MISSING
    seed: int = MISSING


@dataclass
class ToyReaderConfig(ReaderConfig):
    """dataset/toy.yaml and toy_v2.yaml (``deft_lightning.toy.reader.read_toy``)."""

    world: str = MISSING
    num_train: int = MISSING
    num_test: int = MISSING
    seed: int = MISSING
    hue_shift_deg: Optional[float] = None  # null: the world's own (v2: 30 degrees)


@dataclass
class DatasetConfig:
    name: str = MISSING
    root: Optional[str] = MISSING
    reader: Any = MISSING  # Any: api.py swaps in its in-memory reader
    num_classes: Optional[int] = MISSING
    batch_size: int = MISSING
    real_noise_variant: bool = MISSING


@dataclass
class NamedDatasetConfig(DatasetConfig):
    class_names: Any = MISSING


@dataclass
class DeftScheduleConfig:
    """A dataset's own DEFT phase-1 schedule (the real-noise ones: the reference's 5 and 1)."""

    warmup_epochs: int = MISSING
    dp_warmup_epochs: int = MISSING


@dataclass
class RealNoiseDatasetConfig(NamedDatasetConfig):
    deft: DeftScheduleConfig = _node(DeftScheduleConfig)


# ----- trainer ---------------------------------------------------------------------------------------
@dataclass
class TrainerConfig:
    """lightning.Trainer's arguments that the shipped trainers set. Others: ``+trainer.KEY=VALUE``."""

    _target_: str = MISSING
    accelerator: str = MISSING
    devices: Any = MISSING  # auto | a count | -1 | a list of ids
    precision: Union[str, int] = MISSING
    num_sanity_val_steps: int = MISSING
    log_every_n_steps: int = MISSING
    enable_model_summary: bool = MISSING
    # set by debug=fast; null is Lightning's own default (every batch)
    limit_train_batches: Optional[Number] = None
    limit_val_batches: Optional[Number] = None


@dataclass
class StrategyTrainerConfig(TrainerConfig):
    strategy: str = MISSING


@dataclass
class SlurmTrainerConfig(StrategyTrainerConfig):
    num_nodes: int = MISSING
    plugins: List[Any] = MISSING


# ----- logger ----------------------------------------------------------------------------------------
@dataclass
class CSVLoggerConfig:
    _target_: str = MISSING
    save_dir: str = MISSING
    name: str = MISSING


@dataclass
class WandbLoggerConfig:
    _target_: str = MISSING
    project: str = MISSING
    entity: Optional[str] = MISSING
    save_dir: str = MISSING
    group: Optional[str] = MISSING
    tags: Optional[List[str]] = MISSING
    log_model: Union[bool, str] = MISSING


# ----- callbacks -------------------------------------------------------------------------------------
@dataclass
class ModelCheckpointConfig:
    _target_: str = MISSING
    filename: str = MISSING
    save_top_k: int = MISSING
    save_last: bool = MISSING
    every_n_epochs: int = MISSING
    save_on_train_epoch_end: bool = MISSING
    enable_version_counter: bool = MISSING


@dataclass
class ModelSummaryConfig:
    _target_: str = MISSING
    max_depth: int = MISSING


@dataclass
class CallbacksConfig:
    """Each callback a ``_target_`` node (``Any``: null leaves it out), plus the progress-bar switch."""

    progress_bar: bool = MISSING
    model_checkpoint: Any = MISSING
    rng_state: Any = MISSING
    model_summary: Any = MISSING
    stop_on_signal: Any = MISSING
    bar: Any = MISSING
    epoch_lines: Any = MISSING
    extra: Dict[str, Any] = MISSING  # a user's own callbacks, each a _target_ node


# ----- paths -----------------------------------------------------------------------------------------
@dataclass
class PathsConfig:
    data_dir: str = MISSING
    cache_dir: str = MISSING
    log_dir: str = MISSING
    output_dir: str = MISSING


# ----- the root blocks of train.yaml / detect.yaml / inspect_data.yaml -------------------------------
@dataclass
class DataConfig:
    """The DataModule's constructor arguments (``instantiate(cfg.data)``); the first ones are interpolated
    from the dataset, noise, paths and adapter groups, the rest are ``data.*`` options."""

    _target_: str = "deft_lightning.data.datamodule.NoisyLabelDataModule"
    _convert_: str = "all"
    reader: Any = MISSING
    root: Optional[str] = MISSING
    dataset_name: str = MISSING
    noise: Any = MISSING
    batch_size: int = MISSING
    cache_dir: Optional[str] = MISSING
    mask_mode: str = MISSING
    num_workers: int = MISSING
    eval_batch_size: Optional[int] = MISSING
    pin_memory: Optional[bool] = MISSING
    persistent_workers: Optional[bool] = MISSING
    val_fraction: float = MISSING
    val_seed: int = MISSING
    on_bad_image: str = MISSING  # error | skip


@dataclass
class ExportConfig:
    enabled: bool = MISSING
    relabel_threshold: Optional[float] = MISSING
    symlink_dir: Optional[str] = MISSING


@dataclass
class ReportConfig:
    num_suspects: int = MISSING
    parquet: bool = MISSING
    features: bool = MISSING
    export: ExportConfig = _node(ExportConfig)


@dataclass
class AdapterConfig:
    mask_mode: str = MISSING  # subset | loss_mask
    selection: Optional[str] = MISSING
    scheduler: Any = MISSING


@dataclass
class TrainRootConfig:
    """``train.yaml`` and ``detect.yaml``: the root keys, and one slot per config group.

    A slot is ``Any`` so that each group option brings its own schema (a plugin's option may bring none);
    a key that is neither a root key nor a group fails at composition.
    """

    phases: List[str] = MISSING
    seed: int = MISSING
    resume: Union[bool, str] = MISSING  # true/false, or the run directory to continue
    data: DataConfig = _node(DataConfig)
    report: ReportConfig = _node(ReportConfig)
    adapter: AdapterConfig = _node(AdapterConfig)
    paths: Any = MISSING
    noise: Any = MISSING
    dataset: Any = MISSING
    detector: Any = MISSING
    peft: Any = MISSING
    backbone: Any = MISSING
    method: Any = MISSING
    trainer: Any = MISSING
    logger: Any = None  # logger=none: no logger
    callbacks: Any = MISSING


@dataclass
class InspectConfig:
    out: Optional[str] = MISSING
    json: bool = MISSING
    first_items: int = MISSING
    use_cache: bool = MISSING
    verify_images: bool = MISSING
    unreadable_out: str = MISSING
    workers: Optional[int] = MISSING


@dataclass
class InspectDataRootConfig:
    inspect: InspectConfig = _node(InspectConfig)
    paths: Any = MISSING
    noise: Any = MISSING
    dataset: Any = MISSING


# ConfigStore name -> schema. YAML files refer to them as ``/NAME@_here_`` (or ``/NAME@KEY`` for a block).
# Root-level names, not a config group: they stay out of --help's group list and of completion.
SCHEMAS: dict[str, type] = {
    "schema_train": TrainRootConfig,
    "schema_inspect_data": InspectDataRootConfig,
    "schema_optimizer_sgd": SGDOptimizerConfig,
    "schema_optimizer_adamw": AdamWOptimizerConfig,
    "schema_scheduler_cosine": CosineSchedulerConfig,
    "schema_detector_deft": DeftDetectorConfig,
    "schema_detector_label_match": LabelMatchDetectorConfig,
    "schema_detector_small_loss": SmallLossDetectorConfig,
    "schema_peft": PeftConfig,
    "schema_peft_vpt": VPTModuleConfig,
    "schema_peft_lora": LoRAModuleConfig,
    "schema_peft_adapter": AdapterModuleConfig,
    "schema_peft_ssf": SSFModuleConfig,
    "schema_peft_bias": BiasModuleConfig,
    "schema_backbone": BackboneConfig,
    "schema_backbone_clip": ClipClassifierConfig,
    "schema_backbone_timm": TimmClassifierConfig,
    "schema_method": MethodConfig,
    "schema_method_gmm": GmmMethodConfig,
    "schema_loss": LossConfig,
    "schema_loss_elr": ELRLossConfig,
    "schema_loss_gce": GCELossConfig,
    "schema_loss_sce": SCELossConfig,
    "schema_noise": NoiseConfig,
    "schema_dataset": DatasetConfig,
    "schema_dataset_named": NamedDatasetConfig,
    "schema_dataset_real_noise": RealNoiseDatasetConfig,
    "schema_reader": ReaderConfig,
    "schema_reader_named": NamedReaderConfig,
    "schema_reader_cifar100n": Cifar100NReaderConfig,
    "schema_reader_clothing1m": Clothing1MReaderConfig,
    "schema_reader_csv": CsvReaderConfig,
    "schema_reader_imagefolder": ImageFolderReaderConfig,
    "schema_reader_webvision": WebvisionReaderConfig,
    "schema_reader_synthetic": SyntheticReaderConfig,
    "schema_reader_toy": ToyReaderConfig,
    "schema_trainer": TrainerConfig,
    "schema_trainer_strategy": StrategyTrainerConfig,
    "schema_trainer_slurm": SlurmTrainerConfig,
    "schema_logger_csv": CSVLoggerConfig,
    "schema_logger_wandb": WandbLoggerConfig,
    "schema_callbacks": CallbacksConfig,
    "schema_callback_model_checkpoint": ModelCheckpointConfig,
    "schema_callback_model_summary": ModelSummaryConfig,
    "schema_paths": PathsConfig,
}
