"""Deep Compression of a trained checkpoint: prune + retrain, quantize + fine-tune, encode, report
(Table 2's Markdown, the files, the ``compressions`` store columns, owned here). Retraining is the
project's ``FireClassifier`` at ``trainer.lr`` times ``lr_scale``; masks are ``prune`` hooks and shared
weights a parametrization, so ``model.parameters()`` exposes only what may change."""

from __future__ import annotations

import copy
import json
import logging
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from dse import latency
from dse.checkpoint import Checkpoint
from dse.compress import int8, storage, weights
from dse.compress.int8 import INT8_FILE, LATENCY_COLUMN
from dse.errors import ConfigError
from dse.metrics import ACCURACY, REGISTRY, to_mb, to_mib
from dse.model import build_model, build_spec
from dse.outputs import check_writable, write_files
from dse.store import ResultsStore, config_hash, provenance, utcnow_iso
from dse.text import table

log = logging.getLogger("dse.compress")
OUT = "--out"
TABLE = "compressions"
COLUMNS: dict[str, Any] = {
    "compression_id": str, "run_id": str | None, "study": str, "config_hash": str,
    "checkpoint": str, "overrides": str, "model": str, "data": str, "stage": str, "label": str,
    "bits": int | None, "density": str, "index_bits": str, "retrain_epochs": int, "finetune_epochs": int,
    "size_bytes": int, "size_mb": float, "ratio": float, LATENCY_COLUMN: float | None, "nonzero_weights": int,
    "params": int, **dict.fromkeys(ACCURACY, float | None), "file": str | None, "created_at": str,
    "dse_version": str, "git_commit": str,
}


@dataclass
class Options:
    """What to do to the checkpoint (the command-line flags of ``dse-compress``)."""

    bits: tuple[int, ...] = (8, 6)
    density: str = "table1"
    retrain_epochs: int = 1
    finetune_epochs: int = 1
    lr_scale: float = 0.1
    index_bits: tuple[int, int] = storage.DEFAULT_INDEX_BITS
    int8: bool = False  # also an int8 ONNX file of the dense network (dse.compress.int8), timed

    def validate(self) -> Options:
        self.bits = tuple(weights.check_bits(b) for b in self.bits)
        if not self.bits:
            raise ConfigError("--bits", "give at least one bit width")
        for key in ("retrain_epochs", "finetune_epochs"):
            if getattr(self, key) < 0:
                raise ConfigError(f"--{key.replace('_', '-')}", "must be >= 0")
        if not self.lr_scale > 0:
            raise ConfigError("--lr-scale", f"must be > 0 (got {self.lr_scale})")
        self.index_bits = storage.check_index_bits(self.index_bits)
        if self.int8:
            latency.require("--int8")
        return self


class Lab:
    """Retrains and evaluates models with the checkpoint's Lightning setup (one data module)."""

    def __init__(self, cfg: DictConfig, seed: int) -> None:
        from dse.data import build_datamodule
        from dse.train.checks import device_settings

        self.cfg = OmegaConf.to_container(cfg, resolve=True)
        tc = self.cfg["trainer"]
        self.accelerator, self.precision, _ = device_settings(cfg.trainer)
        self.seed = seed
        self.dm = build_datamodule(cfg, tc["batch_size"], tc["eval_batch_size"], seed)

    def _trainer(self, epochs: int | None = None) -> Any:
        """A fitting trainer that never validates, or with ``epochs=None`` an evaluating one."""
        import lightning as L

        return L.Trainer(accelerator=self.accelerator, devices=self.cfg["trainer"]["devices"],
                         precision=self.precision, max_epochs=epochs or 1,
                         limit_val_batches=None if epochs is None else 0,
                         num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                         enable_model_summary=False, enable_progress_bar=False)

    def _module(self, model: nn.Module, trainer_overrides: dict[str, Any] | None = None) -> Any:
        from dse.train.module import FireClassifier

        cfg = copy.deepcopy(self.cfg)
        cfg["trainer"].update(trainer_overrides or {})
        module = FireClassifier(cfg)
        module.model = model
        return module

    def fit(self, model: nn.Module, epochs: int, lr_scale: float) -> None:
        """Train in place for ``epochs`` at the checkpoint's LR times ``lr_scale``, no warmup."""
        import lightning as L

        if epochs > 0:
            L.seed_everything(self.seed, verbose=False)
            tc = self.cfg["trainer"]
            module = self._module(model, {"lr": tc["lr"] * lr_scale, "warmup_epochs": 0, "max_steps": -1})
            self._trainer(epochs).fit(module, datamodule=self.dm)

    def evaluate(self, model: nn.Module) -> dict[str, float | None]:
        """Validation and (unless ``trainer.test=false``) test top-1/top-5 of ``model``."""
        module, trainer = self._module(model), self._trainer()
        metrics: dict[str, Any] = {}
        trainer.validate(module, datamodule=self.dm, verbose=False)
        metrics.update(trainer.callback_metrics)
        if self.cfg["trainer"].get("test", True):
            trainer.test(module, datamodule=self.dm, verbose=False)
            metrics.update(trainer.callback_metrics)
        return {k: float(v) if (v := metrics.get(REGISTRY[k].key)) is not None else None for k in ACCURACY}


