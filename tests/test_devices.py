"""One GPU per multirun job (dse/train/devices.py) and one device for in-memory data (no GPU needed)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dse.compose import compose
from dse.data import build_datamodule
from dse.errors import ConfigError
from dse.train.devices import ENV, assign, job_device, pin_job, visible_devices
from dse.validate import validate

GPU = {"accelerator": "auto", "devices": 1}


def no_count() -> int:
    raise AssertionError("the GPUs were counted although CUDA_VISIBLE_DEVICES lists them")


def test_assign_round_robin_and_packed() -> None:
    four = ["0", "1", "2", "3"]
    assert [assign(n, four) for n in range(6)] == ["0", "1", "2", "3", "0", "1"]
    assert [assign(n, four, per_device=2) for n in range(10)] == list("0011223300")
    assert [assign(n, ["GPU-a", "GPU-b"], 3) for n in range(7)] == ["GPU-a"] * 3 + ["GPU-b"] * 3 + ["GPU-a"]
    for bad in ((-1, four, 1), (0, four, 0), (0, [], 1)):
        with pytest.raises(ValueError):
            assign(*bad)


def test_visible_devices_from_the_variable_else_the_count() -> None:
    assert visible_devices(None, lambda: 3) == ["0", "1", "2"]
    assert visible_devices("4, 6", no_count) == ["4", "6"]
    assert visible_devices("", no_count) == []  # no GPU at all


@pytest.mark.parametrize(("job", "visible", "one_gpu", "initialized", "want"), [
    (5, ["0", "1"], True, False, "1"),
    (None, ["0", "1"], True, False, None),  # a single run
    (5, ["3"], True, False, None),  # one device: the user's (or Slurm's) choice stands
    (5, [], True, False, None),  # no GPU
    (5, ["0", "1"], False, False, None),  # cpu, or trainer.devices != 1
    (5, ["0", "1"], True, True, None),  # CUDA already started in this worker: it keeps its GPU
])
def test_job_device_only_where_it_can_help(job, visible, one_gpu, initialized, want) -> None:
    assert job_device(job, 1, visible, one_gpu, initialized) == want


def test_pin_job_sets_the_variable_from_the_process_own_setting() -> None:
    env: dict[str, str] = {}
    assert pin_job(2, 1, GPU, lambda: 2, False, env, original=None) == "0"
    assert env == {ENV: "0"}
    # a reused worker: its variable now names one device, the choice is still among the original two
    assert pin_job(3, 1, GPU, no_count, False, env, original="0,1") == "1" and env[ENV] == "1"
    assert pin_job(3, 2, GPU, no_count, False, env, original="4,5,6") == "5"
    env = {ENV: "2"}
    assert pin_job(1, 1, GPU, no_count, False, env, original="2") is None and env == {ENV: "2"}
    assert pin_job(1, 1, {"accelerator": "cpu", "devices": 1}, lambda: 4, False, env, None) is None
    assert pin_job(1, 1, {"accelerator": "gpu", "devices": 2}, lambda: 4, False, env, None) is None
    assert pin_job(None, 1, GPU, no_count, False, env, original=None) is None and env == {ENV: "2"}
    with pytest.raises(ConfigError, match="^jobs_per_gpu: must be an integer >= 1"):
        pin_job(1, 0, GPU, lambda: 4, False, env, None)


@pytest.mark.parametrize("devices", ["2", "[0,1]", "-1", "auto"])
def test_in_memory_data_refuses_several_devices(devices: str) -> None:
    with pytest.raises(ConfigError) as e:
        validate(compose([f"trainer.devices={devices}"]))
    assert str(e.value).startswith("trainer.devices: fashion_mnist is held in memory")
    assert "\n" not in str(e.value)


def test_image_folder_may_use_several_devices_and_one_index_is_one_device(tmp_path) -> None:
    (tmp_path / "train").mkdir()
    validate(compose(["data=imagenet", f"data.root={tmp_path}", "trainer.devices=2"]))
    validate(compose(["trainer.devices=[1]", "jobs_per_gpu=4"]))


def test_in_memory_module_refuses_a_sharded_trainer() -> None:
    dm = build_datamodule(compose(["data=synthetic", "data.synthetic_size=8", "data.val_size=2"]))
    dm.trainer = SimpleNamespace(world_size=2)
    with pytest.raises(RuntimeError, match="one device, not 2"):
        dm.train_dataloader()


@pytest.fixture(params=[True, False], ids=["bf16-cpu", "fp32-cpu"])
def cpu_bf16(request, monkeypatch) -> bool:
    """This CPU as one with bf16 in hardware, then as one without: both paths on any machine."""
    import torch

    from dse.train.checks import CPU_BF16_ENV

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv(CPU_BF16_ENV, "1" if request.param else "0")
    return request.param


def test_auto_precision_and_layout_follow_the_cpu_and_explicit_values_win(cpu_bf16: bool) -> None:
    from dse.train.checks import device_settings

    want = "bf16-mixed" if cpu_bf16 else "32-true"
    assert device_settings(compose([]).trainer) == ("cpu", want, cpu_bf16)
    assert device_settings(compose(["trainer.precision=32-true", "trainer.channels_last=false"]).trainer) \
        == ("cpu", "32-true", False)
    assert device_settings(compose(["trainer.precision=bf16-mixed", "trainer.channels_last=true"]).trainer) \
        == ("cpu", "bf16-mixed", True)


def test_the_row_records_the_resolution_and_the_hash_ignores_it(cpu_bf16: bool, tmp_path) -> None:
    from dse.model import analyze, build_spec
    from dse.store import config_hash
    from dse.train.run import train_once

    cfg = compose(["trainer=smoke", "data.subset=200", "trainer.max_epochs=1"])
    row = train_once(cfg, analyze(build_spec(cfg.model), 28), 0, tmp_path)
    assert row["status"] == "ok" and 0 <= row["val_top1"] <= 1
    want = ("bf16-mixed", True) if cpu_bf16 else ("32-true", False)
    assert (row["precision"], row["channels_last"]) == want
    assert row["device"].endswith(f"bf16 {'native' if cpu_bf16 else 'emulated'})")
    assert row["config_hash"] == config_hash(cfg) == "55ea2e1835286d70"
