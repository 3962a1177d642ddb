"""Fused training (dse/model/net.py, dse/train/fused.py, hydra/launcher=dse_fused) on the CPU.

The contract: member k of a fused group computes exactly its own network, so a fused run ends
where its separate ``dse-train`` run ends, up to fp32 rounding. The tolerance: grouped convolutions
sum in another order than plain ones, and training amplifies rounding, as it amplifies a change of
thread count. Measured at this test's settings (SGD, lr 0.01, 4 steps) the parameters of fused and
separate runs differ by <= 5e-7 relative (L2 norm of the whole vector); the test allows 1e-4, and
5e-4 for the losses. (With AdamW at lr 3e-3 both a fused run and a separate run with 1 instead of 2
threads drift to ~1e-3 after 8 steps: Adam turns the rounding noise of near-zero gradients into
+-lr steps, so there only the metrics' agreement is meaningful.)
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from dse.compose import compose
from dse.model.net import FireNet, FusedFireNet
from dse.model.spec import analyze, build_spec
from dse.store import ResultsStore, config_hash
from dse.train.fused import Member, fusable, train_group
from dse.train.run import train_once
from tests.conftest import FP32

# 256 images a split, batch 64: 4 steps; augmentation on (fused members see the very same crops)
SMALL = ["trainer=smoke", "data.subset=256", "model.base_e=16", "model.incr_e=16",
         "model.dropout=0", "data.augment=true", "data.flip=true", "trainer.max_epochs=1",
         "trainer.optimizer=sgd", "trainer.lr=0.01", "trainer.progress_bar=false",
         "trainer.checkpoint_every=0", "trainer.checkpoint=true", *FP32]
POINTS = [["model.sr=0.125"], ["model.sr=0.5", "model.bypass=simple"],
          ["model.sr=0.25", "model.bypass=complex"]]
EXACT = ("status", "epochs", "config_hash", "params", "size_bytes", "macs", "seed")
CLOSE = ("val_loss", "test_loss")
ACCURACY = ("val_top1", "val_top5", "test_top1", "test_top5")
TINY = dict(base_e=16, incr_e=16, freq=2, sr=0.125, pct3x3=0.5, n_fire=4, bypass="none",
            stem={"channels": 16, "kernel": 3, "stride": 1, "padding": 1}, batch_norm=True,
            pool_after=["conv1", "fire3"], dropout=0.0, in_channels=1, num_classes=10)
VARIANTS = [{}, {"sr": 0.5, "bypass": "simple"}, {"sr": 0.25, "pct3x3": 1.0, "bypass": "complex"},
            {"base_e": 24, "incr_e": 8, "pct3x3": 0.25, "bypass": "simple"}]


def _tiny(seed0: int = 0) -> tuple[list[FireNet], FusedFireNet]:
    nets = []
    for i, v in enumerate(VARIANTS):
        torch.manual_seed(seed0 + i)
        nets.append(FireNet(build_spec({**TINY, **v})))
    fused = FusedFireNet([n.spec for n in nets])
    for k, n in enumerate(nets):
        fused.load_member(k, n.state_dict())
    return nets, fused


def _padding(fused: FusedFireNet) -> list[torch.Tensor]:
    """Every entry of every parameter that belongs to no member."""
    real = {n: m.any(0) for n, m in fused._masks.items()}
    return [p.detach()[~real[n]] for n, p in fused.named_parameters()]


@pytest.mark.parametrize("training", [True, False])
def test_each_member_computes_its_own_network(training: bool) -> None:
    nets, fused = _tiny()
    for k, n in enumerate(nets):  # the state dict round trip is exact
        mine, theirs = fused.member_state(k), n.state_dict()
        assert set(mine) == set(theirs)
        assert all(torch.equal(mine[key], theirs[key]) for key in theirs)
    fused.train(training)
    xs = [torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(k)) for k in range(4)]
    out = fused(torch.cat(xs, 1))
    assert out.shape == (6, 4, 10)
    for k, n in enumerate(nets):
        n.train(training)
        torch.testing.assert_close(out[:, k], n(xs[k]), rtol=1e-5, atol=1e-6)


def test_padding_stays_exactly_zero_through_adamw_and_a_frozen_member_disturbs_no_one() -> None:
    _, fused = _tiny()
    opt = torch.optim.AdamW(fused.parameters(), lr=0.01, weight_decay=0.1)
    x = torch.randn(8, 4, 12, 12)
    y = torch.randint(0, 10, (8, 4))
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(fused(x).permute(0, 2, 1), y).backward()
        fused.mask_grads()
        opt.step()
    assert all(int(t.count_nonzero()) == 0 for t in _padding(fused))
    real = {n: m.any(0) for n, m in fused._masks.items()}
    for name, p in fused.named_parameters():
        for t in opt.state[p].values():
            if t.shape == p.shape:
                assert int(t[~real[name]].count_nonzero()) == 0, name
    fused.eval()
    before = fused(x)
    with torch.no_grad():  # member 2 diverges: NaN everywhere in its slice
        fused.features.conv1.conv.weight[32:48] = float("nan")
    fused.freeze(2, opt)
    after = fused(x)
    assert torch.equal(after[:, [0, 1, 3]], before[:, [0, 1, 3]])
    assert torch.isfinite(after).all() and not fused.active[2]
    assert all(int(t.count_nonzero()) == 0 for key, t in fused.member_state(2).items()
               if "running" not in key and "num_batches" not in key)


def test_dropout_masks_are_each_members_own_reproducible_stream() -> None:
    specs = [build_spec({**TINY, "dropout": 0.5}) for _ in range(3)]
    fused = FusedFireNet(specs).train()
    x = torch.ones(64, 3 * 64, 7, 7)

    def draw(seeds: list[int]) -> torch.Tensor:
        fused.dropout_generators = [torch.Generator().manual_seed(s) for s in seeds]
        return fused._dropout(x).reshape(64, 3, 64, 7, 7)

    a, b = draw([0, 1, 2]), draw([0, 1, 2])
    assert torch.equal(a, b)  # the same seeds, the same masks
    for k in range(3):
        assert abs(float((a[:, k] == 0).float().mean()) - 0.5) < 0.02
    assert not torch.equal(a[:, 0], a[:, 1])  # members draw apart
    assert torch.equal(draw([5, 1, 9])[:, 1], a[:, 1])  # and each from its own generator only


def test_members_must_share_the_macro_layout() -> None:
    with pytest.raises(ValueError, match="share"):
        FusedFireNet([build_spec(TINY), build_spec({**TINY, "n_fire": 3})])


def test_jobs_that_cannot_share_a_network_train_alone() -> None:
    assert fusable(compose(SMALL)) is None
    assert "trainer.compile" in fusable(compose([*SMALL, "trainer.compile=true"]))


# ---------------------------------------------------------------------------------- training
def _weights(ckpt: Path) -> torch.Tensor:
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    return torch.cat([v.flatten().float() for k, v in sorted(state.items())
                      if "running" not in k and "num_batches" not in k])


@pytest.fixture(scope="module")
def separate(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[dict, Path]]:
    """The three points trained one at a time, as dse-train trains them (seeds 0, 1, 2)."""
    tmp = tmp_path_factory.mktemp("separate")
    out = []
    for seed, point in enumerate(POINTS):
        cfg = compose([*SMALL, *point, f"paths.runs={tmp}"])
        rec = train_once(cfg, analyze(build_spec(cfg.model), 28), seed, tmp / str(seed))
        out.append((rec, tmp / str(seed) / "checkpoints/last.ckpt"))
    return out


def _fused(tmp: Path, callbacks: tuple = ()) -> list[tuple[dict, Path]]:
    members = []
    for seed, point in enumerate(POINTS):
        cfg = compose([*SMALL, *point, f"paths.runs={tmp}"])
        members.append(Member(cfg, analyze(build_spec(cfg.model), 28), seed, tmp / str(seed)))
    rows = train_group(members, callbacks)
    return [(r, tmp / str(k) / "checkpoints/last.ckpt") for k, r in enumerate(rows)]


def _same_run(got: tuple[dict, Path], want: tuple[dict, Path]) -> None:
    (g, gck), (w, wck) = got, want
    assert {k: g[k] for k in EXACT} == {k: w[k] for k in EXACT}
    assert set(g) == set(w)  # the same columns
    for key in CLOSE:
        assert math.isclose(g[key], w[key], rel_tol=5e-4), (key, g[key], w[key])
    for key in ACCURACY:  # one image of 256 at most
        assert abs(g[key] - w[key]) <= 1 / 256 + 1e-9, (key, g[key], w[key])
    a, b = _weights(gck), _weights(wck)
    drift = float((a - b).norm() / b.norm())
    assert drift < 1e-4, drift


def test_fused_members_end_where_their_separate_runs_end(separate, tmp_path: Path) -> None:
    for got, want in zip(_fused(tmp_path), separate, strict=True):
        _same_run(got, want)


def test_a_diverging_member_is_recorded_and_the_others_train_on(separate, tmp_path: Path) -> None:
    from lightning.pytorch.callbacks import Callback

    class NaNMember1(Callback):  # member 1's first layer turns NaN after its third step
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            if batch_idx == 2:
                block = module.model.features.conv1
                rows, _ = block.index(1)
                with torch.no_grad():
                    block.conv.weight[rows] = float("nan")

    rows = _fused(tmp_path, (NaNMember1(),))
    assert rows[1][0]["status"] == "diverged"
    assert "non-finite training loss" in rows[1][0]["error"]
    for k in (0, 2):
        _same_run(rows[k], separate[k])


def test_a_batch_is_grouped_by_layout_and_settings_in_order_and_capped(tmp_path: Path) -> None:
    from dse.train.group import _Seed, plan
    from dse.train.run import Point
    from dse.validate import model_report, validate

    jobs = [[*SMALL, "model.sr=0.125"], [*SMALL, "model.sr=0.5", "model.bypass=simple"],
            [*SMALL, "model.batch_norm=false"], [*SMALL, "trainer.compile=true"],
            [*SMALL, "model.pct3x3=0.25"], [*SMALL, "trainer.lr=0.02"]]
    cfgs = [compose(j) for j in jobs]
    for c in cfgs:
        validate(c)
    points = [Point(c, model_report(c), tmp_path / str(i), "", ()) for i, c in enumerate(cfgs)]
    todo = [_Seed(j, seed, None) for j in range(len(jobs)) for seed in (0, 1)]
    groups = [[(s.job, s.seed) for s in g] for g in plan(points, todo, max_members=3)]
    assert groups == [[(0, 0), (0, 1), (1, 0)], [(1, 1), (4, 0), (4, 1)],  # widths and bypass share
                      [(2, 0), (2, 1)],  # another layout (no BatchNorm)
                      [(3, 0)], [(3, 1)],  # trainer.compile=true trains alone
                      [(5, 0), (5, 1)]]  # another trainer setting


def test_a_failing_group_is_every_members_failed_row_and_the_batch_goes_on(tmp_path: Path) -> None:
    from dse.train.group import Job, run_jobs

    # 10-class labels: the 5-way members' cross-entropy raises in the first step, the 10-way trains
    base = ["data=synthetic", "data.synthetic_size=128", "data.val_size=32",
            "trainer=smoke", "trainer.max_epochs=1",
            "model.base_e=16", "model.incr_e=16", "trainer.progress_bar=false",
            "trainer.checkpoint_every=0", f"paths.runs={tmp_path}", "study.name=fail", "study.seeds=2"]
    jobs = [Job(compose([*base, f"model.num_classes={n}"]), tmp_path / str(i))
            for i, n in enumerate((5, 10))]
    summaries = run_jobs(jobs, max_members=4)
    assert [s["status"] for s in summaries] == ["failed", "ok"]
    assert summaries[0]["error"].startswith("IndexError: Target")
    df = ResultsStore(tmp_path / "fail/results.db", create=False).frame()
    five = df.config_hash == config_hash(jobs[0].cfg)
    assert sorted(zip(five, df.seed, df.status, strict=True)) == [
        (False, 0, "ok"), (False, 1, "ok"), (True, 0, "failed"), (True, 1, "failed")]
    assert (tmp_path / "0/error_seed0.txt").is_file() and (tmp_path / "0/error_seed1.txt").is_file()


# a group of one is the single run dse had before the one body: these numbers and weights are what
# the separate FireClassifier path gave (CPU, one thread, deterministic), dropout and smoothing on
ONE = ["trainer=smoke", "data.subset=256", "model.base_e=16", "model.incr_e=16", "data.augment=true",
       "data.flip=true", "trainer.max_epochs=2", "trainer.label_smoothing=0.1", "trainer.progress_bar=false",
       "trainer.checkpoint_every=0", "trainer.checkpoint=true", "trainer.deterministic=true",
       "trainer.chance_epochs=10", *FP32]
ONE_PINNED = {"model.bypass=simple": ("model.dropout=0.5", 2.3036627769470215, 2.271730422973633,
                                      0.1015625, 0.15625, "79fc6d8ab0c0e3d2"),
              "model.bypass=complex": ("model.dropout=0.3", 2.3097798824310303, 2.3584461212158203,
                                       0.125, 0.1015625, "50f1b12701ab5313")}


@pytest.mark.parametrize("bypass", list(ONE_PINNED))
def test_a_group_of_one_is_the_old_single_run_bit_for_bit(bypass: str, tmp_path: Path) -> None:
    import hashlib

    dropout, val_loss, test_loss, val_top1, test_top1, digest = ONE_PINNED[bypass]
    cfg = compose([*ONE, f"paths.runs={tmp_path}", bypass, dropout])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rec = train_once(cfg, analyze(build_spec(cfg.model), 28), 3, tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert (rec["status"], rec["epochs"]) == ("ok", 2)
    assert (rec["val_loss"], rec["test_loss"], rec["val_top1"], rec["test_top1"]) == (
        val_loss, test_loss, val_top1, test_top1)
    state = torch.load(tmp_path / "checkpoints/last.ckpt", weights_only=True)["state_dict"]
    got = hashlib.sha256(b"".join(v.numpy().tobytes() for _, v in sorted(state.items()))).hexdigest()
    assert got[:16] == digest


def test_fused_members_with_dropout_end_where_their_separate_runs_end(tmp_path: Path) -> None:
    # each member draws its separate run's dropout masks (before the one body: val 0.158 vs 0.106)
    members, alone = [], []
    for seed, point in enumerate(POINTS[:2]):
        cfg = compose([*SMALL, *point, "model.dropout=0.5", f"paths.runs={tmp_path}"])
        rep = analyze(build_spec(cfg.model), 28)
        alone.append((train_once(cfg, rep, seed, tmp_path / f"a{seed}"),
                      tmp_path / f"a{seed}/checkpoints/last.ckpt"))
        members.append(Member(cfg, rep, seed, tmp_path / f"f{seed}"))
    rows = train_group(members)
    for k, want in enumerate(alone):
        _same_run((rows[k], tmp_path / f"f{k}/checkpoints/last.ckpt"), want)


def test_a_group_stopped_mid_epoch_resumes_to_the_rows_it_would_have_had(tmp_path: Path) -> None:
    import os
    import signal

    import lightning as L

    from dse.signals import stop_signals

    class SigtermAt(L.Callback):  # as training step (1, 1) starts
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
            if (trainer.current_epoch, batch_idx) == (1, 1):
                os.kill(os.getpid(), signal.SIGTERM)

    def members(study: str) -> list[Member]:
        out = []
        for seed, point in enumerate(POINTS[:2]):
            cfg = compose([*SMALL, *point, "model.dropout=0.5", "trainer.max_epochs=2",
                           "trainer.checkpoint_every=1", f"paths.runs={tmp_path}", f"study.name={study}"])
            out.append(Member(cfg, analyze(build_spec(cfg.model), 28), seed, tmp_path / study / str(seed)))
        return out

    want = train_group(members("ref"))
    with pytest.raises(KeyboardInterrupt), stop_signals():  # as dse-train: it then exits 130
        train_group(members("res"), (SigtermAt(),))
    got = train_group(members("res"))
    measured = ("status", "epochs", *CLOSE, *ACCURACY)
    for g, w in zip(got, want, strict=True):
        assert {k: g[k] for k in measured} == {k: w[k] for k in measured}
        assert (g["resumed_from_epoch"], w["resumed_from_epoch"]) == (1, None)