def _dense_model(ckpt: Checkpoint) -> tuple[nn.Module, dict[str, Any]]:
    return ckpt.network(), OmegaConf.to_container(ckpt.cfg.model, resolve=True)


def check(ckpt: Checkpoint, options: Options, out_dir: str | Path | None = None) -> Lab:
    """Check every input (options, densities, config, ``out_dir``) before any work; the Lab does it."""
    from dse.validate import validate

    options.validate()
    plain = OmegaConf.to_container(ckpt.cfg)
    plain.pop("logger", None)  # retraining here logs nothing: a logger's package is not needed
    validate(OmegaConf.create(plain))
    weights.resolve_densities(ckpt.network(), options.density)
    if out_dir is not None:
        check_writable(out_dir, OUT, directory=True)
    return Lab(ckpt.cfg, ckpt.seed)


def compress(ckpt: Checkpoint, opts: Options, out_dir: str | Path | None = None,
             lab: Lab | None = None) -> dict[str, Any]:
    """Rows (one per Table-2 stage) and size breakdowns, files in ``out_dir``; ``lab``: :func:`check`'s."""
    lab = lab or check(ckpt, opts, out_dir)
    model, model_cfg = _dense_model(ckpt)
    densities = weights.resolve_densities(model, opts.density)

    dense_bytes = 4 * build_spec(model_cfg).params  # the contract's size_bytes of the run
    rows: list[dict[str, Any]] = []
    files: dict[str, bytes] = {}
    parts: dict[str, dict[str, int]] = {}

    def row(stage: str, label: str, bits: int | None, size: int, m: nn.Module, metrics: dict,
            file: str | None) -> None:
        rows.append(dict(stage=stage, label=label, bits=bits, size_bytes=size, size_mb=to_mb(size),
                         size_mib=to_mib(size), ratio=dense_bytes / size,
                         nonzero_weights=weights.nonzero_weights(m), params=weights.count_params(m),
                         **metrics, file=file))

    log.info("dense: evaluating")
    row("dense", "dense fp32", 32, dense_bytes, model, lab.evaluate(model), None)
    if opts.int8:  # of the dense network, before pruning changes it; its row comes last
        dense = copy.deepcopy(model)
        int8_file, int8_metrics, latencies = int8.stage(model, lab.cfg, lab.dm)
        rows[0][LATENCY_COLUMN] = latencies["dense"]
    log.info("pruning (%s) and retraining %d epochs", opts.density, opts.retrain_epochs)
    weights.prune_model(model, densities)
    lab.fit(model, opts.retrain_epochs, opts.lr_scale)
    weights.finalize(model)
    pruned_metrics = lab.evaluate(model)
    enc = storage.encode_report(model, huffman=False, index_bits=opts.index_bits)
    files["pruned.dsec"], parts["pruned.dsec"] = enc.data, enc.parts
    row("pruned", f"pruned ({opts.density})", 32, enc.size, model, pruned_metrics, "pruned.dsec")
    for bits in opts.bits:  # a quantized copy, fine-tuned; its plain and Huffman files checked by decoding
        log.info("quantizing to %d bits and fine-tuning %d epochs", bits, opts.finetune_epochs)
        q = copy.deepcopy(model)
        weights.quantize_model(q, bits, seed=ckpt.seed)
        lab.fit(q, opts.finetune_epochs, opts.lr_scale)
        metrics = lab.evaluate(q)
        reference = {k: storage.tensor_bytes(v) for k, v in storage.plain_state_dict(q).items()}
        for huff, name, stage in ((False, f"q{bits}.dsec", "quantized"),
                                  (True, f"q{bits}_huffman.dsec", "huffman")):
            enc = storage.encode_report(q, huffman=huff, index_bits=opts.index_bits)
            decoded = storage.decode(enc.data, build_model(model_cfg)).state_dict()
            if {k: storage.tensor_bytes(v) for k, v in decoded.items()} != reference:
                raise RuntimeError(f"{name}: decoded weights differ from the quantized model")
            files[name], parts[name] = enc.data, enc.parts
            label = f"quantized {bits}-bit" + (" + Huffman" if huff else "")
            row(stage, label, bits, enc.size, q, metrics, name)
    if opts.int8:
        files[INT8_FILE] = int8_file
        row("int8", "int8 (onnxruntime static)", 8, len(int8_file), dense, int8_metrics, INT8_FILE)
        rows[-1][LATENCY_COLUMN] = latencies["int8"]
    result = dict(checkpoint=str(ckpt.path), run_id=ckpt.run_id, options=asdict(opts),
                  overrides=list(ckpt.overrides), model=model_cfg, dense_bytes=dense_bytes, rows=rows,
                  parts=parts)
    if out_dir is not None:
        write_files(out_dir, {**files, "model.json": json.dumps(model_cfg, indent=1) + "\n",
                              "compression.json": json.dumps(result, indent=1) + "\n",
                              "compression.md": format_table(result) + "\n"}, OUT)
    return result


def format_table(result: dict[str, Any]) -> str:
    """Table-2-style Markdown table of a :func:`compress` result."""
    accuracies = [REGISTRY[k] for k in ACCURACY]
    timed = any(r.get(LATENCY_COLUMN) is not None for r in result["rows"])
    lat = [REGISTRY[LATENCY_COLUMN]] if timed else []
    header = ["stage", "size (bytes)", "MB", "MiB", "ratio", "non-zero weights", "params",
              *(m.label for m in accuracies), *(f"{m.label} {m.unit}" for m in lat)]
    rows = [[r["label"], f"{r['size_bytes']:,}", f"{r['size_mb']:.3f}", f"{r['size_mib']:.3f}",
             f"{r['ratio']:.1f}x", f"{r['nonzero_weights']:,}", f"{r['params']:,}",
             *(m.show(r[m.name]) for m in accuracies), *(m.show(r.get(m.name)) for m in lat)]
            for r in result["rows"]]
    return table(header, rows, align=[None, *["right"] * (len(header) - 1)], markdown=True, pad=False)


def record(store: ResultsStore, ckpt: Checkpoint, result: dict[str, Any]) -> str:
    """Append the result's ``compressions`` rows, linked to the training run by ``run_id``."""
    cfg, opts, prov = ckpt.cfg, result["options"], provenance()
    if ckpt.run_id is None:
        run = store.get(config_hash(ckpt.original_cfg), ckpt.seed, statuses=None)
        ckpt.run_id = run["run_id"] if run else None
    common = dict(run_id=ckpt.run_id, study=cfg.study.name, config_hash=config_hash(
        ckpt.original_cfg), checkpoint=str(ckpt.path.resolve()), model=cfg.model.name,
        overrides=" ".join(ckpt.overrides), data=cfg.data.name, density=opts["density"],
        index_bits=",".join(map(str, opts["index_bits"])), retrain_epochs=opts["retrain_epochs"],
        finetune_epochs=opts["finetune_epochs"], created_at=utcnow_iso(),
        dse_version=prov["dse_version"], git_commit=prov["git_commit"])
    store.ensure_table(TABLE, COLUMNS)
    store.append([{**common, "compression_id": uuid.uuid4().hex, **{k: r[k] for k in COLUMNS if k in r}}
                  for r in result["rows"]], table=TABLE)
    return str(store)
